"""Training recipes (`conf/optim/*`): optimizer, per-step lr schedule and loss knobs.

SGD, the schedulers and label smoothing come from torch; the one thing neither torch nor
our required dependencies provide is TensorFlow's RMSProp (MnasNet, MoGA, AutoNL, AtomNAS
all tuned their hyper-parameters against it), so `RMSpropTF` is implemented here.

The LightningModule calls `build_optimizer` and returns
`{"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}`;
`grad_clip`, `label_smoothing` and `ema_decay` are read from the config by the trainer
(gradient_clip_val, CrossEntropyLoss(label_smoothing=...), the EMA callback).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from nas.config import ConfigError, require

OPTIMIZERS = ("sgd", "rmsprop_tf")
SCHEDULES = ("cosine", "step_exp", "constant")


class RMSpropTF(torch.optim.Optimizer):
    """RMSProp as TensorFlow's RMSPropOptimizer computes it (timm's RMSpropTF semantics).

    Per parameter θ with gradient g, decay α, momentum μ, learning rate η:

        g   <- g + wd·θ                       (L2 added to the gradient, TF/timm default)
        ms  <- ms + (1 - α)·(g² - ms)         (ms starts at 1, not 0)
        mg  <- mg + (1 - α)·(g - mg)          (centered only; mg starts at 0)
        d   = sqrt(ms + ε)  or, centered, sqrt(ms - mg² + ε)      (ε inside the sqrt)
        mom <- μ·mom + η·g / d                (η inside the buffer: TF's lr_in_momentum)
        θ   <- θ - mom                        (μ = 0: θ <- θ - η·g / d)

    Why not torch.optim.RMSprop: torch starts ms at 0 and adds ε outside the sqrt, so its
    first steps are ≈ ±3·η whatever the gradient scale (TF's ms = 1 keeps them ≈ η·g), and
    it multiplies the whole momentum buffer by the current η, so a schedule change also
    rescales the accumulated momentum, where TF only scales the new contributions.
    """

    def __init__(self, params: Iterable, lr: float, alpha: float = 0.9, eps: float = 1e-3,
                 momentum: float = 0.9, weight_decay: float = 0.0, centered: bool = False):
        for name, value, ok in (("lr", lr, lr >= 0), ("alpha", alpha, 0 <= alpha < 1),
                                ("eps", eps, eps >= 0), ("momentum", momentum, momentum >= 0),
                                ("weight_decay", weight_decay, weight_decay >= 0)):
            if not ok:
                raise ValueError(f"RMSpropTF: invalid {name} {value!r}")
        defaults = {"lr": lr, "alpha": alpha, "eps": eps, "momentum": momentum,
                    "weight_decay": weight_decay, "centered": centered}
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, alpha, eps = group["lr"], group["alpha"], group["eps"]
            momentum, wd = group["momentum"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("RMSpropTF does not support sparse gradients")
                state = self.state[p]
                if not state:
                    state["square_avg"] = torch.ones_like(p)
                    if momentum > 0:
                        state["momentum_buffer"] = torch.zeros_like(p)
                    if group["centered"]:
                        state["grad_avg"] = torch.zeros_like(p)
                grad = p.grad if wd == 0 else p.grad.add(p, alpha=wd)
                square_avg = state["square_avg"]
                square_avg.add_(grad.square() - square_avg, alpha=1 - alpha)
                if group["centered"]:
                    grad_avg = state["grad_avg"]
                    grad_avg.add_(grad - grad_avg, alpha=1 - alpha)
                    denom = square_avg.addcmul(grad_avg, grad_avg, value=-1).add_(eps).sqrt_()
                else:
                    denom = square_avg.add(eps).sqrt_()
                if momentum > 0:
                    buf = state["momentum_buffer"]
                    buf.mul_(momentum).addcdiv_(grad, denom, value=lr)
                    p.sub_(buf)
                else:
                    p.addcdiv_(grad, denom, value=-lr)
        return loss


@dataclass
class OptimConfig:
    """Schema of the `optim` config group (one schema for every recipe; see conf/optim/)."""

    # The defaults are conf/optim/sgd_cosine.yaml, the training stage's default recipe.
    name: str = "sgd"                       # "sgd" | "rmsprop_tf"
    lr: float = 0.5                         # base lr for lr_reference_batch images
    lr_reference_batch: int = 512           # actual lr = lr * batch_size / lr_reference_batch
    momentum: float = 0.9
    nesterov: bool = True                   # sgd only
    alpha: float = 0.9                      # rmsprop_tf: decay of the squared-gradient average
    eps: float = 1e-3                       # rmsprop_tf: inside the sqrt
    weight_decay: float = 1e-5              # L2 coefficient added to the gradient
    no_weight_decay_on_bn_and_bias: bool = True
    schedule: str = "cosine"                # "cosine" | "step_exp" | "constant"
    warmup_epochs: float = 3.0
    # Linear warm-up from lr*factor to lr. null: start from the unscaled reference lr,
    # factor = min(1, lr_reference_batch / batch_size) (MnasNet/AtomNAS/AutoNL recipe).
    warmup_start_factor: float | None = 2e-4
    decay_rate: float = 0.97                # step_exp: lr *= decay_rate every decay_epochs
    decay_epochs: float = 2.4
    min_lr: float = 1e-5                    # cosine floor (absolute, not batch-scaled)
    grad_clip: float | None = None          # max global grad norm; null = off
    label_smoothing: float = 0.1
    ema_decay: float | None = None          # weight EMA decay; null = off

    def __post_init__(self) -> None:
        require(self.name in OPTIMIZERS, "name", f"one of {', '.join(OPTIMIZERS)}", self.name)
        require(self.lr > 0, "lr", "a value > 0", self.lr)
        require(self.lr_reference_batch >= 1, "lr_reference_batch", "an integer >= 1",
                self.lr_reference_batch)
        require(0 <= self.momentum < 1, "momentum", "a value in [0, 1)", self.momentum)
        require(not self.nesterov or (self.name == "sgd" and self.momentum > 0), "nesterov",
                "false unless name is sgd with momentum > 0", self.nesterov)
        require(0 <= self.alpha < 1, "alpha", "a value in [0, 1)", self.alpha)
        require(self.eps >= 0, "eps", "a value >= 0", self.eps)
        require(self.weight_decay >= 0, "weight_decay", "a value >= 0", self.weight_decay)
        require(self.schedule in SCHEDULES, "schedule", f"one of {', '.join(SCHEDULES)}",
                self.schedule)
        require(self.warmup_epochs >= 0, "warmup_epochs", "a value >= 0", self.warmup_epochs)
        require(self.warmup_start_factor is None or 0 <= self.warmup_start_factor <= 1,
                "warmup_start_factor", "null or a value in [0, 1]", self.warmup_start_factor)
        require(0 < self.decay_rate <= 1, "decay_rate", "a value in (0, 1]", self.decay_rate)
        require(self.decay_epochs > 0, "decay_epochs", "a value > 0", self.decay_epochs)
        require(self.min_lr >= 0, "min_lr", "a value >= 0", self.min_lr)
        require(self.grad_clip is None or self.grad_clip > 0, "grad_clip",
                "null or a value > 0", self.grad_clip)
        require(0 <= self.label_smoothing < 1, "label_smoothing", "a value in [0, 1)",
                self.label_smoothing)
        require(self.ema_decay is None or 0 < self.ema_decay < 1, "ema_decay",
                "null or a value in (0, 1)", self.ema_decay)


_NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


def param_groups(model: nn.Module, cfg: OptimConfig) -> list[dict]:
    """Split trainable parameters into decayed / not-decayed groups.

    With `no_weight_decay_on_bn_and_bias`, every parameter of a normalisation layer and
    every parameter named `bias` gets weight_decay 0 (AtomNAS/MnasNet exempt BN; timm
    additionally exempts biases). Other parameters keep the decay whatever their shape,
    so e.g. Single-Path threshold scalars stay decayed as in the official search code.
    """
    seen: set[int] = set()
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for module in model.modules():
        for pname, p in module.named_parameters(recurse=False):
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            exempt = isinstance(module, _NORMS) or pname == "bias"
            (no_decay if cfg.no_weight_decay_on_bn_and_bias and exempt else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


@dataclass
class LrFactor:
    """lr multiplier at optimizer step `s` (0-based), for LambdaLR.

    A callable object rather than a closure so LambdaLR.state_dict keeps its fields.
    Warm-up: linear from `start` at s = 0 towards 1 at s = warmup_steps. Then
    cosine: from 1 to `floor` over the remaining steps (reached after the last step),
    step_exp: decay_rate ** floor(s / (steps_per_epoch * decay_epochs)) counted from
    step 0 as TF MnasNet and AtomNAS do (so the decay continues where warm-up ends),
    constant: 1.
    """

    schedule: str
    warmup_steps: int
    start: float
    total_steps: int
    steps_per_epoch: int
    decay_rate: float = 1.0
    decay_epochs: float = 1.0
    floor: float = 0.0

    def __call__(self, s: int) -> float:
        if s < self.warmup_steps:
            return self.start + (1.0 - self.start) * s / self.warmup_steps
        if self.schedule == "cosine":
            length = max(1, self.total_steps - self.warmup_steps)
            t = min(1.0, (s - self.warmup_steps) / length)
            return self.floor + (1.0 - self.floor) * 0.5 * (1.0 + math.cos(math.pi * t))
        if self.schedule == "step_exp":
            # the tiny offset keeps e.g. 72 / (10 * 2.4) from flooring to 2 by rounding
            k = math.floor(s / (self.steps_per_epoch * self.decay_epochs) + 1e-9)
            return self.decay_rate ** k
        return 1.0


def scaled_lr(cfg: OptimConfig, batch_size: int) -> float:
    """Linear scaling rule: cfg.lr is the lr for cfg.lr_reference_batch images."""
    return cfg.lr * batch_size / cfg.lr_reference_batch


def build_optimizer(model: nn.Module, cfg: OptimConfig, *, batch_size: int,
                    steps_per_epoch: int, max_epochs: int,
                    lr_scaled: Sequence[nn.Parameter] = (), lr_scale: float = 1.0
                    ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """The optimizer at the batch-scaled lr and a LambdaLR to be stepped once per step;
    the parameters in `lr_scaled` (AutoNL's thresholds) get `lr_scale` times that lr, in
    groups of their own that follow the same schedule."""
    for key, value in (("batch_size", batch_size), ("steps_per_epoch", steps_per_epoch),
                       ("max_epochs", max_epochs)):
        if not (isinstance(value, int) and value >= 1):
            raise ValueError(f"build_optimizer: {key} must be an integer >= 1, got {value!r}")
    lr = scaled_lr(cfg, batch_size)
    groups = param_groups(model, cfg)
    if lr_scaled and lr_scale != 1.0:
        ids = {id(p) for p in lr_scaled}
        split = []
        for g in groups:
            for params, extra in (([p for p in g["params"] if id(p) not in ids], {}),
                                  ([p for p in g["params"] if id(p) in ids],
                                   {"lr": lr * lr_scale})):
                if params:
                    split.append({**g, "params": params, **extra})
        groups = split
    if cfg.name == "sgd":
        opt = torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                              weight_decay=cfg.weight_decay)
    else:
        opt = RMSpropTF(groups, lr=lr, alpha=cfg.alpha, eps=cfg.eps, momentum=cfg.momentum,
                        weight_decay=cfg.weight_decay)

    # A run shorter than the warm-up (a smoke run of a long recipe) just stays in warm-up.
    total = steps_per_epoch * max_epochs
    warmup = round(cfg.warmup_epochs * steps_per_epoch)
    if cfg.schedule == "cosine" and cfg.min_lr > lr:
        raise ConfigError(f"optim.min_lr: expected at most the batch-scaled lr {lr:g}, "
                          f"got {cfg.min_lr!r}")
    start = cfg.warmup_start_factor
    if start is None:
        start = min(1.0, cfg.lr_reference_batch / batch_size)
    factor = LrFactor(schedule=cfg.schedule, warmup_steps=warmup, start=start,
                      total_steps=total, steps_per_epoch=steps_per_epoch,
                      decay_rate=cfg.decay_rate, decay_epochs=cfg.decay_epochs,
                      floor=cfg.min_lr / lr)
    return opt, LambdaLR(opt, lr_lambda=factor)


def lightning_optimizers(trainer: Any, model: nn.Module, cfg: OptimConfig, *, batch_size: int,
                         lr_scaled: Sequence[nn.Parameter] = (), lr_scale: float = 1.0
                         ) -> dict:
    """`configure_optimizers`'s answer for a module training `model` under `trainer`: the
    optimizer at the lr of the global batch (`batch_size` per device times the devices) and
    its schedule stepped every optimizer step, over the trainer's epochs."""
    epochs = max(1, trainer.max_epochs or 1)
    steps_per_epoch = max(1, math.ceil(trainer.estimated_stepping_batches / epochs))
    opt, sched = build_optimizer(model, cfg, batch_size=batch_size * max(1, trainer.world_size),
                                 steps_per_epoch=steps_per_epoch, max_epochs=epochs,
                                 lr_scaled=lr_scaled, lr_scale=lr_scale)
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


__all__ = [
    "OPTIMIZERS",
    "SCHEDULES",
    "LrFactor",
    "OptimConfig",
    "RMSpropTF",
    "build_optimizer",
    "lightning_optimizers",
    "param_groups",
    "scaled_lr",
]
