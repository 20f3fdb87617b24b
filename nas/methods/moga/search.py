"""MoGA: the MobileNetV3-Large search space of 14 layers x 12 choices (paper Table 1).

A decision vector is the paper's gene encoding itself: candidate index = gene =
6 * [t = 6] + 2 * kernel index + [SE].
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from argparse import ArgumentTypeError
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

from nas.arch import io
from nas.arch.spec import INIT_SCHEMES, ArchSpec
from nas.arch.zoo.moga import ACTS, moga, moga_layer, moga_skeleton
from nas.config import ConfigError, check, require
from nas.cost import count
from nas.cost.lut import LatencyTable, LatencyTableError, space_layout
from nas.cost.lut_report import lut_report
from nas.cost.timing import Visits, device_name, steady_malloc
from nas.data import ImageDataModule
from nas.data.imagefolder import prepare_batch
from nas.files import pyplot, save_figure, write_atomic, write_text_atomic
from nas.memory_format import set_memory_format
from nas.methods.base import Method, SearchContext, SearchResult, method_setting
from nas.methods.moga.entangled import WEIGHTS
from nas.methods.moga.fairnas import FairNASModule
from nas.methods.moga.nsga import NSGAConfig, run_nsga
from nas.methods.moga.supernet import ChainSupernet
from nas.optim import OptimConfig
from nas.supernet.chain import ChainSearchSpace

log = logging.getLogger(__name__)

N_CHOICES = 12


def moga_space(*, width: float = 1.0, stem_stride: int = 2, num_classes: int = 1000,
               input_size: int = 224, init: str | None = None) -> ChainSearchSpace:
    """Fixed stem, separable block and head around 14 searchable layers.

    `init` replaces the official MnasNet-style init: its classifier draws from
    U(+-1/sqrt(num_classes)), ten times wider at 10 classes than at 1000, and the
    resulting logits make small-data supernet training diverge.
    """
    template = moga([0] * 14, num_classes=num_classes, input_size=input_size, name="moga_search",
                    width=width, stem_stride=stem_stride)
    if init is not None:
        template = dataclasses.replace(template, init=init)
    first, widths, strides, _ = moga_skeleton(width, stem_stride)
    positions, cin = [[template.blocks[0]]], first
    for out, stride, act in zip(widths, strides, ACTS):
        positions.append([moga_layer(g, cin, out, stride, act) for g in range(N_CHOICES)])
        cin = out
    return ChainSearchSpace(template, positions)


# ----------------------------------------------------------------------------- search driver


@dataclass
class LutConfig:
    threads: int = 1
    batch: int = 1
    warmup: int = 3         # untimed forwards at each visit
    repeats: int = 4        # timed forwards at each visit
    # interleaved visits of every path (and report network): at least `visits`, more until
    # their median split-half spread is at most max_spread, at most max_visits (timing.Visits)
    visits: int = 10
    max_visits: int = 40
    max_spread: float = 0.01
    clock: str = "thread"   # CPU time of the timing thread: other processes do not count
    # cpu, or cuda[:k]: timed with CUDA events (clock wall), the clocks recorded
    device: str = "cpu"
    report_archs: int = 30  # lut_report.json: predicted vs measured on this many networks
    # A saved lut.json to search with instead of measuring one (the same table and seed select
    # the same architecture; a table measured afresh differs run to run).
    table: Optional[str] = None

    def __post_init__(self) -> None:
        for key in ("threads", "batch", "repeats"):
            require(getattr(self, key) >= 1, key, "an integer >= 1", getattr(self, key))
        require(self.warmup >= 0, "warmup", "an integer >= 0", self.warmup)
        require(self.clock in ("thread", "wall"), "clock", "'thread' or 'wall'", self.clock)
        require(self.report_archs >= 0, "report_archs", "an integer >= 0", self.report_archs)
        try:
            self.visit_rule()
        except ValueError as e:   # Visits says which of visits/max_visits/max_spread
            raise ConfigError(str(e)) from None
        require(self.device == "cpu" or self.device.split(":")[0] == "cuda", "device",
                "cpu or cuda[:k]", self.device)
        require(self.device == "cpu" or self.clock == "wall", "clock",
                "wall on a GPU (CUDA events time it; thread counts CPU time only)", self.clock)

    def visit_rule(self) -> Visits:
        return Visits(self.visits, self.max_visits, self.max_spread)


OBJECTIVES = ("accuracy", "latency", "params")
# How the search reads a candidate's supernet accuracy: top-1 on the held-out batches, or
# minus their mean cross-entropy, which still orders candidates where top-1 saturates.
SCORES = ("top1", "loss")


@dataclass
class MogaConfig:
    name: str = "moga"
    width: float = 1.0
    stem_stride: int = 1
    init: Optional[str] = None
    same_batch: bool = False
    weights: str = "independent"     # independent (the paper's) | entangled (sliced choices)
    supernet: Optional[str] = None   # a trained supernet.pt to search instead of training one
    # Supernet optimiser (MoGA 4.2: SGD momentum 0.9, lr 0.05, one cosine cycle to 0); the
    # paper's batch size and weight decay are not stated.
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(
        name="sgd", lr=0.05, lr_reference_batch=64, momentum=0.9, nesterov=False,
        weight_decay=4e-5, no_weight_decay_on_bn_and_bias=True, schedule="cosine",
        warmup_epochs=0.0, warmup_start_factor=0.0, min_lr=0.0, label_smoothing=0.0))
    recalibration_steps: int = 10
    score_batches: Optional[int] = None
    score: str = "top1"              # the accuracy objective: top1 (the paper) | loss
    random_paths: int = 20
    objectives: list[str] = field(default_factory=lambda: list(OBJECTIVES))
    latency_limit_ms: Optional[float] = None
    lut: LutConfig = field(default_factory=LutConfig)
    nsga: NSGAConfig = field(default_factory=NSGAConfig)

    def __post_init__(self) -> None:
        require(self.width > 0, "width", "a positive multiplier", self.width)
        require(self.stem_stride in (1, 2), "stem_stride", "1 or 2", self.stem_stride)
        require(self.weights in WEIGHTS, "weights", f"one of {', '.join(WEIGHTS)}", self.weights)
        require(self.init in (None, *INIT_SCHEMES), "init", f"null or one of {INIT_SCHEMES}",
                self.init)
        require(self.recalibration_steps >= 0, "recalibration_steps", "an integer >= 0",
                self.recalibration_steps)
        require(self.score_batches is None or self.score_batches >= 1, "score_batches",
                "null or an integer >= 1", self.score_batches)
        require(self.score in SCORES, "score", f"one of {', '.join(SCORES)}", self.score)
        require(self.random_paths >= 0, "random_paths", "an integer >= 0", self.random_paths)
        require(len(self.objectives) >= 2 and self.objectives[0] == "accuracy"
                and set(self.objectives) <= set(OBJECTIVES)
                and len(set(self.objectives)) == len(self.objectives),
                "objectives", "accuracy first, then latency and/or params", self.objectives)
        require(len(self.nsga.weights) == len(self.objectives), "nsga.weights",
                f"{len(self.objectives)} weights, one per objective", self.nsga.weights)


class CandidateScorer:
    """Supernet accuracy of a genome: BN recalibration of its path on fixed training batches,
    then top-1 and mean cross-entropy on fixed held-out batches (the same batches for every
    candidate)."""

    def __init__(self, supernet: ChainSupernet, recal_batches: list, eval_batches: list,
                 device: torch.device):
        self.supernet, self.device = supernet, device
        self.recal_batches, self.eval_batches = recal_batches, eval_batches

    @torch.no_grad()
    def evaluate(self, vector: list[int]) -> tuple[float, float]:
        """(top-1, mean cross-entropy) of the path on the held-out batches."""
        self.supernet.recalibrate(self.recal_batches, len(self.recal_batches), vector,
                                  self.device)
        path = self.supernet.path(vector).eval()
        correct = total = 0
        loss = 0.0
        for x, y in self.eval_batches:
            logits = path(prepare_batch(x.to(self.device))).cpu()
            correct += int((logits.argmax(1) == y).sum())
            loss += float(F.cross_entropy(logits.float(), y, reduction="sum"))
            total += len(y)
        return correct / max(1, total), loss / max(1, total)

    def accuracy(self, vector: list[int]) -> float:
        return self.evaluate(vector)[0]


def score_value(top1: float, loss: float, score: str) -> float:
    """The search's accuracy estimate, larger is better (`score`: see SCORES)."""
    return top1 if score == "top1" else -loss


