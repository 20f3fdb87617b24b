"""DARTS in the cell search space, with MobileNeXt's sandglass operator (specs 1.8, 2.6).

`method.ops` names the operations (`darts`, `darts+sandglass`, `darts+ir_added`,
`darts+ir_replacing`, ops joined by '+', or a list);
the search network (nas.methods.darts.cells) is trained on one half of the training split while
its architecture tensors follow the other half: per iteration one architecture step (Adam;
first order, or second order through an unrolled weight step: nas.methods.darts.grad)
then one weight step (SGD, cosine lr, gradient clipping). Each epoch records the mixture
weights and the derived genotype; the result is the last genotype in the evaluation
network (arch.yaml), trained from scratch by `python -m nas.train`.
"""

from __future__ import annotations

import csv
import io as _io
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Optional

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.utilities import CombinedLoader

from nas.arch import io
from nas.arch.spec import ArchSpec, CellSpec, GenotypeSpec
from nas.arch.zoo.darts import darts as darts_spec
from nas.classifier import CHECKPOINT_FORMAT
from nas.config import ConfigError, require
from nas.cost import count
from nas.data import ImageDataModule
from nas.data.imagefolder import prepare_batch
from nas.files import write_text_atomic
from nas.methods.base import Method, SearchContext, SearchResult
from nas.methods.darts.grad import HVP_EPS, first_order, second_order
from nas.methods.darts.plots import plot_alphas, plot_cells
from nas.methods.darts.cells import (PARAMETER_FREE, CellSearchSpace, CellSupernet, edge_inputs,
                                ops_label, parse_ops)


@dataclass
class DartsConfig:
    name: str = "darts"
    # A preset (darts, darts+sandglass, darts+ir_added, darts+ir_replacing), ops joined by
    # '+', or a list of op names.
    ops: Any = "darts"
    order: int = 1                 # 1: first order; 2: unrolled (second order)
    # Search network (8 cells, 16 channels, stem 3 x 16 = 48).
    channels: int = 16
    layers: int = 8
    stem_multiplier: int = 3
    # Weights: SGD with momentum, lr cosine from lr to lr_min over the epochs, norm clipping.
    lr: float = 0.025
    lr_min: float = 0.001
    momentum: float = 0.9
    weight_decay: float = 3e-4
    grad_clip: float = 5.0
    # Architecture: Adam (L2 weight decay, as officially).
    arch_lr: float = 3e-4
    arch_betas: list[float] = field(default_factory=lambda: [0.5, 0.999])
    arch_weight_decay: float = 1e-3
    hvp_eps: float = HVP_EPS       # second order: the finite difference steps eps / ||v||
    # The transform of the half the architecture steps on: train (the official search: both
    # halves augmented; budget=paper) or eval.
    arch_transform: str = "eval"
    # The evaluation network arch.yaml describes.
    eval_channels: int = 36
    eval_layers: int = 20
    auxiliary: Optional[bool] = None   # null: on at 32x32 input (the CIFAR head needs 8x8)
    drop_path: float = 0.2

    def __post_init__(self) -> None:
        try:
            parse_ops(self.ops)
        except ValueError as e:
            raise ConfigError(f"ops: {e}") from None
        require(self.order in (1, 2), "order", "1 (first order) or 2 (second order)",
                self.order)
        require(self.arch_transform in ("train", "eval"), "arch_transform", "train or eval",
                self.arch_transform)
        for key in ("channels", "stem_multiplier", "eval_channels"):
            require(getattr(self, key) >= 1, key, "an integer >= 1", getattr(self, key))
        for key in ("layers", "eval_layers"):
            # Two reduction cells at layers // 3 and 2 layers // 3 need three cells.
            require(getattr(self, key) >= 3, key, "an integer >= 3", getattr(self, key))
        for key in ("lr", "arch_lr", "hvp_eps", "grad_clip"):
            require(getattr(self, key) > 0, key, "a positive number", getattr(self, key))
        for key in ("lr_min", "weight_decay", "arch_weight_decay", "momentum"):
            require(getattr(self, key) >= 0, key, "a number >= 0", getattr(self, key))
        require(self.lr_min <= self.lr, "lr_min", f"at most lr ({self.lr})", self.lr_min)
        require(len(self.arch_betas) == 2 and all(0 <= b < 1 for b in self.arch_betas),
                "arch_betas", "two numbers in [0, 1)", self.arch_betas)
        require(0 <= self.drop_path < 1, "drop_path", "a probability in [0, 1)", self.drop_path)


