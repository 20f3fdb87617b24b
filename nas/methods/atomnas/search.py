"""AtomNAS: search and train in one run (specs 1.5, 2.4).

The supernet's mixed blocks hold 6 x C_in atoms per kernel 3/5/7. Training minimises
cross-entropy plus rho(step) * sum_i c_i |alpha_i| over the BN scales after the depthwise
convs (one per atom), c_i the atom's cost over the mean atom cost; after each validation
the atoms whose scale and EMA scale are both below the threshold are removed physically
once their MACs reach the shrink threshold (nas.methods.atomnas.shrink). Evaluation uses the
weight EMA with recalibrated BN statistics; the final network needs no retraining.
"""

from __future__ import annotations

import csv
import dataclasses
import io as _io
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import pytorch_lightning as pl
import torch
from pytorch_lightning.strategies import DDPStrategy

from nas.arch import io
from nas.arch.builder import build
from nas.arch.spec import INIT_SCHEMES, ArchSpec, ChainSpec
from nas.arch.zoo.atomnas import KERNELS, atomnas_supernet
from nas.checkpoints import CheckpointError, checkpoint_spec, module_state
from nas.classifier import CHECKPOINT_FORMAT, ClassifierModule, NonFiniteLoss
from nas.config import require
from nas.cost import count
from nas.data import ImageDataModule
from nas.ema import tf_ema_decay
from nas.files import pyplot, save_figure, write_atomic, write_text_atomic
from nas.methods.base import Method, SearchContext, SearchResult
from nas.optim import OptimConfig
from nas.methods.atomnas.atoms import (PENALTY_MODES, atom_groups, dead_atoms, dead_macs,
                                ema_decay_for_batch, importance, keep_masks, penalty,
                                penalty_normaliser, penalty_weights, rho)
from nas.supernet.base import Exported
from nas.methods.atomnas.prunable import PrunableChain, atom_space, kept_atoms_spec

log = logging.getLogger(__name__)

SUPERNET_MACS_224 = 1_520_973_056  # the paper's 1521 M; the reference for the shrink threshold


def _paper_optim() -> OptimConfig:
    return OptimConfig(name="rmsprop_tf", lr=0.016, lr_reference_batch=256, momentum=0.9,
                       nesterov=False,
                       alpha=0.9, eps=1e-3, weight_decay=1e-5,
                       no_weight_decay_on_bn_and_bias=True, schedule="step_exp",
                       warmup_epochs=5.0, warmup_start_factor=None, decay_rate=0.97,
                       decay_epochs=2.4, min_lr=0.0, label_smoothing=0.1, ema_decay=0.9999)


