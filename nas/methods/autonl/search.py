"""AutoNL: LightNL placement and ratios learned through differentiable thresholds on a
Single-Path superkernel (specs 1.2, 2.3).

The superkernel network (nas.methods.autonl.superkernel) trains its weights and thresholds with
one optimizer on CE (label smoothing 0.1) + lambda * ln(cost), the cost a differentiable
function of the decisions: MACs with LightNL's matrix products (AutoNL's FLOPs), or the
latency lookup table (`cost=latency`, Single-Path NAS's objective). For the first
`warmup_fraction` of the steps lambda is 0 and the indicators are dropped out (Single-Path
NAS: 6,255 of 10,008 steps, keep probability 0.6). The decisions at the end are the
architecture, trained from scratch with the AutoNL recipe.
"""

from __future__ import annotations

import csv
import io as _io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from nas.arch import io
from nas.arch.shapes import conv_out, iter_blocks
from nas.arch.spec import INIT_SCHEMES, ArchSpec
from nas.classifier import ClassifierModule, NonFiniteLoss
from nas.config import require
from nas.cost import count
from nas.data import ImageDataModule
from nas.files import pyplot, save_figure, write_text_atomic
from nas.methods.base import Method, SearchContext, SearchResult
from nas.optim import OptimConfig
from nas.seeding import mix_seed
from nas.methods.autonl.superkernel import (Compactness, SuperkernelNet, SuperkernelSpace,
                                            autonl_space, choice_from_bits)

COSTS = ("macs", "latency")


def _paper_optim() -> OptimConfig:
    return OptimConfig(name="rmsprop_tf", lr=0.016, lr_reference_batch=256, momentum=0.9,
                       nesterov=False, alpha=0.9, eps=1e-3, weight_decay=1e-5,
                       no_weight_decay_on_bn_and_bias=True, schedule="step_exp",
                       warmup_epochs=0.0, warmup_start_factor=None, decay_rate=0.97,
                       decay_epochs=2.4, min_lr=0.0, label_smoothing=0.1, ema_decay=None)


@dataclass
class AutoNLConfig:
    name: str = "autonl"
    lam: float = 20.0                   # weight of ln(cost) after warm-up (Single-Path: 0.02 x 1000)
    cost: str = "macs"                  # macs | latency
    warmup_fraction: float = 6255 / 10008
    keep_prob: float = 0.6              # indicator dropout during warm-up
    # LightNL's compactness rule: distance euclidean (Eq. 12, budget=paper) | relative;
    # training ema (the paper) | batch; the EMA's momentum.
    compactness: Compactness = field(default_factory=Compactness)
    threshold_lr_scale: float = 1.0     # thresholds' lr / the weights' lr (paper: one lr)
    width: float = 1.0
    stem_stride: int = 2
    init: Optional[str] = None          # null: the official MnasNet-style init
    dropout: float = 0.2
    se: bool = True
    lightnl: bool = True
    recalibration_steps: int = 10       # BN recalibration before each validation
    lut: Optional[str] = None           # cost=latency: a table file (built here if missing)
    lut_threads: int = 1
    lut_repeats: int = 30
    optim: OptimConfig = field(default_factory=_paper_optim)

    def __post_init__(self) -> None:
        require(self.lam >= 0, "lam", "a number >= 0", self.lam)
        require(self.cost in COSTS, "cost", f"one of {', '.join(COSTS)}", self.cost)
        require(0 <= self.warmup_fraction < 1, "warmup_fraction", "a fraction in [0, 1)",
                self.warmup_fraction)
        require(0 < self.keep_prob <= 1, "keep_prob", "a probability in (0, 1]", self.keep_prob)
        require(self.threshold_lr_scale > 0, "threshold_lr_scale", "a positive number",
                self.threshold_lr_scale)
        require(self.width > 0, "width", "a positive multiplier", self.width)
        require(self.stem_stride in (1, 2), "stem_stride", "1 or 2", self.stem_stride)
        require(self.init in (None, *INIT_SCHEMES), "init", f"null or one of {INIT_SCHEMES}",
                self.init)
        require(0 <= self.dropout < 1, "dropout", "a probability in [0, 1)", self.dropout)
        require(self.recalibration_steps >= 0, "recalibration_steps", "an integer >= 0",
                self.recalibration_steps)
        require(self.lut_threads >= 1, "lut_threads", "an integer >= 1", self.lut_threads)
        require(self.lut_repeats >= 1, "lut_repeats", "an integer >= 1", self.lut_repeats)


def search_space(cfg: AutoNLConfig, *, num_classes: int, input_size: int,
                 in_channels: int) -> SuperkernelSpace:
    return autonl_space(width=cfg.width, stem_stride=cfg.stem_stride, num_classes=num_classes,
                        input_size=input_size, in_channels=in_channels, dropout=cfg.dropout,
                        init=cfg.init or "tf_mnas", se=cfg.se, lightnl=cfg.lightnl)


def space_identity(space: SuperkernelSpace) -> str:
    """The supernet a checkpoint belongs to: its largest network and its decisions."""
    return io.dumps(space.to_spec(space.largest())) + json.dumps(
        [[d.name, [repr(c) for c in d.candidates]] for d in space.decisions])