def eval_template(cfg: DartsConfig, *, num_classes: int, input_size: int,
                  in_channels: int) -> CellSpec:
    """The evaluation network a genotype goes into (its genotype is replaced)."""
    spec = darts_spec("darts_v2", num_classes=num_classes, input_size=input_size,
                      init_channels=cfg.eval_channels, layers=cfg.eval_layers,
                      auxiliary=cfg.auxiliary, drop_path=cfg.drop_path,
                      name="darts_searched")
    return replace(spec, in_channels=in_channels)


def parameter_free(edges) -> int:
    """Edges of a genotype whose operation has no weights (skip, pooling): DARTS's known
    failure is a collapse of the normal cell onto skip connections."""
    return sum(op in PARAMETER_FREE for op, _ in edges)


def genotype_text(edges) -> str:
    return " ".join(f"{op}({src})" for op, src in edges)


def make_optimizers(net: CellSupernet, cfg: DartsConfig
                    ) -> tuple[torch.optim.SGD, torch.optim.Adam]:
    """The weight optimizer (SGD with momentum and L2) and the architecture optimizer (Adam
    with L2, as officially)."""
    weights = torch.optim.SGD(net.weight_parameters(), cfg.lr, momentum=cfg.momentum,
                              weight_decay=cfg.weight_decay)
    arch = torch.optim.Adam(net.arch_parameters(), cfg.arch_lr, betas=tuple(cfg.arch_betas),
                            weight_decay=cfg.arch_weight_decay)
    return weights, arch


def architecture_gradient(net: CellSupernet, cfg: DartsConfig, w_opt, train, val
                          ) -> list[torch.Tensor]:
    """The gradient of the architecture tensors for one iteration (first or second order,
    cfg.order); `w_opt` is the weight optimizer (its lr and momentum buffers)."""
    alphas = net.arch_parameters()
    if cfg.order == 1:
        return first_order(net, alphas, *val)
    opt = getattr(w_opt, "optimizer", w_opt)  # Lightning wraps it
    return second_order(
        net, net.named_weight_parameters(), alphas, train, val,
        lr=opt.param_groups[0]["lr"], momentum=cfg.momentum,
        weight_decay=cfg.weight_decay, hvp_eps=cfg.hvp_eps,
        momentum_buffer=lambda w: opt.state.get(w, {}).get("momentum_buffer"))


def search_iteration(net: CellSupernet, cfg: DartsConfig, w_opt, a_opt, train, val, *,
                     backward: Callable = torch.Tensor.backward,
                     reduce: Callable = lambda g: g) -> tuple[torch.Tensor, torch.Tensor]:
    """One DARTS iteration: an architecture step on the batch `val`, then a weight step on
    the batch `train` (gradient norm clipped). `backward` and `reduce` (the architecture
    gradient over processes) are Lightning's under DDP. Returns the weight step's loss and
    logits."""
    for p, g in zip(net.arch_parameters(), architecture_gradient(net, cfg, w_opt, train, val)):
        p.grad = reduce(g)
    a_opt.step()
    a_opt.zero_grad(set_to_none=True)
    x, y = train
    logits = net(x)
    loss = F.cross_entropy(logits, y)
    w_opt.zero_grad(set_to_none=True)
    backward(loss)
    torch.nn.utils.clip_grad_norm_(net.weight_parameters(), cfg.grad_clip)
    w_opt.step()
    for p in net.arch_parameters():  # the weight step's share of their gradient
        p.grad = None
    return loss, logits