@dataclass
class AtomNASConfig:
    name: str = "atomnas"
    lam: float = 1.8e-4                 # A 1.8e-4, B 1.2e-4, C 1.0e-4
    lam_scale: float = 1.0              # rho = lam * lam_scale (short runs: see the demo budget)
    penalty: str = "mean"               # mean (code) | sum (paper Eq. 6) | equal (Table 2)
    lam_warmup_fraction: float = 25 / 350  # rho rises over the first 25 of 350 epochs
    stem: int = 32
    width: float = 1.0
    stem_stride: int = 2
    init: Optional[str] = None          # null: the official MnasNet-style init
    dropout: float = 0.2
    ema_reference_batch: int = 4096     # optim.ema_decay is defined at this batch size
    dead_threshold: float = 1e-3
    shrink_delta_macs: Optional[float] = None  # null: 1e6 x supernet MACs / 1521 M
    recalibration_steps: int = 10
    final_recalibration_steps: int = 256
    optim: OptimConfig = field(default_factory=_paper_optim)

    def __post_init__(self) -> None:
        require(self.lam >= 0, "lam", "a number >= 0", self.lam)
        require(self.lam_scale > 0, "lam_scale", "a positive number", self.lam_scale)
        require(self.penalty in PENALTY_MODES, "penalty", f"one of {', '.join(PENALTY_MODES)}",
                self.penalty)
        require(0 <= self.lam_warmup_fraction <= 1, "lam_warmup_fraction",
                "a fraction in [0, 1]", self.lam_warmup_fraction)
        require(self.stem >= 1, "stem", "an integer >= 1", self.stem)
        require(self.width > 0, "width", "a positive multiplier", self.width)
        require(self.stem_stride in (1, 2), "stem_stride", "1 or 2", self.stem_stride)
        require(self.init in (None, *INIT_SCHEMES), "init", f"null or one of {INIT_SCHEMES}",
                self.init)
        require(0 <= self.dropout < 1, "dropout", "a probability in [0, 1)", self.dropout)
        require(self.ema_reference_batch >= 1, "ema_reference_batch", "an integer >= 1",
                self.ema_reference_batch)
        require(self.dead_threshold >= 0, "dead_threshold", "a number >= 0",
                self.dead_threshold)
        require(self.shrink_delta_macs is None or self.shrink_delta_macs >= 0,
                "shrink_delta_macs", "null or a number >= 0", self.shrink_delta_macs)
        for key in ("recalibration_steps", "final_recalibration_steps"):
            require(getattr(self, key) >= 0, key, "an integer >= 0", getattr(self, key))
        require(self.optim.ema_decay is not None and 0 < self.optim.ema_decay < 1,
                "optim.ema_decay", "a decay in (0, 1): AtomNAS needs the weight EMA",
                self.optim.ema_decay)


def supernet_spec(cfg: AtomNASConfig, *, num_classes: int, input_size: int,
                  in_channels: int) -> ChainSpec:
    spec = atomnas_supernet(cfg.stem, width=cfg.width, stem_stride=cfg.stem_stride,
                            num_classes=num_classes, input_size=input_size)
    head = dataclasses.replace(spec.head, dropout=cfg.dropout)
    return dataclasses.replace(spec, head=head, in_channels=in_channels,
                               init=cfg.init or spec.init)


