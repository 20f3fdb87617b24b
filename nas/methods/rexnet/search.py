"""ReXNet's channel-configuration search (specs 2.5; paper section 4): sample N channel
configurations under the params and FLOPs constraints, train each R times for a short
budget, rank them by mean accuracy and report the top, middle and bottom 10 %.

No supernet: every candidate is a stand-alone training with the recipe `method.optim` on the
search's data, budget and trainer, through the evaluator (nas.evaluation) that
`method.evaluator` configures: in this process, or one Hydra multirun job per training
whose launcher runs them one after another (basic), side by side on this machine (joblib)
or as one cluster job each (slurm). A killed search continues with `resume_dir=`: finished
trainings are skipped, unfinished ones run again from their start (same seed).

Candidates are ranked by the mean over their repeats of the best validation top-1 of each
training (`rank_by: best`, the paper's early stopping) or of its final one (`rank_by: final`);
the test split is only reported. Repeat r of a search with seed s trains
with seed `derived_seed(s, r)`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from rich.console import Console

from nas.arch import io
from nas.arch.spec import ArchSpec
from nas.config import ConfigError, require
from nas.evaluation import EvalJob, EvaluatorConfig, estimate_evaluation, evaluate
from nas.files import write_text_atomic
from nas.methods.base import Method, SearchContext, SearchResult
from nas.methods.rexnet.report import GROUPS, plot_channels, ranking, summarize, write_csv
from nas.methods.rexnet.space import (CONSTRAINT_RULES, ChannelSpace, Constraints, SpaceConfig,
                                      nonlinearity)
from nas.data import ImageDataModule
from nas.optim import OptimConfig
from nas.seeding import derived_seed

RANK_BY = ("best", "final")
CSV_COLUMNS = ("id", "widths", "breakpoints", "a", "b", "params", "macs", "fill",
               "nonlinearity")


@dataclass
class ReXNetConfig:
    name: str = "rexnet"
    space: SpaceConfig = field(default_factory=SpaceConfig)
    constraints: Constraints = field(default_factory=Constraints)
    constraint: str = "band"      # le: Eq. 1's <= (budget=paper); band: +-tolerance
    rank_by: str = "final"        # best: each training's best val (early stopping, the paper)
    candidates: int = 200         # configurations trained (the paper: 200 per search)
    repeats: int = 3              # trainings per candidate, accuracy averaged (the paper: 3)
    group_fraction: float = 0.1   # top / middle / bottom group size (the paper: 10 %)
    # The candidates' optimizer (an option of conf/optim, composed in by conf/method/
    # rexnet.yaml); their epochs, data and devices are the search's budget, data and trainer.
    optim: OptimConfig = field(default_factory=OptimConfig)
    # Where the trainings run: by default side by side on this machine, one multirun job each.
    evaluator: EvaluatorConfig = field(
        default_factory=lambda: EvaluatorConfig(backend="hydra", launcher="joblib"))

    def __post_init__(self) -> None:
        require(self.candidates >= 1, "candidates", "an integer >= 1", self.candidates)
        require(self.repeats >= 1, "repeats", "an integer >= 1", self.repeats)
        require(0.0 < self.group_fraction <= 1 / 3, "group_fraction", "a fraction in (0, 1/3]",
                self.group_fraction)
        require(self.constraint in CONSTRAINT_RULES, "constraint", " or ".join(CONSTRAINT_RULES),
                self.constraint)
        require(self.rank_by in RANK_BY, "rank_by", " or ".join(RANK_BY), self.rank_by)


class ReXNetSearch(Method):
    Config = ReXNetConfig
    recipe = None    # the paper trains searched configurations only in the sweep itself

    def search(self, ctx: SearchContext) -> Optional[SearchResult]:
        cfg = self.cfg
        datamodule = ctx.datamodule()
        datamodule.setup("fit")      # a bad data path fails here, before any training
        space = self._space(datamodule)
        candidates, draws = space.sample(cfg.candidates, ctx.seed)
        console = Console(stderr=True)
        ev = cfg.evaluator
        console.print(f"ReXNet search: {cfg.candidates} candidates kept of {sum(draws.values())} "
                      f"draws ({draws}; constraint {cfg.constraint}), {cfg.repeats} trainings "
                      f"each, ranked by their {cfg.rank_by} val top-1, "
                      f"{'in this process' if ev.backend == 'inprocess' else ev.launcher}")
        rows, jobs = [], []
        for k, cand in enumerate(candidates):
            cid = f"c{k:03d}"
            widths = cand.widths()
            spec = self._write_candidate(space, widths, ctx.run_dir / "candidates", cid)
            cost = space.cost(widths)
            rows.append({"id": cid, "widths": widths, "breakpoints": list(cand.breakpoints),
                         "a": round(cand.a, 4), "b": round(cand.b, 4), "params": cost.params,
                         "macs": cost.macs, "fill": round(cfg.constraints.fill(cost), 4),
                         "nonlinearity": round(nonlinearity(widths), 4)})
            jobs += [EvalJob(f"{cid}_r{r}", spec, derived_seed(ctx.seed, r))
                     for r in range(cfg.repeats)]

        def report(name: str, metrics: dict, done: int, total: int) -> None:
            console.print(f"[{done}/{total}] {name}: val top-1 "
                          f"{100 * metrics['final_val_top1']:.1f} % "
                          f"({metrics['fit_seconds']:.0f} s)")

        if ctx.estimate is not None:
            estimate_evaluation(jobs, ctx.recipe(cfg.optim), ctx.run_dir, cfg.evaluator,
                                ctx.estimate)
            return None
        results = evaluate(jobs, ctx.recipe(cfg.optim), ctx.run_dir / "trainings",
                           cfg.evaluator, report=report)
        return self._result(ctx, space, rows, results, draws)

    @staticmethod
    def _write_candidate(space: ChannelSpace, widths: list[int], folder: Path,
                         cid: str) -> ArchSpec:
        """candidates/<id>.yaml; a resumed search must sample the very same candidate."""
        path = folder / f"{cid}.yaml"
        spec = space.to_spec(widths, name=f"rexnet_{cid}")
        text = io.dumps(spec)
        if path.is_file() and path.read_text() != text:
            raise ConfigError(f"{path}: differs from candidate {cid} sampled now from the "
                              f"run's config and seed; expected the file this search wrote")
        if not path.is_file():
            write_text_atomic(path, text)
        return spec

    def sampler(self, datamodule: ImageDataModule) -> Callable[[int], ArchSpec]:
        """A configuration drawn as the search draws them, within its budgets."""
        space = self._space(datamodule)

        def draw(seed: int) -> ArchSpec:
            (cand,), _ = space.sample(1, seed)
            return space.to_spec(cand.widths(), name="rexnet_random")
        return draw

    def _space(self, datamodule: ImageDataModule) -> ChannelSpace:
        return ChannelSpace(self.cfg.space, self.cfg.constraints,
                            num_classes=datamodule.num_classes,
                            input_size=datamodule.input_size,
                            in_channels=datamodule.in_channels, rule=self.cfg.constraint)

    def _result(self, ctx: SearchContext, space: ChannelSpace, rows: list[dict],
                results: dict[str, dict], draws: dict[str, int]) -> SearchResult:
        cfg = self.cfg
        for row in rows:
            runs = [results[f"{row['id']}_r{r}"] for r in range(cfg.repeats)]
            vals = [_val_top1(m, cfg.rank_by, f"{row['id']}_r{r}")
                    for r, m in enumerate(runs)]
            for r, v in enumerate(vals):
                row[f"val_r{r}"] = round(v, 5)
            row["accuracy"] = sum(vals) / len(vals)
            row["test_top1"] = sum(m["test_top1"] for m in runs) / len(runs)
        report = summarize(rows, cfg.group_fraction)
        report["draws"] = draws
        by_id = {row["id"]: row for row in rows}
        for name in GROUPS:
            for cid in report["groups"][name]["ids"]:
                by_id[cid]["group"] = name
        order = ranking([row["accuracy"] for row in rows])
        for rank, i in enumerate(order, 1):
            row = rows[i]
            row["rank"] = rank
            row["accuracy"] = round(row["accuracy"], 5)
            row["test_top1"] = round(row["test_top1"], 5)
        columns = [*CSV_COLUMNS, *(f"val_r{r}" for r in range(cfg.repeats)), "accuracy",
                   "test_top1", "rank", "group"]
        run_dir = ctx.run_dir
        csv_path = write_csv(rows, columns, run_dir / "candidates.csv")
        report_path = write_text_atomic(run_dir / "report.json",
                                        json.dumps(report, indent=1) + "\n")
        c = cfg.constraints
        plot_path = plot_channels(
            report, run_dir / "channels.png",
            f"ReXNet channel search: {len(rows)} candidates x {cfg.repeats}, params ~ "
            f"{c.params / 1e6:.3g} M, MACs ~ {c.macs / 1e6:.3g} M")
        _print_report(report, cfg.repeats)
        best = rows[order[0]]
        metrics = {
            "accuracy": best["accuracy"], "test_top1": best["test_top1"],
            "widths": best["widths"], "params": best["params"], "macs": best["macs"],
            "candidates": len(rows), "trainings": len(results), "draws": draws,
            "constraint": cfg.constraint, "rank_by": cfg.rank_by,
            "spearman": report["spearman"],
            "groups": {g: {"accuracy": report["groups"][g]["accuracy"]["mean"],
                           "nonlinearity": report["groups"][g]["nonlinearity"]["mean"]}
                       for g in GROUPS},
        }
        return SearchResult(arch=space.to_spec(best["widths"], name="rexnet_searched"),
                            metrics=metrics,
                            artifacts={"candidates": csv_path, "report": report_path,
                                       "channels": plot_path})


def _val_top1(metrics: dict, rank_by: str, job: str) -> float:
    """The validation top-1 a candidate's training is ranked by: its best epoch's or its
    last one's."""
    value = metrics[f"{rank_by}_val_top1"]
    if value is None:
        raise ConfigError(f"method.rank_by: the training {job} recorded no {rank_by} "
                          f"validation top-1 (no validation ran); expected rank_by=final or "
                          f"a budget that validates")
    return value