def _collect(loader, n: Optional[int]) -> list:
    out = []
    for batch in loader:
        if n is not None and len(out) >= n:
            break
        out.append(batch)
    return out


def _load_supernet(supernet: ChainSupernet, path: Path) -> None:
    """Weights of a finished supernet training (read with weights_only=True)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        supernet.load_state_dict(state)
    except Exception as e:  # unpickling errors, missing keys, size mismatches
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"{path}: not a supernet of this search space ({first}); "
                          f"remove it to retrain") from None


def latency_stage(space: ChainSearchSpace, cfg: LutConfig, run_dir: Path,
                  seed: int) -> tuple[LatencyTable, dict]:
    """The search's latency table (run_dir/lut.json) and its fidelity report
    (run_dir/lut_report.json; empty without report_archs); scripts/bench_lut.py measures
    the README's figures through this same function.

    Every candidate at its input shape plus stem and head is timed inside whole-network
    forwards on this machine; a saved table is reused when it was measured with the same
    settings (LatencyTable.load_or_build). The report times report_archs random networks
    whole and compares them with the table's predictions."""
    path = run_dir / "lut.json"
    if torch.device(cfg.device).type == "cpu":
        # Freed activations stay in the heap: at 224x224, without it, random networks timed
        # 12-14 ms or 18-19 ms depending on page faults (bench_lut, imagenet, epyc-2c).
        steady_malloc()
    if cfg.table is not None:
        table = given_table(Path(cfg.table), space, cfg)
        if not path.is_file():  # the run keeps its own copy, which its resume finds
            table.save(path)
    else:
        table = LatencyTable.load_or_build(path, space, batch=cfg.batch, threads=cfg.threads,
                                           warmup=cfg.warmup, repeats=cfg.repeats,
                                           clock=cfg.clock, seed=seed,
                                           visits=cfg.visit_rule(), device=cfg.device)
    report: dict = {}
    if cfg.report_archs:
        report = lut_report(table, space, n=cfg.report_archs, seed=seed)
        write_text_atomic(run_dir / "lut_report.json", json.dumps(report, indent=1) + "\n")
    return table, report


