"""Random search, the baseline every search is measured against (Li & Talwalkar, 2019; Yang
et al., 2020): draw architectures uniformly from one method's space (`method.space`, at the
run's budget, from that method's own config), keep the first `samples` that fall inside the
cost band, train each once with the evaluator (nas.evaluation) and select the best by final
validation top-1. The test split is only reported.

Draw k of a run with seed s is the space's draw with seed `derived_seed(s, k)`; the kept
architecture j trains with seed `derived_seed(s, 1_000_000 + j)`.
"""

from __future__ import annotations

import csv
import dataclasses
import io as _io
from dataclasses import dataclass, field
from typing import Optional

from nas.arch import io
from nas.config import ConfigError, check, require
from nas.cost import count
from nas.evaluation import EvalJob, EvaluatorConfig, estimate_evaluation, evaluate
from nas.files import write_text_atomic
from nas.methods.base import (Method, SearchContext, SearchResult, method_class,
                              method_config)
from nas.optim import OptimConfig
from nas.seeding import derived_seed

SPACES = ("moga", "atomnas", "darts", "autonl", "rexnet")
TRAIN_SEEDS = 1_000_000     # offset of the trainings' seed stream from the draws'


@dataclass
class RandomConfig:
    name: str = "random"
    space: str = "moga"                    # whose search space: moga | atomnas | darts | ...
    samples: int = 8                       # architectures trained
    # Cost band: [low, high] of MACs and of params a drawn network must fall in (null: any),
    # so that the baseline is compared at the searches' cost.
    macs: Optional[list[float]] = None
    params: Optional[list[float]] = None
    max_draws: int = 5000
    # The trainings: an option of conf/optim (composed in by conf/method/random.yaml) on
    # the run's data, budget and trainer.
    optim: OptimConfig = field(default_factory=OptimConfig)
    evaluator: EvaluatorConfig = field(default_factory=EvaluatorConfig)

    def __post_init__(self) -> None:
        require(self.space in SPACES, "space", f"one of {', '.join(SPACES)}", self.space)
        require(self.samples >= 1, "samples", "an integer >= 1", self.samples)
        require(self.max_draws >= self.samples, "max_draws", f"at least samples "
                f"({self.samples})", self.max_draws)
        for key in ("macs", "params"):
            band = getattr(self, key)
            require(band is None or (len(band) == 2 and 0 <= band[0] <= band[1]), key,
                    "null or [low, high] with 0 <= low <= high", band)


def _inside(value: float, band: Optional[list[float]]) -> bool:
    return band is None or band[0] <= value <= band[1]


class RandomSearch(Method):
    Config = RandomConfig

    def target(self, budget: str) -> Method:
        """The method whose space is drawn from, configured as `method=<space>
        budget=<budget>` configures it."""
        cfg = method_config(self.cfg.space, budget)
        cls = method_class(cfg)
        return cls(check(cls.Config, {k: v for k, v in cfg.items() if k != "_target_"},
                         "method"))

    def search(self, ctx: SearchContext) -> Optional[SearchResult]:
        cfg = self.cfg
        datamodule = ctx.datamodule()
        datamodule.setup("fit")
        draw = self.target(ctx.budget.name).sampler(datamodule)
        kept, rows, seen = [], [], set()
        draws = {"kept": 0, "outside": 0, "duplicate": 0}
        for k in range(cfg.max_draws):
            spec = draw(derived_seed(ctx.seed, k))
            cost = count(spec)
            key = io.dumps(dataclasses.replace(spec, name=""))
            reason = None if _inside(cost.macs, cfg.macs) and _inside(cost.params, cfg.params) \
                else "outside"
            if reason is None and key in seen:
                reason = "duplicate"
            draws[reason or "kept"] += 1
            if reason is None:
                seen.add(key)
                name = f"r{len(kept):03d}"
                kept.append(dataclasses.replace(spec, name=f"random_{name}"))
                rows.append({"id": name, "draw": k, "params": cost.params, "macs": cost.macs})
                if len(kept) == cfg.samples:
                    break
        else:
            raise ConfigError(f"method.macs / method.params: {len(kept)} of {cfg.samples} "
                              f"architectures of the {cfg.space} space fell in the cost band "
                              f"(MACs {cfg.macs}, params {cfg.params}) in {cfg.max_draws} "
                              f"draws; expected a wider band or more method.max_draws")
        jobs = [EvalJob(row["id"], spec, derived_seed(ctx.seed, TRAIN_SEEDS + j))
                for j, (row, spec) in enumerate(zip(rows, kept))]
        recipe = ctx.recipe(cfg.optim)
        if ctx.estimate is not None:
            estimate_evaluation(jobs, recipe, ctx.run_dir, cfg.evaluator, ctx.estimate)
            return None
        results = evaluate(jobs, recipe, ctx.run_dir / "trainings", cfg.evaluator)
        for row in rows:
            m = results[row["id"]]
            row.update(val_top1=round(m["final_val_top1"], 5),
                       test_top1=round(m["test_top1"], 5), fit_seconds=m["fit_seconds"])
        best = max(range(len(rows)), key=lambda j: (rows[j]["val_top1"], -j))
        csv_path = _write_csv(rows, ctx.run_dir / "candidates.csv")
        b = rows[best]
        metrics = {"accuracy": b["val_top1"], "val_top1": b["val_top1"],
                   "test_top1": b["test_top1"], "params": b["params"], "macs": b["macs"],
                   "space": cfg.space, "samples": len(rows), "draws": draws,
                   "best": b["id"], "mean_val_top1": round(
                       sum(r["val_top1"] for r in rows) / len(rows), 5)}
        return SearchResult(arch=dataclasses.replace(kept[best], name="random_searched"),
                            metrics=metrics, artifacts={"candidates": csv_path})


def _write_csv(rows: list[dict], path):
    buf = _io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return write_text_atomic(path, buf.getvalue())
