"""Shared layers: activations, conv-BN-act, squeeze-excitation, drop path, weight init."""

from __future__ import annotations

import math
from contextlib import contextmanager
from functools import partial
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

Norm = Callable[[int], nn.Module]


def make_norm(eps: float, momentum: float) -> Norm:
    return partial(nn.BatchNorm2d, eps=eps, momentum=momentum)


def make_act(name: str) -> nn.Module:
    """h-swish = x * ReLU6(x + 3) / 6 and h-sigmoid = ReLU6(x + 3) / 6, as in MobileNetV3."""
    if name == "none":
        return nn.Identity()
    return {
        "relu": nn.ReLU,
        "relu6": nn.ReLU6,
        "hswish": nn.Hardswish,
        "swish": nn.SiLU,
        "sigmoid": nn.Sigmoid,
        "hsigmoid": nn.Hardsigmoid,
    }[name]()


_trimming = True


@contextmanager
def full_kernels():
    """Run TrimmedConv2d with whole kernels: the MAC convention (and nas.cost.measured, which
    checks the analytic model against a forward pass) counts every tap, padding included."""
    global _trimming
    before, _trimming = _trimming, False
    try:
        yield
    finally:
        _trimming = before


def _unused_taps(size: int, kernel: int, stride: int, padding: int) -> int:
    """How many kernel taps at each end of one axis only ever multiply zero padding: a tap
    is used when some output position reads a real input row through it."""
    out = (size + 2 * padding - kernel) // stride + 1
    first_used = max(0, padding - (out - 1) * stride)
    unused_at_end = max(0, kernel - 1 - (padding + size - 1))
    return min(first_used, unused_at_end)


class TrimmedConv2d(nn.Conv2d):
    """nn.Conv2d that leaves out the outer kernel taps which, at the current input size, only
    multiply zero padding (a 7x7 kernel on a 2x2 map uses its central 3x3; on 1x1, its centre).

    Outputs and gradients are those of nn.Conv2d (the left-out taps get zero gradient either
    way), and so are the parameters and state_dict. Why: a 32x32 proxy network reaches 1x1 and
    2x2 maps, where CPU (oneDNN) depthwise kernels spent most of a training step on padding.
    Traced and ONNX-exported graphs keep the full kernel, so they hold for any input size.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (self.padding_mode != "zeros" or isinstance(self.padding, str)
                or self.dilation != (1, 1)):
            return super().forward(x)
        return trimmed_conv2d(x, self.weight, self.bias, self.stride, self.padding, self.groups)


def trimmed_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                   stride: tuple[int, int], padding: tuple[int, int], groups: int) -> torch.Tensor:
    """F.conv2d with zero padding, leaving out the kernel taps that only multiply padding
    at this input size (TrimmedConv2d's rule, for weights that are not a module's own)."""
    (kh, kw), (sh, sw), (ph, pw) = weight.shape[-2:], stride, padding
    if not _trimming or torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
        th = tw = 0
    else:
        th = _unused_taps(x.shape[-2], kh, sh, ph)
        tw = _unused_taps(x.shape[-1], kw, sw, pw)
    if th or tw:
        weight = weight[:, :, th:kh - th, tw:kw - tw]
    return F.conv2d(x, weight, bias, (sh, sw), (ph - th, pw - tw), 1, groups)


class ConvBNAct(nn.Sequential):
    """conv (padding k//2) [-> BN] -> act; `bn=None` leaves the BN out."""

    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1, *, act: str,
                 norm: Norm | None, groups: int = 1, bias: bool = False, dilation: int = 1):
        layers: list[nn.Module] = [TrimmedConv2d(cin, cout, kernel, stride,
                                                 dilation * (kernel // 2), dilation=dilation,
                                                 groups=groups, bias=bias)]
        if norm is not None:
            layers.append(norm(cout))
        layers.append(make_act(act))
        super().__init__(*layers)


def depthwise(ch: int, kernel: int, stride: int, *, act: str, norm: Norm) -> ConvBNAct:
    return ConvBNAct(ch, ch, kernel, stride, act=act, norm=norm, groups=ch)


class SqueezeExcite(nn.Module):
    """GAP -> 1x1 (bias) [-> BN] -> act -> 1x1 (bias) -> gate -> multiply."""

    def __init__(self, ch: int, reduce: int, *, act: str, gate: str, norm: Norm | None):
        super().__init__()
        self.reduce = ConvBNAct(ch, reduce, act=act, norm=norm, bias=True)
        self.expand = nn.Conv2d(reduce, ch, 1, bias=True)
        self.gate = make_act(gate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        return x * self.gate(self.expand(self.reduce(s)))


def drop_path(x: torch.Tensor, p: float) -> torch.Tensor:
    """Zero whole samples with probability p and rescale the rest by 1 / (1 - p)."""
    keep = 1.0 - p
    mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
    return x * mask / keep


class DropPath(nn.Module):
    """Stochastic depth: zero a sample's residual branch with probability p while training."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        return drop_path(x, self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def init_weights(model: nn.Module, scheme: str) -> None:
    """Weight init of the official code of each family.

    torchvision: conv N(0, sqrt(2 / fan_out)), BN 1/0, Linear N(0, 0.01), biases 0
    (MobileNetV2, MobileNeXt). tf_mnas: the same conv and BN, Linear U(+-1/sqrt(out))
    (MoGA, AutoNL, AtomNAS). torch_default: PyTorch's own init (ReXNet, DARTS).
    Modules with a `zero_init()` method (LightNL's last BN) re-apply it afterwards.
    """
    if scheme != "torch_default":
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                if scheme == "torchvision":
                    nn.init.normal_(m.weight, 0.0, 0.01)
                else:
                    bound = 1.0 / math.sqrt(m.out_features)
                    nn.init.uniform_(m.weight, -bound, bound)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
    for m in model.modules():
        if hasattr(m, "zero_init"):
            m.zero_init()