def given_table(path: Path, space: ChainSearchSpace, cfg: LutConfig) -> LatencyTable:
    """`method.lut.table`: a saved table, refused with one line unless it was measured on
    this device and torch with the search's threads, batch and clock, at the space's
    resolution, and holds every entry the space needs."""
    try:
        table = LatencyTable.load(path)
    except LatencyTableError as e:
        raise ConfigError(f"method.lut.table: {e}") from None
    needed = space_layout(space).keys()
    wanted = {"device": device_name(cfg.device), "torch_version": torch.__version__,
              "threads": cfg.threads, "batch": cfg.batch, "clock": cfg.clock,
              "resolution": space.template.input_size, "keys": needed}
    name = table.mismatch(wanted)
    if name == "keys":
        raise ConfigError(f"method.lut.table: {path} lacks {len(needed - table.entries.keys())} "
                          f"of the entries this search space needs (another width, stem or "
                          f"number of classes?)")
    if name is not None:
        raise ConfigError(f"method.lut.table: {path} was measured with {name}="
                          f"{table.meta.get(name)!r}; this search needs {wanted[name]!r}")
    return table


def _plot(rows: list[dict], path: Path) -> None:
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    lat = [r["latency_ms"] for r in rows]
    acc = [100 * r["accuracy"] for r in rows]
    sc = ax.scatter(lat, acc, c=[r["params"] / 1e6 for r in rows], cmap="viridis", s=22)
    # Front members are marked, not joined: with params as a third objective the front is
    # not monotone in this projection.
    front = [r for r in rows if r["rank"] == 0]
    ax.scatter([r["latency_ms"] for r in front], [100 * r["accuracy"] for r in front], s=70,
               facecolors="none", edgecolors="red", linewidths=1.4, label="non-dominated front")
    fig.colorbar(sc, ax=ax, label="params (M)")
    ax.set_xlabel("latency (ms, lookup table)")
    ax.set_ylabel("supernet top-1 on held-out split (%)")
    ax.set_title("MoGA final population")
    ax.legend(loc="lower right")
    fig.tight_layout()
    save_figure(fig, path)