class AtomNASModule(ClassifierModule):
    """The supernet (a PrunableChain) trained with the resource-aware penalty; shrinks itself
    after validations.

    `self.spec` is always the current architecture; `ema_model` is the weight EMA (its BN
    scales are the importance-factor momentum), evaluated after BN recalibration.
    """

    model: PrunableChain

    def __init__(self, spec: ChainSpec, cfg: AtomNASConfig, *, batch_size: int):
        super().__init__(spec, cfg.optim, batch_size=batch_size,
                         bn_recalibration_steps=cfg.recalibration_steps,
                         model=PrunableChain(spec))
        self.cfg = cfg
        self.groups = atom_groups(spec)
        # Fixed from the supernet: shrinking removes atoms but not the scale of the penalty.
        self.normaliser = penalty_normaliser(self.groups, cfg.penalty)
        self.weights = penalty_weights(self.groups, cfg.penalty, self.normaliser)
        self.shrink_delta = (cfg.shrink_delta_macs if cfg.shrink_delta_macs is not None
                             else 1e6 * count(spec).macs / SUPERNET_MACS_224)
        self.lam = cfg.lam * cfg.lam_scale
        self.history: list[dict] = []
        self.warmup_steps = 0

    @property
    def supernet(self) -> PrunableChain:
        """What the search stage hands back (nas.methods.stage)."""
        return self.model

    @property
    def supernet_spec(self) -> ChainSpec:
        return self.model.supernet_spec

    @property
    def ema_model(self) -> torch.nn.Module:
        return self.model.ema

    # ------------------------------------------------------------------ training
    def on_fit_start(self) -> None:
        self.warmup_steps = round(self.cfg.lam_warmup_fraction
                                  * self.trainer.estimated_stepping_batches)
        if not self.history:
            self._record(shrunk=False, dead=0, epochs_done=0)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        ce = self.criterion(self.model(x), y)
        r = rho(self.global_step, self.lam, self.warmup_steps)
        pen = penalty(self.model.net, self.groups, self.weights)
        loss = ce + r * pen
        if not torch.isfinite(loss):
            raise NonFiniteLoss(f"non-finite training loss ({loss.item()}) at step "
                                f"{self.global_step}; lower method.optim.lr or method.lam")
        n = x.shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=n)
        self.log("train/ce", ce, batch_size=n)
        self.log("train/penalty", pen, batch_size=n)
        self.log("train/rho", r, batch_size=n)
        return loss

    @property
    def ema_decay(self) -> float:
        """The importance factors' momentum beta at the global batch (the per-device batch
        times the devices), as the optimizer's lr: the same images per update on any number
        of devices."""
        devices = self._trainer.world_size if self._trainer is not None else 1
        return ema_decay_for_batch(self.cfg.optim.ema_decay, self.batch_size * max(1, devices),
                                   self.cfg.ema_reference_batch)

    @torch.no_grad()
    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        # TF's ExponentialMovingAverage(num_updates=step): the decay is capped at
        # (1 + n) / (10 + n), so short runs average recent weights (nas.ema).
        self.model.update_ema(tf_ema_decay(self.ema_decay, self.global_step))

    # ------------------------------------------------------------------ evaluation (EMA)
    @property
    def eval_model(self) -> torch.nn.Module:
        """Validation, test and BN recalibration use the weight EMA."""
        return self.ema_model

    # ------------------------------------------------------------------ shrinkage
    def on_validation_epoch_end(self) -> None:
        """Dynamic network shrinkage, once per epoch after validation (official code)."""
        t = self.trainer
        if t.sanity_checking or t.state.fn != "fit":
            return
        last = self.current_epoch >= (t.max_epochs or 1) - 1
        alpha_ema = importance(self.ema_model, self.groups)
        # At the end only the EMA decides (official); otherwise both must be small.
        alpha = None if last else importance(self.model.net, self.groups)
        dead = dead_atoms(alpha, alpha_ema, self.cfg.dead_threshold)
        macs = dead_macs(self.groups, dead)
        shrink = macs > 0 and (macs >= self.shrink_delta or last)
        keep = keep_masks(self.spec, self.groups, dead,
                          alpha if alpha is not None else alpha_ema) if shrink else None
        # Under DDP every rank holds the same weights and so finds the same atoms; rank
        # zero's decision is sent to all anyway, so that no rounding can make them differ.
        shrink, macs, keep = t.strategy.broadcast((shrink, macs, keep), src=0)
        if shrink:
            self.shrink(keep)
        self._record(shrunk=shrink, dead=macs, epochs_done=self.current_epoch + 1)

    def shrink(self, keep: dict) -> None:
        """Remove atoms from the model, its EMA and the optimizer state; under DDP, wrap the
        shrunk module anew, as the old wrapper's gradient buckets hold the removed
        parameters (the official code re-wraps after each shrink too)."""
        if not keep:
            return
        old = self.spec
        opts = [self.optimizers(use_pl_optimizer=False)] if self._trainer is not None else []
        before = time.time()
        self._set_spec(self.model.shrink(keep, optimizers=opts, memory_format=self.memory_format))
        strategy = self._trainer.strategy if self._trainer is not None else None
        if isinstance(strategy, DDPStrategy) and strategy.model is not self:
            strategy.model = self
            strategy.configure_ddp()
        log.info("shrink at epoch %d: %.2f M -> %.2f M MACs (%.2f s)", self.current_epoch,
                 count(old).macs / 1e6, self.cost.macs / 1e6, time.time() - before)

    def _set_spec(self, spec: ChainSpec) -> None:
        self.spec = spec
        self.cost = count(spec)
        self.groups = atom_groups(spec)
        self.weights = penalty_weights(self.groups, self.cfg.penalty, self.normaliser)

    def _record(self, *, shrunk: bool, dead: int, epochs_done: int) -> None:
        """One row of flops.csv: the network after `epochs_done` epochs (and their shrink)."""
        self.history.append({
            "epoch": epochs_done, "step": self.global_step, "macs": self.cost.macs,
            "params": self.cost.params, "dead_macs": int(dead), "shrunk": bool(shrunk),
            "rho": rho(self.global_step, self.lam, self.warmup_steps),
            "atoms": sum(g.channels for g in self.groups)})

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["nas"]["atomnas"] = {"history": json.dumps(self.history)}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Rebuild the shrunk network before Lightning loads its weights."""
        stored = io.loads(checkpoint["nas"]["arch_yaml"])
        if stored != self.spec:
            self.model.rebuild(stored, self.memory_format)
            self._set_spec(stored)
        self.history = json.loads(checkpoint["nas"].get("atomnas", {}).get("history", "[]"))


# ----------------------------------------------------------------------------- outputs


def verify_shrunk_weights(ckpt: dict, path: Path) -> None:
    """The stage's extra resume check: the weights fit the shrunk architecture stored with
    them (the stage has checked that the checkpoint is this search's)."""
    stored = checkpoint_spec(ckpt, path)
    for prefix, what in (("model.net.", "network"), ("model.ema.", "weight EMA")):
        try:
            build(stored).load_state_dict(module_state(ckpt, prefix))
        except RuntimeError as e:
            raise CheckpointError(f"{path}: {what} weights do not fit the stored architecture "
                                  f"({str(e).strip().splitlines()[0][:160]})") from None


def model_checkpoint(exported: Exported, path: Path) -> None:
    """A trained network in the training stage's checkpoint format (nas.checkpoints)."""
    payload = {"nas": {"format": CHECKPOINT_FORMAT, "arch_yaml": io.dumps(exported.spec)},
               "state_dict": {f"model.{k}": v for k, v in exported.state_dict.items()}}
    write_atomic(path, lambda f: torch.save(payload, f), binary=True)


def _write_flops(history: list[dict], path_csv: Path, path_png: Path) -> None:
    buf = _io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(history[0]), lineterminator="\n")
    w.writeheader()
    w.writerows(history)
    write_text_atomic(path_csv, buf.getvalue())

    plt = pyplot()

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    ax.plot([h["epoch"] for h in history], [h["macs"] / 1e6 for h in history], marker="o", ms=3)
    for h in history:
        if h["shrunk"]:
            ax.axvline(h["epoch"], color="0.85", lw=0.8, zorder=0)
    ax.set_xlabel("epochs trained")
    ax.set_ylabel("MACs (M)")
    ax.set_title("AtomNAS: network MACs during training (grey: shrink)")
    fig.tight_layout()
    save_figure(fig, path_png)