class DartsModule(pl.LightningModule):
    """Bilevel DARTS training with manual optimization (an architecture step, then a weight
    step, per iteration); keeps the per-epoch history that alphas.csv and genotypes.csv
    hold (in checkpoints too, so a resumed search writes the same files)."""

    def __init__(self, net: CellSupernet, cfg: DartsConfig):
        super().__init__()
        self.automatic_optimization = False
        self.net = net
        self.cfg = cfg
        self.history: list[dict] = []
        self._val = [0, 0, 0.0]  # correct, seen, loss sum

    @property
    def supernet(self) -> CellSupernet:
        """What the search stage hands back (nas.methods.stage)."""
        return self.net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """uint8 image batches (nas.data.imagefolder) normalised where they arrived."""
        return prepare_batch(batch)

    def configure_optimizers(self):
        weights, arch = make_optimizers(self.net, self.cfg)
        epochs = max(1, self.trainer.max_epochs or 1)
        cosine = torch.optim.lr_scheduler.CosineAnnealingLR(weights, epochs,
                                                            eta_min=self.cfg.lr_min)
        return [weights, arch], [{"scheduler": cosine, "interval": "epoch"}]

    def training_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch["weights"]
        w_opt, a_opt = self.optimizers()
        loss, logits = search_iteration(
            self.net, self.cfg, w_opt, a_opt, batch["weights"], batch["arch"],
            backward=self.manual_backward,
            reduce=lambda g: self.trainer.strategy.reduce(g, reduce_op="mean"))
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite DARTS training loss {float(loss)} at step "
                                     f"{self.global_step}; lower method.lr")
        top1 = (logits.argmax(1) == y).float().mean()
        self.log_dict({"train/loss": loss.detach(), "train/top1": top1,
                       "train/lr": w_opt.param_groups[0]["lr"]},
                      on_step=False, on_epoch=True, batch_size=len(y), sync_dist=True)

    def on_train_epoch_end(self) -> None:
        self.lr_schedulers().step()

    def on_validation_epoch_start(self) -> None:
        self._val = [0, 0, 0.0]

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        logits = self.net(x)
        self._val[0] += int((logits.argmax(1) == y).sum())
        self._val[1] += len(y)
        self._val[2] += float(F.cross_entropy(logits, y, reduction="sum"))

    def on_validation_epoch_end(self) -> None:
        correct, seen, loss = (self.trainer.strategy.reduce(torch.tensor(float(v)),
                                                            reduce_op="sum")
                               for v in self._val)
        top1 = float(correct / max(1.0, float(seen)))
        genotype = self.net.genotype()
        free = (parameter_free(genotype.normal), parameter_free(genotype.reduce))
        self.log_dict({"val/top1": top1, "val/loss": float(loss / max(1.0, float(seen))),
                       "search/param_free_normal": float(free[0]),
                       "search/param_free_reduce": float(free[1])})
        if self.trainer.sanity_checking:
            return
        normal, reduce = self.net.mixture_weights()
        self.history.append({
            "epoch": self.current_epoch + 1, "val_top1": top1,
            "normal": genotype.normal, "reduce": genotype.reduce,
            "param_free_normal": free[0], "param_free_reduce": free[1],
            "weights_normal": normal.detach().cpu().tolist(),
            "weights_reduce": reduce.detach().cpu().tolist()})
        if self.trainer.is_global_zero:
            write_history(self.history, self.net.ops, Path(self.trainer.default_root_dir))

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint.setdefault("nas", {}).update(
            {"format": CHECKPOINT_FORMAT, "darts": json.dumps(self.history)})

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.history = json.loads(checkpoint["nas"]["darts"])


def write_history(history: list[dict], ops, run_dir: Path) -> None:
    """alphas.csv (per epoch, cell kind and edge: the softmax weight of every op) and
    genotypes.csv (per epoch: the derived cells and their parameter-free edge counts)."""
    out = _io.StringIO()
    w = csv.writer(out)
    w.writerow(["epoch", "cell", "edge", "node", "input", *ops])
    for h in history:
        for kind in ("normal", "reduce"):
            for e, ((node, src), row) in enumerate(zip(edge_inputs(), h[f"weights_{kind}"])):
                w.writerow([h["epoch"], kind, e, node, src, *(f"{v:.6f}" for v in row)])
    write_text_atomic(run_dir / "alphas.csv", out.getvalue())
    out = _io.StringIO()
    w = csv.writer(out)
    w.writerow(["epoch", "val_top1", "param_free_normal", "param_free_reduce", "normal",
                "reduce"])
    for h in history:
        w.writerow([h["epoch"], f"{h['val_top1']:.4f}", h["param_free_normal"],
                    h["param_free_reduce"], genotype_text(h["normal"]),
                    genotype_text(h["reduce"])])
    write_text_atomic(run_dir / "genotypes.csv", out.getvalue())