class AutoNLModule(ClassifierModule):
    """The superkernel network trained on CE + lambda ln(cost), thresholds included."""

    model: SuperkernelNet

    def __init__(self, net: SuperkernelNet, cfg: AutoNLConfig, *, batch_size: int, seed: int):
        spec = net.space.to_spec(net.space.largest())
        super().__init__(spec, cfg.optim, batch_size=batch_size,
                         bn_recalibration_steps=cfg.recalibration_steps, model=net)
        self.cfg, self.seed = cfg, seed
        self.warmup_steps = 0
        self.history: list[dict] = []

    @property
    def supernet(self) -> SuperkernelNet:
        """What the search stage hands back (nas.methods.stage)."""
        return self.model

    def on_fit_start(self) -> None:
        self.warmup_steps = round(self.cfg.warmup_fraction * self.trainer.estimated_stepping_batches)
        if not self.history:
            self._record(0)

    def lr_scaled_parameters(self) -> tuple[list[torch.nn.Parameter], float]:
        return self.model.thresholds(), self.cfg.threshold_lr_scale

    def lam(self, step: int) -> float:
        return 0.0 if step < self.warmup_steps else self.cfg.lam

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        step = self.global_step
        warm = step < self.warmup_steps
        self.model.keep_prob = self.cfg.keep_prob if warm else 1.0
        # The dropout draws depend on the seed and step only: the same on every DDP rank,
        # and the same after a resume.
        self.model.generator = torch.Generator().manual_seed(mix_seed(self.seed, step))
        ce = self.criterion(self.model(x), y)
        cost = self.model.cost()
        lam = self.lam(step)
        loss = ce + lam * torch.log(cost) if lam else ce
        if not torch.isfinite(loss):
            raise NonFiniteLoss(f"non-finite training loss ({loss.item()}) at step {step}; "
                                f"lower method.optim.lr or method.lam")
        n = x.shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=n)
        self.log("train/ce", ce, batch_size=n)
        self.log("train/cost", cost.detach(), prog_bar=True, batch_size=n)
        self.log("train/lam", lam, batch_size=n)
        return loss

    def on_validation_epoch_end(self) -> None:
        t = self.trainer
        if t.sanity_checking or t.state.fn != "fit":
            return
        self._record(self.current_epoch + 1)

    def _record(self, epochs_done: int) -> None:
        """The decisions and their cost after `epochs_done` epochs (decisions.csv)."""
        net = self.model
        decisions = net.decisions()
        layers = []
        for s, d in zip(net.space.slots, decisions):
            c = choice_from_bits(s, {k: float(v) for k, v in d.items()})
            layers.append({"kernel": c.kernel, "expansion": c.expansion, "skip": c.skip,
                           "se_reduce": c.se_reduce or 0,
                           "lightnl_ratio": c.lightnl[0] if c.lightnl else 0.0,
                           "lightnl_stride": c.lightnl[1] if c.lightnl else 0})
        self.history.append({"epoch": epochs_done, "step": self.global_step,
                             "cost": float(net.cost(decisions)), "layers": layers})

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["nas"]["autonl"] = {"history": json.dumps(self.history)}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.history = json.loads(checkpoint["nas"]["autonl"]["history"])


# ----------------------------------------------------------------------------- outputs

LAYER_FIELDS = ("kernel", "expansion", "skip", "se_reduce", "lightnl_ratio", "lightnl_stride")


def write_decisions(history: list[dict], path: Path) -> None:
    """decisions.csv: one row per recorded epoch and layer."""
    buf = _io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["epoch", "step", "cost", "layer", *LAYER_FIELDS])
    for h in history:
        for i, layer in enumerate(h["layers"]):
            w.writerow([h["epoch"], h["step"], round(h["cost"]), i,
                        *(layer[k] for k in LAYER_FIELDS)])
    write_text_atomic(path, buf.getvalue())


def plot_decisions(history: list[dict], cost_name: str, path: Path) -> None:
    """The cost over training, and per layer and epoch the kernel, expansion, skip, SE and
    LightNL decisions."""
    plt = pyplot()
    epochs = [h["epoch"] for h in history]
    n = len(history[0]["layers"])
    panels = [("kernel", lambda c: c["kernel"]), ("expansion", lambda c: c["expansion"]),
              ("skipped", lambda c: float(c["skip"])), ("SE reduce", lambda c: c["se_reduce"]),
              ("LightNL ratio / stride",
               lambda c: c["lightnl_ratio"] / max(1, c["lightnl_stride"]))]
    fig, axes = plt.subplots(1 + len(panels), 1, figsize=(max(6.4, 0.3 * n + 2), 12),
                             gridspec_kw={"height_ratios": [2] + [1] * len(panels)})
    scale = 1e6 if cost_name == "macs" else 1.0
    axes[0].plot(epochs, [h["cost"] / scale for h in history], marker="o", ms=3)
    axes[0].set_ylabel("MACs (M)" if cost_name == "macs" else "latency (ms)")
    axes[0].set_xlabel("epochs trained")
    axes[0].set_title("AutoNL: cost of the decisions over training")
    for ax, (name, value) in zip(axes[1:], panels):
        # A skipped layer's other decisions have no effect: left blank.
        grid = [[value(c) if name == "skipped" or not c["skip"] else math.nan
                 for c in (h["layers"][i] for h in history)] for i in range(n)]
        im = ax.imshow(torch.tensor(grid).T.numpy(), aspect="auto", cmap="viridis",
                       interpolation="nearest")
        ax.set_ylabel("epoch")
        ax.set_yticks(range(len(epochs)), [str(e) for e in epochs], fontsize=6)
        ax.set_xticks(range(n), [str(i) for i in range(n)], fontsize=7)
        ax.set_title(name, fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.02)
    axes[-1].set_xlabel("searchable layer")
    fig.tight_layout()
    save_figure(fig, path)