class MoGA(Method):
    """FairNAS supernet training, latency table, weighted NSGA-II, outputs."""

    Config = MogaConfig
    recipe = "moga_a"  # the searched networks train as MoGA-A/B/C did (paper section 5)
    not_estimated = ("the latency table and NSGA-II's scoring of candidates, after the "
                     "supernet's training")

    def sampler(self, datamodule: ImageDataModule) -> Callable[[int], ArchSpec]:
        """A path of the MoGA space: one of the 12 choices per searchable layer."""
        cfg = self.cfg
        space = moga_space(width=cfg.width, stem_stride=cfg.stem_stride, init=cfg.init,
                           num_classes=datamodule.num_classes, input_size=datamodule.input_size)
        return lambda seed: space.to_spec(space.sample(torch.Generator().manual_seed(seed)),
                                          name="moga_random")

    def search(self, ctx: SearchContext) -> SearchResult | None:
        return _search(self.cfg, ctx)


def largest_path(space: ChainSearchSpace):
    """The path with the most parameters (choices do not change a layer's output width, so
    each layer's largest choice is picked on its own): a lower bound of what training the
    supernet holds in memory."""
    vector = [0] * len(space.n_choices)
    for i, n in enumerate(space.n_choices):
        vector[i] = max(range(n), key=lambda k: count(
            space.to_spec(vector[:i] + [k] + vector[i + 1:])).params)
    return space.to_spec(vector, name="moga_largest_path")