def _write_atoms(supernet: ChainSpec, final: ChainSpec, path: Path) -> None:
    """Per searchable block, the share of its kernel 3/5/7 atoms kept (paper Fig. 6)."""
    plt = pyplot()

    rows = [i for i, b in enumerate(supernet.blocks) if getattr(b, "expand", False)]
    fig, ax = plt.subplots(figsize=(max(6.4, 0.35 * len(rows)), 4.0))
    bottom = [0.0] * len(rows)
    for k in KERNELS:
        share = []
        for i in rows:
            full = dict(zip(supernet.blocks[i].kernels, supernet.blocks[i].hidden))
            kept = dict(zip(final.blocks[i].kernels, final.blocks[i].hidden))
            total = sum(full.values())
            share.append(kept.get(k, 0) / total if total else 0.0)
        ax.bar(range(len(rows)), share, bottom=bottom, label=f"{k}x{k}")
        bottom = [b + s for b, s in zip(bottom, share)]
    ax.set_xticks(range(len(rows)), [str(i) for i in rows])
    ax.set_xlabel("block")
    ax.set_ylabel("atoms kept (share of the supernet block)")
    ax.set_title("AtomNAS: atoms kept per block and kernel")
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path)


# ----------------------------------------------------------------------------- driver


class AtomNAS(Method):
    """Train the supernet with the penalty and shrinkage; the result is the trained network."""

    Config = AtomNASConfig
    recipe = "atomnas_a"  # the paper trains its searched networks with the search's recipe
    not_estimated = ("shrinking: the steps are timed on the whole supernet, and later epochs "
                     "train a smaller network, so this is an upper bound")

    def sampler(self, datamodule: ImageDataModule) -> Callable[[int], ArchSpec]:
        """The supernet with a uniform number of atoms kept per kernel group."""
        spec = supernet_spec(self.cfg, num_classes=datamodule.num_classes,
                             input_size=datamodule.input_size,
                             in_channels=datamodule.in_channels)
        space = atom_space(spec)
        return lambda seed: kept_atoms_spec(
            spec, space.sample(torch.Generator().manual_seed(seed)), name="atomnas_random")

    def search(self, ctx: SearchContext) -> SearchResult | None:
        return _search(self.cfg, ctx)


