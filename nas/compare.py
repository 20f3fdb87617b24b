"""`python -m nas.compare`: the five searches and the random baseline on one footing.

    python -m nas.compare compare=smoke                      # every method, one seed, seconds
    python -m nas.compare compare=smoke hydra/launcher=joblib  (the searches side by side)
    python -m nas.compare resume_dir=runs/compare/<run>     # continue a killed comparison

1. Searches: every method of `compare.methods` for every seed of `compare.seeds` at the
   searches' budget `compare.budget`, on the run's data: one `nas.search` multirun of all
   methods and seeds through the Hydra launcher `compare.launcher`, its whole config one
   structured file.
2. The random baseline (`method=random`) for every seed, in the band of MACs the searches'
   results span, drawn from `compare.random.space`.
3. Every result trained with one recipe (`optim` group, the training budget
   `compare.train_budget`, BN recalibrated before each evaluation) through the evaluator
   (nas.evaluation), the same seed.
4. compare.csv, compare.png (test top-1 against MACs: runs, mean and spread per method, the
   Pareto front) and compare.md (the table; per pair of methods Welch's t-test on test top-1).

Fair by construction: one data split for every method (the test split is never seen by a
search), one training recipe for every result, each search's own wall time reported, every
seed recorded with the command that reproduces its row. Resumable: a finished search (its
result.json) or training (its metrics.json) is never redone; an unfinished one's directory
is set aside (`.interrupted/`) and it runs again.
"""

from __future__ import annotations

import csv
import dataclasses
import io as _io
import json
import shlex
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from nas.cli import exit_on_unknown_choice
from nas.config import CONF_DIR, ConfigError, check, require
from nas.run_dirs import set_aside

SEARCHES = ("moga", "atomnas", "darts", "autonl", "rexnet")


@dataclass
class RandomBaseline:
    space: str = "moga"
    samples: int = 8
    band_margin: float = 0.1     # the searches' MACs span, widened by this fraction each side


@dataclass
class CompareConfig:
    name: str = "demo"
    methods: list[str] = field(default_factory=lambda: list(SEARCHES))
    seeds: list[int] = field(default_factory=lambda: [0, 1])
    budget: str = "demo"          # the searches' budget option
    train_budget: str = "demo"    # the budget option every result trains with
    random: RandomBaseline = field(default_factory=RandomBaseline)
    # BN statistics re-estimated on this many training batches before every evaluation of
    # every result: the TF-style BN momentum 0.01 of AtomNAS's and AutoNL's networks leaves
    # their running statistics stale after a short training (measured on the demo: AutoNL's
    # network 28.6 % test top-1 without, 98.5 % with 16 steps).
    bn_recalibration_steps: int = 16
    launcher: str = "basic"       # hydra/launcher of the searches and trainings
    jobs: Optional[int] = None    # joblib: jobs side by side

    def __post_init__(self) -> None:
        for m in self.methods:
            require(m in SEARCHES, "methods", f"a list of {', '.join(SEARCHES)}", self.methods)
        require(bool(self.seeds) and len(set(self.seeds)) == len(self.seeds), "seeds",
                "a list of distinct integers", self.seeds)
        require(self.bn_recalibration_steps >= 0, "bn_recalibration_steps", "an integer >= 0",
                self.bn_recalibration_steps)
        require(self.jobs is None or (self.launcher == "joblib" and self.jobs >= 1), "jobs",
                "null, or an integer >= 1 with launcher joblib", self.jobs)