def _search(cfg: MogaConfig, ctx: SearchContext) -> SearchResult | None:
    m = N_CHOICES
    per_path = ctx.data.batch_size
    datamodule = ctx.datamodule() if cfg.same_batch else ctx.datamodule(
        batch_size=per_path * m)
    train_loader, heldout_loader = datamodule.search_dataloaders()
    space = moga_space(width=cfg.width, stem_stride=cfg.stem_stride, init=cfg.init,
                       num_classes=datamodule.num_classes, input_size=datamodule.input_size)
    ctx.check_memory(largest_path(space), per_path,
                     what=f"the supernet at width {cfg.width} (its largest path)",
                     fix="lower method.width or data.batch_size")
    if cfg.lut.table is not None:  # a table that does not fit is refused before any work
        given_table(Path(cfg.lut.table), space, cfg.lut)
    def build() -> FairNASModule:
        return FairNASModule(space, cfg.optim, batch_size=per_path, seed=ctx.seed,
                             same_batch=cfg.same_batch, weights=cfg.weights)

    run_dir = ctx.run_dir
    saved = run_dir / "supernet.pt"
    given = Path(cfg.supernet) if cfg.supernet is not None else saved if saved.is_file() \
        else None
    if given is not None:  # a trained supernet searched again, or a resumed run's
        ctx.reseed()
        module = build()
        _load_supernet(module.supernet, given)
        train_seconds = 0.0
    else:
        identity = json.dumps({"template": io.dumps(space.template),
                               "positions": [[repr(b) for b in p] for p in space.positions],
                               "weights": cfg.weights, "same_batch": cfg.same_batch})
        fitted = ctx.fit(build, name="moga_supernet", identity=identity,
                         train_dataloaders=train_loader, limit_val_batches=0)
        if fitted is None:
            return None
        module, train_seconds = fitted.module, fitted.seconds
        write_atomic(saved, lambda f: torch.save(module.supernet.state_dict(), f), binary=True)
    # Scoring runs on the CPU: there the trainer's memory format (auto: channels-last) makes
    # every candidate's recalibration and evaluation faster.
    supernet = module.supernet.cpu()
    set_memory_format(supernet, ctx.trainer.memory_format, torch.device("cpu"))

    start = time.time()
    table, report = latency_stage(space, cfg.lut, run_dir, ctx.seed)
    lut_seconds = time.time() - start

    # Fixed scoring batches: the first training batches (sliced to the per-path size) for
    # BN recalibration, the held-out split for accuracy. Fresh loaders and a reseeded
    # augmentation make them the same whether the supernet was trained or loaded (resume).
    ctx.reseed()
    train_loader, heldout_loader = datamodule.search_dataloaders()
    recal = [(x[:per_path], y[:per_path]) for x, y in
             _collect(train_loader, cfg.recalibration_steps)]
    scorer = CandidateScorer(supernet, recal, _collect(heldout_loader, cfg.score_batches),
                             torch.device("cpu"))
    # How well the supernet learned, independent of the search: uniformly drawn paths.
    g = torch.Generator().manual_seed(ctx.seed)
    random_paths = [scorer.accuracy(space.sample(g)) for _ in range(cfg.random_paths)]
    records: dict[tuple, dict] = {}

    def evaluate(genomes: np.ndarray) -> np.ndarray:
        out = []
        for g in genomes:
            vector = [int(v) for v in g]
            spec = space.to_spec(vector)
            cost = count(spec)
            top1, loss = scorer.evaluate(vector)
            rec = {"genome": vector, "accuracy": top1, "heldout_loss": loss,
                   "score": score_value(top1, loss, cfg.score),
                   "latency_ms": table.predict(spec), "params": cost.params, "macs": cost.macs}
            records[tuple(vector)] = rec
            values = {"accuracy": -rec["score"], "latency": rec["latency_ms"],
                      "params": -rec["params"]}
            out.append([values[o] for o in cfg.objectives])
        return np.asarray(out, dtype=float)

    def progress(res) -> None:
        best = -res.front_F[:, 0].min()
        log.info("generation %d: %d unique genomes, front of %d, best %s score %.4f",
                 res.generation, res.n_evals, len(res.front_F), cfg.score, best)

    start = time.time()
    result = run_nsga(evaluate, space.n_choices, len(cfg.objectives), cfg.nsga, seed=ctx.seed,
                      state_path=run_dir / "nsga_state.json", on_generation=progress)
    search_seconds = time.time() - start
    # Records of a resumed search's earlier generations are recomputed on demand.
    for g in result.X.tolist():
        if tuple(g) not in records:
            evaluate(np.asarray([g]))

    ranks = NonDominatedSorting().do(result.F, return_rank=True)[1]
    rows = []
    for g, rank in zip(result.X.tolist(), ranks):
        rows.append(dict(records[tuple(g)], rank=int(rank)))
    rows.sort(key=lambda r: (r["rank"], -r["score"]))
    _write_csv(rows, run_dir / "pareto.csv")
    _plot(rows, run_dir / "pareto.png")

    front = [records[tuple(int(v) for v in g)] for g in result.front_X]
    picked = {f"front/{k}": space.to_spec(front[idx]["genome"], name=f"moga_front_{k}")
              for k, idx in enumerate(result.picked)}
    allowed = [r for r in front if cfg.latency_limit_ms is None
               or r["latency_ms"] <= cfg.latency_limit_ms]
    if not allowed:
        raise ConfigError(f"method.latency_limit_ms: no front member is within "
                          f"{cfg.latency_limit_ms} ms (fastest: "
                          f"{min(r['latency_ms'] for r in front):.3f} ms)")
    best = max(allowed, key=lambda r: (r["score"], -r["latency_ms"]))
    spec = space.to_spec(best["genome"], name="moga_searched")
    metrics = {
        "genome": best["genome"], "accuracy": best["accuracy"],
        "heldout_loss": round(best["heldout_loss"], 5), "score": cfg.score,
        "latency_ms": best["latency_ms"], "params": best["params"], "macs": best["macs"],
        "random_paths_accuracy": (round(float(np.mean(random_paths)), 4) if random_paths
                                  else None),
        "random_paths_accuracy_min": round(min(random_paths), 4) if random_paths else None,
        "objectives": cfg.objectives, "weights": list(cfg.nsga.weights),
        "generations": result.generation, "unique_evaluations": result.n_evals,
        "front_size": len(front), "supernet": str(cfg.supernet or saved),
        "supernet_seconds": round(train_seconds, 1),
        "lut_seconds": round(lut_seconds, 1), "search_seconds": round(search_seconds, 1),
        "lut_entries": len(table), "lut_rel_rmse": report.get("rel_rmse"),
        "lut_kendall_tau": report.get("kendall_tau"),
    }
    artifacts = {name: run_dir / name for name in (
        "supernet.pt", "lut.json", "lut_report.json", "nsga_state.json", "pareto.csv",
        "pareto.png") if (run_dir / name).is_file()}
    return SearchResult(arch=spec, metrics=metrics, others=picked, artifacts=artifacts)