def _search(cfg: AtomNASConfig, ctx: SearchContext) -> SearchResult | None:
    datamodule = ctx.datamodule()
    spec = supernet_spec(cfg, num_classes=datamodule.num_classes,
                         input_size=datamodule.input_size, in_channels=datamodule.in_channels)
    ctx.check_memory(spec, datamodule.batch_size,
                     what=f"the AtomNAS supernet at width {cfg.width}",
                     fix="lower method.width (or method.stem) or data.batch_size")
    def evaluate(module: AtomNASModule, trainer: pl.Trainer) -> tuple[dict, dict]:
        """The final evaluation of the handed-back weights, as recalibrated there (every
        rank takes part under DDP)."""
        module.bn_recalibration_steps = 0
        return (trainer.validate(module, datamodule=datamodule, verbose=False)[0],
                trainer.test(module, datamodule=datamodule, verbose=False)[0])

    fitted = ctx.fit(lambda: AtomNASModule(spec, cfg, batch_size=datamodule.batch_size),
                     name="atomnas", identity=io.dumps(spec), verify=verify_shrunk_weights,
                     datamodule=datamodule, gradient_clip_val=cfg.optim.grad_clip,
                     # The result: the atoms alive with the EMA weights, their BN statistics
                     # re-estimated on many batches.
                     hand_back_as="atomnas_searched",
                     recalibration_steps=cfg.final_recalibration_steps, after_fit=evaluate)
    if fitted is None:
        return None
    module, trainer, fit_seconds = fitted.module, fitted.trainer, fitted.seconds
    exported, run_dir = fitted.exported, ctx.run_dir
    val, test = fitted.after
    model_checkpoint(exported, run_dir / "model.ckpt")
    _write_flops(module.history, run_dir / "flops.csv", run_dir / "flops.png")
    _write_atoms(spec, exported.spec, run_dir / "atoms.png")
    supernet_cost, cost = count(spec), count(exported.spec)
    metrics = {
        "accuracy": val.get("val/top1"), "val_top1": val.get("val/top1"),
        "val_top5": val.get("val/top5"), "test_top1": test.get("test/top1"),
        "macs": cost.macs, "params": cost.params, "params_nobn": cost.params_nobn,
        "supernet_macs": supernet_cost.macs, "supernet_params": supernet_cost.params,
        "lam": cfg.lam, "penalty": cfg.penalty, "shrinks": sum(h["shrunk"] for h in module.history),
        "epochs": trainer.current_epoch, "global_step": trainer.global_step,
        "ema_decay": module.ema_decay, "fit_seconds": round(fit_seconds, 1),
    }
    artifacts = {name: run_dir / name for name in (
        "flops.csv", "flops.png", "atoms.png", "checkpoints/last.ckpt")}
    return SearchResult(arch=exported.spec, metrics=metrics, weights=run_dir / "model.ckpt",
                        artifacts=artifacts)