def _search_multirun(run_dir: Path, name: str, methods: list[str], seeds: list[int],
                     cfg: CompareConfig, data_choice: str, data: dict, trainer: dict,
                     logger: Any, method_values: Optional[dict] = None) -> None:
    """`nas.search --multirun` of `methods` x `seeds`, from one structured config file; the
    searches already finished are not in it. One multirun for all seeds lets a joblib
    launcher keep every core busy to the end (the jobs run method by method, each method's
    seeds side by side)."""
    from nas.evaluation import job_env
    from nas.files import write_text_atomic

    searches = run_dir / "searches"
    for m in methods:
        for seed in seeds:
            set_aside(searches / f"{m}_s{seed}")
    launcher = {"n_jobs": cfg.jobs} if cfg.jobs is not None else {}
    config = {
        "defaults": ["search", {"override method": methods[0]},
                     {"override budget": cfg.budget}, {"override data": data_choice},
                     {"override hydra/launcher": cfg.launcher}, "_self_"],
        "data": data, "trainer": trainer, "logger": dataclasses.asdict(logger),
        **({"method": method_values} if method_values else {}),
        "hydra": {"sweeper": {"params": {"method": ",".join(methods),
                                         "seed": ",".join(map(str, seeds))}},
                  "sweep": {"dir": str(searches.resolve()),
                            "subdir": "${method.name}_s${seed}"},
                  **({"launcher": launcher} if launcher else {})},
    }
    jobs = run_dir / ".jobs"
    path = write_text_atomic(jobs / f"{name}.yaml", OmegaConf.to_yaml(OmegaConf.create(config)))
    cmd = [sys.executable, "-m", "nas.search", "--multirun", "--config-dir", str(jobs),
           "--config-name", path.stem, "~hydra.callbacks.run_dir_guard"]
    log = run_dir / "searches.log"
    with open(log, "a") as out:
        out.write(f"\n$ {shlex.join(cmd)}\n")
        out.flush()
        rc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT,
                            env=job_env(cfg.launcher, cfg.jobs)).returncode
    missing = [f"{m}_s{seed}" for m in methods for seed in seeds
               if not (searches / f"{m}_s{seed}" / "result.json").is_file()]
    if missing:
        raise ConfigError(f"the searches {', '.join(missing)} stopped (exit "
                          f"status {rc}); see {log}")


def _pending(run_dir: Path, methods: list[str], seeds: list[int]
             ) -> dict[tuple[str, ...], list[int]]:
    """The unfinished searches, as {methods: the seeds that lack exactly those}: a fresh
    comparison is one group, a resumed one a group per pattern of what is left."""
    groups: dict[tuple[str, ...], list[int]] = {}
    for seed in seeds:
        left = tuple(m for m in methods if _finished(run_dir, m, seed) is None)
        if left:
            groups.setdefault(left, []).append(seed)
    return groups


def _finished(run_dir: Path, method: str, seed: int) -> Optional[dict]:
    path = run_dir / "searches" / f"{method}_s{seed}" / "result.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _latency_ms(training_dir: Path) -> float:
    """The trained network's latency on this machine: the median of 30 eval forwards at
    batch 1 on one CPU thread (after 5), measured rather than predicted from a table, so
    that every method's network is timed the same way."""
    from nas.arch import io
    from nas.arch.builder import build
    from nas.cost.timing import measure_latency

    spec = io.load(training_dir / "arch.yaml")
    stats = measure_latency(build(spec), (1, spec.in_channels, spec.input_size,
                                          spec.input_size), threads=1, warmup=5, repeats=30)
    return round(stats.median_ms, 3)


def _wall_seconds(job_dir: Path) -> float:
    """A search's wall time: from Hydra's record of its start to its result.json."""
    start = (job_dir / ".hydra" / "config.yaml").stat().st_mtime
    return round((job_dir / "result.json").stat().st_mtime - start, 1)