def lightnl_by_stage(spec) -> dict[str, int]:
    """LightNL blocks of the exported network per resolution stage ("56x56": count)."""
    out: dict[str, int] = {}
    for _, b, _, hw in iter_blocks(spec):
        if getattr(b, "lightnl", None) is not None:
            key = f"{conv_out(hw, b.stride)}x{conv_out(hw, b.stride)}"
            out[key] = out.get(key, 0) + 1
    return out


# ----------------------------------------------------------------------------- driver


class AutoNL(Method):
    """Train the superkernel network with the cost loss; the thresholds' decisions are the
    architecture."""

    Config = AutoNLConfig
    not_estimated = "with method.cost=latency, the latency table built before the training"
    recipe = "autonl_s"

    def sampler(self, datamodule: ImageDataModule) -> Callable[[int], ArchSpec]:
        """Per layer a kernel, expansion, skip, SE and LightNL choice of the superkernel
        space."""
        space = search_space(self.cfg, num_classes=datamodule.num_classes,
                             input_size=datamodule.input_size,
                             in_channels=datamodule.in_channels)
        return lambda seed: space.to_spec(space.sample(torch.Generator().manual_seed(seed)),
                                          name="autonl_random")

    def search(self, ctx: SearchContext) -> SearchResult | None:
        return _search(self.cfg, ctx)


def _search(cfg: AutoNLConfig, ctx: SearchContext) -> SearchResult | None:
    datamodule = ctx.datamodule()
    space = search_space(cfg, num_classes=datamodule.num_classes,
                         input_size=datamodule.input_size, in_channels=datamodule.in_channels)
    # A lower bound: the search network holds at least its largest network's activations.
    ctx.check_memory(space.to_spec(space.largest()), datamodule.batch_size,
                     what=f"the AutoNL search network at width {cfg.width}",
                     fix="lower method.width or data.batch_size")
    costs = None
    if cfg.cost == "latency":
        from nas.methods.autonl.latency import latency_model

        costs = latency_model(space, cfg, ctx.run_dir)
    def build() -> AutoNLModule:
        net = SuperkernelNet(space, compactness=cfg.compactness, costs=costs)
        return AutoNLModule(net, cfg, batch_size=datamodule.batch_size, seed=ctx.seed)

    fitted = ctx.fit(build, name="autonl", identity=space_identity(space),
                     datamodule=datamodule, gradient_clip_val=cfg.optim.grad_clip,
                     hand_back_as="autonl_searched")
    if fitted is None:
        return None
    module, trainer, seconds = fitted.module, fitted.trainer, fitted.seconds
    net, exported, run_dir = module.model, fitted.exported, ctx.run_dir
    search_cost = float(net.cost(net.decisions()))
    cost, largest = count(exported.spec), count(space.to_spec(space.largest()))
    run_dir.mkdir(parents=True, exist_ok=True)
    write_decisions(module.history, run_dir / "decisions.csv")
    plot_decisions(module.history, cfg.cost, run_dir / "decisions.png")
    last = trainer.callback_metrics
    metrics = {
        "accuracy": _float(last.get("val/top1")), "search_val_top1": _float(last.get("val/top1")),
        "macs": cost.macs, "lightnl_macs": cost.extra_macs, "params": cost.params,
        "params_nobn": cost.params_nobn,
        "search_cost": search_cost, "cost": cfg.cost, "lam": cfg.lam,
        "largest_macs": largest.macs, "largest_lightnl_macs": largest.extra_macs,
        "blocks": len(exported.spec.blocks),
        "lightnl_blocks": sum(b.lightnl is not None for b in exported.spec.blocks),
        "lightnl_by_stage": lightnl_by_stage(exported.spec),
        "epochs": trainer.current_epoch, "global_step": trainer.global_step,
        "fit_seconds": round(seconds, 1),
    }
    artifacts = {name: run_dir / name for name in (
        "decisions.csv", "decisions.png", "checkpoints/last.ckpt")}
    return SearchResult(arch=exported.spec, metrics=metrics, artifacts=artifacts)


def _float(v: Any) -> Optional[float]:
    return None if v is None else round(float(v), 6)