def _print_report(report: dict, repeats: int) -> None:
    """The paper's Table 3 rows for this search."""
    from rich.table import Table

    table = Table(title=f"ReXNet search: {report['candidates']} candidates, {repeats} "
                        f"trainings each (val top-1)")
    for col in ("group", "accuracy %", "params (M)", "MACs (M)", "nonlinearity"):
        table.add_column(col)
    for name in GROUPS:
        g = report["groups"][name]
        table.add_row(f"{name} {len(g['ids'])}",
                      f"{100 * g['accuracy']['mean']:.2f} +- {100 * g['accuracy']['std']:.2f}",
                      f"{g['params']['mean'] / 1e6:.3f} +- {g['params']['std'] / 1e6:.3f}",
                      f"{g['macs']['mean'] / 1e6:.2f} +- {g['macs']['std'] / 1e6:.2f}",
                      f"{g['nonlinearity']['mean']:.3f} +- {g['nonlinearity']['std']:.3f}")
    console = Console(stderr=True)
    console.print(table)
    rho = report["spearman"]
    fmt = lambda v: "-" if v is None else f"{v:+.2f}"  # noqa: E731
    console.print(f"Spearman correlation of accuracy with nonlinearity "
                  f"{fmt(rho['nonlinearity'])}, with first / last width "
                  f"{fmt(rho['first_over_last'])}")
    for key in ("best", "worst"):
        m = report[key]
        console.print(f"{key}: {'-'.join(map(str, m['widths']))} "
                      f"({100 * m['accuracy']:.2f} %)")
