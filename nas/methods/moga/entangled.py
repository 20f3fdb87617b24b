"""Weight-entangled choices: a layer's candidate blocks as slices of one over-complete block.

With one block per choice (FairNAS, MoGA: `independent`), a small supernet trained briefly
never makes its 12 choices per layer agree on a representation, and every path stays near
chance (issue 13's measurements). Sharing weights as Single-Path NAS and Once-for-All do
fixes that: each searchable layer holds one inverted-residual block with the largest
kernel, the largest expansion and SE (`SharedBlock.full`), and a candidate uses

* the first `hidden` channels of the 1x1 expansion (and of its BN),
* the centre k x k taps of the depthwise kernel on those channels (and their BN),
* the first `reduce` channels of the SE's squeeze and the first `hidden` of its excite,
* the first `hidden` input channels of the 1x1 projection (its BN is whole).

`SlicedChoice` runs one candidate with those slices (gradients land in them only) and
reports its state_dict under the stand-alone block's names and shapes, so a path's
state_dict loads into `build(space.to_spec(vector))` exactly as with independent weights.
BN statistics of shared channels are shared too: score a path after recalibration.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from nas.arch.builder import build_block
from nas.arch.shapes import ir_hidden
from nas.arch.spec import ChainSpec, InvertedResidualSpec
from nas.ops.layers import SqueezeExcite, trimmed_conv2d

WEIGHTS = ("independent", "entangled")


def largest(candidates: Sequence[InvertedResidualSpec], cin: int) -> InvertedResidualSpec:
    """The block every candidate is a slice of: largest kernel, largest expansion, and the SE
    of the widest candidate that has one. Candidates may differ in nothing else."""
    first = candidates[0]
    if not all(isinstance(c, InvertedResidualSpec) for c in candidates):
        raise ValueError("entangled weights: every candidate must be an inverted residual")
    same = lambda c: dataclasses.replace(c, kernel=1, expansion=1.0, se=None)  # noqa: E731
    if any(same(c) != same(first) for c in candidates):
        raise ValueError("entangled weights: candidates of a layer may differ only in kernel, "
                         "expansion and SE")
    widest = max(candidates, key=lambda c: (ir_hidden(c, cin), c.se is not None))
    ses = [c for c in candidates if c.se is not None]
    se = max(ses, key=lambda c: ir_hidden(c, cin)).se if ses else None
    if any(c.kernel % 2 == 0 for c in candidates):
        raise ValueError("entangled weights: kernels must be odd (a centre slice)")
    return dataclasses.replace(widest, kernel=max(c.kernel for c in candidates), se=se)


def slice_to(full: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """The part of `full` a smaller candidate uses: leading entries along channel dimensions,
    the centre along a conv kernel's spatial dimensions (2 and 3)."""
    index = []
    for d, (n, m) in enumerate(zip(full.shape, shape)):
        if m > n:
            raise ValueError(f"cannot slice {tuple(full.shape)} to {tuple(shape)}")
        start = (n - m) // 2 if d >= 2 else 0
        index.append(slice(start, start + m))
    return full[tuple(index)]


def _parts(seq: nn.Sequential) -> tuple[nn.Conv2d, nn.Module | None, nn.Module]:
    """(conv, BN or None, activation) of a ConvBNAct."""
    bn = seq[1] if isinstance(seq[1], nn.modules.batchnorm._BatchNorm) else None
    return seq[0], bn, seq[-1]


def _sliced_bn(bn: nn.Module | None, x: torch.Tensor) -> torch.Tensor:
    """nn.BatchNorm2d's forward on the first x.shape[1] channels of `bn` (statistics,
    momentum rule and mode as the module's own, running statistics updated in place)."""
    if bn is None:
        return x
    n = x.shape[1]
    factor = 0.0
    if bn.training and bn.track_running_stats:
        bn.num_batches_tracked.add_(1)
        factor = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
    use_batch = bn.training or bn.running_mean is None
    stats = bn.running_mean is not None and (not bn.training or bn.track_running_stats)
    return F.batch_norm(x, bn.running_mean[:n] if stats else None,
                        bn.running_var[:n] if stats else None,
                        None if bn.weight is None else bn.weight[:n],
                        None if bn.bias is None else bn.bias[:n], use_batch, factor, bn.eps)


class SharedBlock(nn.Module):
    """One searchable layer: the over-complete block and its candidates' specs."""

    def __init__(self, template: ChainSpec, candidates: Sequence[InvertedResidualSpec], cin: int,
                 index: int):
        super().__init__()
        self.candidates = list(candidates)
        self.cin = cin
        self.full = build_block(template, largest(self.candidates, cin), cin, index)
        # Stand-alone shapes of each candidate's state_dict, from a throwaway build.
        self.shapes = []
        for spec in self.candidates:
            alone = build_block(template, spec, cin, index)
            self.shapes.append({k: tuple(v.shape) for k, v in alone.state_dict().items()})

    def choice(self, k: int) -> "SlicedChoice":
        return SlicedChoice(self, k)


class SlicedChoice(nn.Module):
    """Candidate k of a SharedBlock, run on its slices. The shared block is a submodule (so
    train/eval, BN recalibration and devices reach it); state_dict is the candidate's own."""

    def __init__(self, shared: SharedBlock, k: int):
        super().__init__()
        self.shared, self.k = shared, k
        self.spec = shared.candidates[k]
        self.hidden = ir_hidden(self.spec, shared.cin)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f, spec, h = self.shared.full, self.spec, self.hidden
        y = x
        if spec.expand:
            conv, bn, act = _parts(f.expand)
            y = act(_sliced_bn(bn, F.conv2d(y, conv.weight[:h], None)))
        conv, bn, act = _parts(f.dw)
        k = spec.kernel
        weight = slice_to(conv.weight, (h, 1, k, k))
        y = act(_sliced_bn(bn, trimmed_conv2d(y, weight, None, conv.stride, (k // 2, k // 2),
                                              groups=h)))
        if spec.se is not None:
            y = self._se(f.se, y, spec.se.reduce)
        y = f.post(y)
        conv, bn, act = _parts(f.project)
        y = act(_sliced_bn(bn, F.conv2d(y, conv.weight[:, :h], None)))
        return f.add_shortcut(y, x)

    @staticmethod
    def _se(se: SqueezeExcite, y: torch.Tensor, r: int) -> torch.Tensor:
        h = y.shape[1]
        conv, bn, act = _parts(se.reduce)
        s = y.mean((2, 3), keepdim=True)
        s = act(_sliced_bn(bn, F.conv2d(s, conv.weight[:r, :h], conv.bias[:r])))
        s = F.conv2d(s, se.expand.weight[:h, :r], se.expand.bias[:h])
        return y * se.gate(s)

    def state_dict(self, *args, destination=None, prefix: str = "", keep_vars: bool = False):
        """The stand-alone candidate's entries: the full block's tensors sliced to its shapes."""
        if args:
            raise TypeError("SlicedChoice.state_dict takes keyword arguments only")
        out = {} if destination is None else destination
        full = self.shared.full.state_dict(keep_vars=keep_vars)
        for key, shape in self.shared.shapes[self.k].items():
            value = slice_to(full[key], shape) if full[key].dim() else full[key]
            out[prefix + key] = value if keep_vars else value.detach()
        return out