def _write_csv(rows: list[dict], path: Path) -> None:
    lines = ["genome,accuracy,heldout_loss,latency_ms,params,macs,rank"]
    for r in rows:
        lines.append(f"{'-'.join(map(str, r['genome']))},{r['accuracy']:.6f},"
                     f"{r['heldout_loss']:.6f},{r['latency_ms']:.4f},{r['params']},"
                     f"{r['macs']},{r['rank']}")
    write_text_atomic(path, "\n".join(lines) + "\n")


# ----------------------------------------------------------------------------- scripts


def demo_setting():
    """`method=moga` at the default (demo) budget: the checked method config, the supernet
    epochs and per-path batch, and the demo's data overrides (its search_holdout)."""
    method, budget, data = method_setting("moga", "demo")
    return (check(MogaConfig, method, "method"), int(budget.get("epochs") or 8),
            int(budget.get("batch_size") or 16), data)


def init_arg(value: str) -> Optional[str]:
    """--init: a scheme name, or `official` for the MnasNet-style init (method.init null)."""
    if value == "official":
        return None
    if value not in INIT_SCHEMES:
        raise ArgumentTypeError(f"expected official or one of {', '.join(INIT_SCHEMES)}")
    return value


def add_demo_arguments(group, demo: MogaConfig, per_path_batch: int) -> None:
    """The supernet and scoring flags the MoGA scripts share (bench_fairnas, rank_fidelity),
    each defaulting to the demo search's value."""
    group.add_argument("--width", type=float, default=demo.width,
                       help="MoGA width multiplier (default: the demo search's, %(default)s)")
    group.add_argument("--weights", default=demo.weights, choices=list(WEIGHTS),
                       help="choice blocks: independent or entangled (default: the demo "
                            "search's, %(default)s)")
    group.add_argument("--stem-stride", type=int, default=demo.stem_stride, choices=[1, 2],
                       help="default: the demo search's, %(default)s")
    group.add_argument("--init", type=init_arg, default=demo.init,
                       help="weight init: official or one of "
                            f"{', '.join(INIT_SCHEMES)} (default: the demo search's, %(default)s)")
    group.add_argument("--per-path-batch", type=int, default=per_path_batch,
                       help="images per path (default: the demo search's, %(default)s)")
    group.add_argument("--recal-steps", type=int, default=demo.recalibration_steps,
                       help="BN recalibration batches (default: the demo search's, %(default)s)")
    group.add_argument("--score-batches", type=int, default=demo.score_batches or 2,
                       help="held-out batches scored (default: the demo search's, %(default)s)")
    group.add_argument("--score-batch", type=int, default=256, help="held-out batch size")
    group.add_argument("--score", choices=list(SCORES), default=demo.score,
                       help="the search's accuracy estimate: top1 or loss (held-out "
                            "cross-entropy) (default: the demo search's, %(default)s)")