def run_compare(cfg: DictConfig, run_dir: Path, data_choice: str) -> dict:
    from nas.arch import io
    from nas.cost import count
    from nas.data import data_config
    from nas.evaluation import EvalJob, EvaluatorConfig, evaluate
    from nas.optim import OptimConfig
    from nas.trainer import LoggerConfig, TrainerConfig
    from nas.training import Recipe

    cmp = check(CompareConfig, cfg.compare, "compare")
    data = data_config(cfg.data)
    trainer = check(TrainerConfig, cfg.trainer, "trainer")
    optim = check(OptimConfig, cfg.optim, "optim")
    train_budget = _budget(cmp.train_budget)
    data_values = dataclasses.asdict(data)
    trainer_values = dataclasses.asdict(dataclasses.replace(trainer, enable_progress_bar=False))
    logger = check(LoggerConfig, cfg.logger, "logger")
    # 1. the searches
    for methods, seeds in _pending(run_dir, cmp.methods, cmp.seeds).items():
        _search_multirun(run_dir, f"searches_s{'_'.join(map(str, seeds))}", list(methods),
                         seeds, cmp, data_choice, data_values, trainer_values, logger)
    # 2. the random baseline, in the MACs band of the searches' results
    macs = [count(io.load(run_dir / "searches" / f"{m}_s{s}" / "arch.yaml")).macs
            for m in cmp.methods for s in cmp.seeds]
    margin = cmp.random.band_margin
    band = [round(min(macs) * (1 - margin)), round(max(macs) * (1 + margin))]
    for _, seeds in _pending(run_dir, ["random"], cmp.seeds).items():
        _search_multirun(run_dir, f"random_s{'_'.join(map(str, seeds))}", ["random"], seeds,
                         cmp, data_choice, data_values, trainer_values, logger,
                         {"space": cmp.random.space, "samples": cmp.random.samples,
                          "macs": band})
    # 3. every result trained with one recipe
    methods = [*cmp.methods, "random"]
    jobs = [EvalJob(f"{m}_s{s}", io.load(run_dir / "searches" / f"{m}_s{s}" / "arch.yaml"), s)
            for m in methods for s in cmp.seeds]
    recipe = Recipe(data=data, optim=optim, budget=train_budget,
                    trainer=dataclasses.replace(trainer, enable_progress_bar=False),
                    logger=logger, bn_recalibration_steps=cmp.bn_recalibration_steps,
                    export_onnx=False)
    evaluator = EvaluatorConfig(backend="hydra", launcher=cmp.launcher, jobs=cmp.jobs)
    trained = evaluate(jobs, recipe, run_dir / "trainings", evaluator)
    # 4. the report
    rows = []
    for m in methods:
        for s in cmp.seeds:
            job_dir = run_dir / "searches" / f"{m}_s{s}"
            t = trained[f"{m}_s{s}"]
            rows.append({"method": m, "seed": s, "params": t["params"], "macs": t["macs"],
                         "latency_ms": _latency_ms(run_dir / "trainings" / f"{m}_s{s}"),
                         "search_seconds": _wall_seconds(job_dir),
                         "train_seconds": t["fit_seconds"],
                         "val_top1": round(t["final_val_top1"], 5),
                         "test_top1": round(t["test_top1"], 5),
                         "command": _row_command(m, s, cmp, data_choice, band)})
    return write_report(rows, run_dir, band)


def _budget(name: str):
    """The budget option `name` as `nas.train budget=<name>` composes it."""
    from hydra import compose

    from nas.trainer import BudgetConfig
    if not (CONF_DIR / "budget" / f"{name}.yaml").is_file():
        raise ConfigError(f"compare.train_budget: expected a budget option (conf/budget: smoke, "
                          f"demo, paper), got {name!r}")
    return check(BudgetConfig, compose("train", overrides=[f"budget={name}"]).budget, "budget")


def _row_command(method: str, seed: int, cmp: CompareConfig, data_choice: str,
                 band: list[int]) -> str:
    """The command that reruns one row's search (the data group's values as in this run)."""
    args = [f"method={method}", f"budget={cmp.budget}", f"data={data_choice}", f"seed={seed}"]
    if method == "random":
        args += [f"method.space={cmp.random.space}", f"method.samples={cmp.random.samples}",
                 f"method.macs=[{band[0]},{band[1]}]"]
    return " ".join(["python -m nas.search", *map(shlex.quote, args)])


# ----------------------------------------------------------------------------- report