class Darts(Method):
    """DARTS; the derived genotype in the evaluation network is the result."""

    Config = DartsConfig
    recipe = "darts_v2"  # DARTS's CIFAR evaluation recipe trains every derived cell network

    def sampler(self, datamodule: ImageDataModule) -> Callable[[int], ArchSpec]:
        """A genotype of the cell space (two inputs and their operations per node) in the
        evaluation network."""
        space = CellSearchSpace(parse_ops(self.cfg.ops), eval_template(
            self.cfg, num_classes=datamodule.num_classes, input_size=datamodule.input_size,
            in_channels=datamodule.in_channels))
        return lambda seed: space.to_spec(space.sample(torch.Generator().manual_seed(seed)),
                                          name="darts_random")

    def search(self, ctx: SearchContext) -> SearchResult | None:
        return _search(self.cfg, ctx)


def _search(cfg: DartsConfig, ctx: SearchContext) -> SearchResult | None:
    datamodule = ctx.datamodule()
    datamodule.setup()
    template = eval_template(cfg, num_classes=datamodule.num_classes,
                             input_size=datamodule.input_size,
                             in_channels=datamodule.in_channels)
    if template.input_size % 4:
        raise ConfigError(f"data.input_size: DARTS cells halve the resolution twice with "
                          f"FactorizedReduce, which needs even sizes: expected a multiple of "
                          f"4, got {template.input_size}")
    if template.auxiliary and template.input_size != 32:
        raise ConfigError(f"method.auxiliary: the CIFAR auxiliary head needs 32x32 inputs, the "
                          f"data has {template.input_size}x{template.input_size}; set "
                          f"method.auxiliary=false")
    space = CellSearchSpace(parse_ops(cfg.ops), template)
    train, held = datamodule.search_dataloaders(held_augment=cfg.arch_transform == "train")
    # The network searched: the operations, the search network's size, the evaluation
    # template the genotype is exported into.
    identity = json.dumps({"ops": list(space.ops), "channels": cfg.channels,
                           "layers": cfg.layers, "stem_multiplier": cfg.stem_multiplier,
                           "template": io.dumps(template)})
    fitted = ctx.fit(lambda: DartsModule(CellSupernet(space, channels=cfg.channels,
                                                      layers=cfg.layers,
                                                      stem_multiplier=cfg.stem_multiplier), cfg),
                     name="darts", identity=identity,
                     train_dataloaders=CombinedLoader({"weights": train, "arch": held},
                                                      mode="min_size"),
                     val_dataloaders=held, hand_back_as="darts_searched")
    if fitted is None:
        return None
    module, trainer, seconds = fitted.module, fitted.trainer, fitted.seconds
    net, exported, run_dir = module.net, fitted.exported, ctx.run_dir

    genotype: GenotypeSpec = exported.spec.genotype
    run_dir.mkdir(parents=True, exist_ok=True)
    write_history(module.history, net.ops, run_dir)
    plot_alphas(*net.mixture_weights(), net.ops, run_dir / "alphas.png")
    plot_cells(genotype, run_dir / "cells.png", title=f"DARTS ({ops_label(cfg.ops)}, order {cfg.order})")
    cost = count(exported.spec)
    last_epoch = module.history[-1] if module.history else {}
    normal, reduce = (w.detach() for w in net.mixture_weights())
    metrics = {
        "accuracy": last_epoch.get("val_top1"),
        "search_val_top1": last_epoch.get("val_top1"),
        "ops": list(net.ops), "order": cfg.order,
        "genotype_normal": genotype_text(genotype.normal),
        "genotype_reduce": genotype_text(genotype.reduce),
        "param_free_normal": parameter_free(genotype.normal),
        "param_free_reduce": parameter_free(genotype.reduce),
        # How far the mixtures left uniform (1 / |ops|): the mean over edges of the largest
        # softmax weight, per cell kind.
        "uniform_weight": round(1 / len(net.ops), 4),
        "mean_max_weight_normal": round(float(normal.max(dim=1).values.mean()), 4),
        "mean_max_weight_reduce": round(float(reduce.max(dim=1).values.mean()), 4),
        "params": cost.params, "macs": cost.macs,
        "search_params": sum(p.numel() for p in net.weight_parameters()),
        # Two optimizer steps per iteration: Lightning's global_step counts both.
        "epochs": trainer.current_epoch, "iterations": trainer.global_step // 2,
        "fit_seconds": round(seconds, 1),
    }
    artifacts = {name: run_dir / name for name in (
        "alphas.csv", "genotypes.csv", "alphas.png", "cells.png", "checkpoints/last.ckpt")}
    return SearchResult(arch=exported.spec, metrics=metrics, artifacts=artifacts)