COLUMNS = ("method", "seed", "params", "macs", "latency_ms", "search_seconds", "train_seconds",
           "val_top1", "test_top1", "command")


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def welch(a: list[float], b: list[float]) -> Optional[float]:
    """Welch's t-test p-value of a difference in means (None with fewer than 2 runs each, or
    no spread in either)."""
    from scipy import stats

    if len(a) < 2 or len(b) < 2 or (statistics.pstdev(a) == 0 and statistics.pstdev(b) == 0):
        return None
    return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def pareto(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both (fewer MACs, higher accuracy)."""
    return [i for i, (m, a) in enumerate(points)
            if not any((m2 <= m and a2 >= a) and (m2, a2) != (m, a) for m2, a2 in points)]


def write_report(rows: list[dict], run_dir: Path, band: list[int]) -> dict:
    """compare.csv, compare.md and compare.png; returns the per-method summary."""
    from nas.files import pyplot, save_figure, write_text_atomic

    buf = _io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    methods = list(dict.fromkeys(r["method"] for r in rows))
    by = {m: [r for r in rows if r["method"] == m] for m in methods}
    summary = {}
    for m in methods:
        acc, acc_sd = _mean_std([r["test_top1"] for r in by[m]])
        summary[m] = {"runs": len(by[m]), "test_top1": round(acc, 5), "test_sd": round(acc_sd, 5),
                      "macs": round(statistics.fmean(r["macs"] for r in by[m])),
                      "latency_ms": round(statistics.fmean(r["latency_ms"] for r in by[m]), 3),
                      "search_seconds": round(statistics.fmean(r["search_seconds"]
                                                               for r in by[m]), 1)}
    lines = ["# Comparison", "", f"Random baseline drawn in the MACs band {band[0]:,} - "
             f"{band[1]:,}. Latency: median of 30 forwards at batch 1 on one CPU thread of "
             f"this machine.", "", "| method | runs | test top-1 (mean +- sd) | MACs | "
             "latency ms | search s |", "|---|---:|---:|---:|---:|---:|"]
    for m, s in summary.items():
        lines.append(f"| {m} | {s['runs']} | {100 * s['test_top1']:.2f} +- "
                     f"{100 * s['test_sd']:.2f} % | {s['macs']:,} | {s['latency_ms']} | "
                     f"{s['search_seconds']} |")
    lines += ["", "Pairs (Welch's t-test on test top-1 over seeds; p < 0.05 is taken as a "
              "real difference, otherwise seed noise):", "",
              "| pair | difference | p | verdict |", "|---|---:|---:|---|"]
    for i, a in enumerate(methods):
        for b in methods[i + 1:]:
            xa, xb = [r["test_top1"] for r in by[a]], [r["test_top1"] for r in by[b]]
            p = welch(xa, xb)
            diff = 100 * (statistics.fmean(xa) - statistics.fmean(xb))
            verdict = "too few seeds" if p is None else "real" if p < 0.05 else "noise"
            lines.append(f"| {a} - {b} | {diff:+.2f} pt | {'-' if p is None else f'{p:.3f}'} "
                         f"| {verdict} |")
    lines += ["", "Every row of compare.csv holds the command that reruns its search."]
    write_text_atomic(run_dir / "compare.md", "\n".join(lines) + "\n")

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for m in methods:
        xs = [r["macs"] / 1e6 for r in by[m]]
        ys = [100 * r["test_top1"] for r in by[m]]
        dots = ax.scatter(xs, ys, s=14, alpha=0.5)
        ax.errorbar(statistics.fmean(xs), 100 * summary[m]["test_top1"],
                    yerr=100 * summary[m]["test_sd"], fmt="o", ms=7,
                    color=dots.get_facecolor()[0][:3], label=m, capsize=3)
    points = [(r["macs"], r["test_top1"]) for r in rows]
    front = sorted((points[i] for i in pareto(points)), key=lambda p: p[0])
    ax.plot([m / 1e6 for m, _ in front], [100 * a for _, a in front], "k--", lw=0.8,
            label="Pareto front")
    ax.set_xlabel("MACs (M)")
    ax.set_ylabel("test top-1 (%)")
    ax.set_title("Searches and random search, one training recipe")
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, run_dir / "compare.png")
    # compare.csv last: its presence marks a finished comparison.
    write_text_atomic(run_dir / "compare.csv", buf.getvalue())
    return summary


@hydra.main(config_path=str(CONF_DIR), config_name="compare", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from nas.console import quiet_third_party
    quiet_third_party()
    from nas.training import USER_ERRORS

    run_dir = Path(cfg.resume_dir) if cfg.get("resume_dir") else \
        Path(HydraConfig.get().runtime.output_dir)
    try:
        run_compare(cfg, run_dir, HydraConfig.get().runtime.choices.get("data", "embedded"))
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    exit_on_unknown_choice(CONF_DIR)
    main()

