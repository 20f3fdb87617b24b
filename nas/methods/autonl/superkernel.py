"""AutoNL's search network: one Single-Path superkernel per searchable layer (specs 2.3).

Each searchable layer is an MBConv with a 5x5 depthwise kernel over 6 x C_in hidden
channels. Trainable thresholds (scalars, initialised to 0) decide from the norms of weight
slices its kernel (3 or 5: the outer ring), its expansion (3 or 6: the second half of the
channels), whether the layer is skipped (the first half; stride-1 layers that are not first
in their stage), its SE ratio and whether a LightNL block follows its projection; the
LightNL block's channel ratio and spatial stride follow the compactness rule (the smallest
option whose affinity matrix is within a learned threshold of the full one).

A decision is a hard step in the forward pass with the gradient of a sigmoid in the backward
pass (straight-through). Every setting computes exactly what the exported network computes:
masked channels are zeroed after their activation, and a skipped layer, an absent SE or an
absent LightNL is an identity. So the cost term, a multilinear function of the decisions
tabulated from the analytic cost model, equals the exported spec's cost at the final
decisions.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass
from typing import Callable, Iterable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from nas.arch.builder import build_block, build_head, build_stem
from nas.arch.shapes import conv_out, iter_blocks
from nas.arch.spec import (BatchNormSpec, ChainSpec, ConvSpec, HeadSpec, InvertedResidualSpec,
                           LightNLSpec, SESpec)
from nas.arch.validate import validate
from nas.arch.widths import make_divisible
from nas.config import require
from nas.ops.layers import ConvBNAct, Norm, init_weights, make_norm
from nas.ops.lightnl import nonlocal_product
from nas.ops.network import Network
from nas.supernet.base import Exported, resolve_choice
from nas.supernet.bn import recalibrate_bn
from nas.supernet.space import Decision, SearchSpace

KERNELS = (3, 5)
EXPANSIONS = (3.0, 6.0)
SUPER_EXPANSION = 6


def indicator(margin: torch.Tensor) -> torch.Tensor:
    """1(margin >= 0) in the forward pass, the gradient of sigmoid(margin) in the backward
    pass (Single-Path NAS's relaxation)."""
    soft = torch.sigmoid(margin)
    return soft + ((margin >= 0).to(soft.dtype) - soft).detach()


def multilinear(table: torch.Tensor, bits: Sequence[torch.Tensor]) -> torch.Tensor:
    """table[b1, ..., bn] extended multilinearly to real b: exact at 0/1 decisions and
    differentiable in each of them (one bit per axis, in order)."""
    t = table
    for b in bits:
        t = t[0] + b * (t[1] - t[0])
    return t


# ----------------------------------------------------------------------------- the space


@dataclass(frozen=True)
class Slot:
    """One searchable layer: its fixed shape and the options searched in it."""

    cin: int
    out: int
    stride: int
    hw: int                          # input resolution
    skippable: bool
    se_reduce: tuple[int, ...]       # SE reduce widths, ascending (empty: no SE searched)
    nl_ratios: tuple[float, ...]     # LightNL channel ratios, ascending (empty: none searched)
    nl_strides: tuple[int, ...]      # LightNL spatial strides, ascending

    @property
    def bits(self) -> tuple[str, ...]:
        """The binary decisions of this layer, in the order of its cost table's axes."""
        names = ["keep"] if self.skippable else []
        names += ["k5", "e6"]
        names += ["se", "se_big"][:len(self.se_reduce)]
        if self.nl_ratios:
            names.append("nl")
            if len(self.nl_ratios) > 1:
                names.append("nl_small")
            if len(self.nl_strides) > 1:
                names.append("nl_stride2")
        return tuple(names)


@dataclass(frozen=True)
class LayerChoice:
    """What the decisions of one layer select (None: absent)."""

    skip: bool
    kernel: int
    expansion: float
    se_reduce: Optional[int]
    lightnl: Optional[tuple[float, int]]


def choice_from_bits(slot: Slot, bits: dict[str, float]) -> LayerChoice:
    se = None
    if slot.se_reduce and bits["se"]:
        se = slot.se_reduce[-1] if bits.get("se_big") else slot.se_reduce[0]
    nl = None
    if slot.nl_ratios and bits["nl"]:
        nl = (slot.nl_ratios[0] if bits.get("nl_small") else slot.nl_ratios[-1],
              2 if bits.get("nl_stride2") else 1)
    return LayerChoice(skip=slot.skippable and not bits["keep"],
                       kernel=KERNELS[int(bool(bits["k5"]))],
                       expansion=EXPANSIONS[int(bool(bits["e6"]))], se_reduce=se, lightnl=nl)


class SuperkernelSpace(SearchSpace):
    """The decisions of every searchable layer (kernel, expansion, skip, SE, LightNL) over a
    template: its stem, fixed blocks before the searchable layers, head and globals."""

    def __init__(self, template: ChainSpec, slots: Sequence[Slot], act: str):
        self.template, self.slots, self.act = template, list(slots), act
        self.fixed = list(template.blocks)
        decisions = []
        for i, s in enumerate(self.slots):
            decisions += [Decision(f"layer{i}.kernel", KERNELS),
                          Decision(f"layer{i}.expansion", EXPANSIONS)]
            if s.skippable:
                decisions.append(Decision(f"layer{i}.skip", (False, True)))
            if s.se_reduce:
                decisions.append(Decision(f"layer{i}.se", (None, *s.se_reduce)))
            if s.nl_ratios:
                decisions.append(Decision(f"layer{i}.lightnl",
                                          (None, *itertools.product(s.nl_ratios, s.nl_strides))))
        super().__init__(decisions)

    def choices(self, vector: Sequence[int]) -> list[LayerChoice]:
        d = self.decode(vector)
        return [LayerChoice(skip=d.get(f"layer{i}.skip", False), kernel=d[f"layer{i}.kernel"],
                            expansion=d[f"layer{i}.expansion"], se_reduce=d.get(f"layer{i}.se"),
                            lightnl=d.get(f"layer{i}.lightnl"))
                for i in range(len(self.slots))]

    def vector(self, choices: Sequence[LayerChoice]) -> list[int]:
        named = {}
        for i, (s, c) in enumerate(zip(self.slots, choices)):
            named[f"layer{i}.kernel"], named[f"layer{i}.expansion"] = c.kernel, c.expansion
            if s.skippable:
                named[f"layer{i}.skip"] = c.skip
            if s.se_reduce:
                named[f"layer{i}.se"] = c.se_reduce
            if s.nl_ratios:
                named[f"layer{i}.lightnl"] = c.lightnl
        return self.encode(named)

    def block(self, slot: Slot, c: LayerChoice) -> Optional[InvertedResidualSpec]:
        """The block a layer's choice stands for in the exported network (None: skipped)."""
        if c.skip:
            return None
        act = self.act
        return InvertedResidualSpec(
            out=slot.out, kernel=c.kernel, stride=slot.stride, expand=True,
            expansion=c.expansion, act_expand=act, act_dw=act, act_post="none",
            se=SESpec(reduce=c.se_reduce, act=act, gate="sigmoid") if c.se_reduce else None,
            residual="identity" if slot.stride == 1 and slot.cin == slot.out else "none",
            lightnl=LightNLSpec(ratio=c.lightnl[0], stride=c.lightnl[1]) if c.lightnl else None)

    def to_spec(self, vector: Sequence[int], name: str | None = None) -> ChainSpec:
        blocks = [self.block(s, c) for s, c in zip(self.slots, self.choices(vector))]
        spec = dataclasses.replace(self.template, name=name or self.template.name,
                                   blocks=self.fixed + [b for b in blocks if b is not None])
        validate(spec)
        return spec

    def largest(self) -> list[int]:
        """Every layer at kernel 5, expansion 6, the largest SE and LightNL at its largest
        ratio and stride 1: the most expensive network of the space."""
        return self.vector([LayerChoice(False, 5, 6.0, s.se_reduce[-1] if s.se_reduce else None,
                                        (s.nl_ratios[-1], 1) if s.nl_ratios else None)
                            for s in self.slots])


# Searchable stages after the fixed first block (t1, k3, 32 -> 16): (out, first stride,
# layers). Single-Path NAS's stages of four, plus the 320-wide layer it fixes at k3/t6:
# AutoNL's published networks have k5 there, so AutoNL searched it.
STAGES = ((24, 2, 4), (40, 2, 4), (80, 2, 4), (96, 1, 4), (192, 2, 4), (320, 1, 1))
SE_RATIOS = (0.25, 0.5)            # of the block's input width (AutoNL-S/L)
NL_RATIOS = (0.125, 0.25)
NL_STRIDES = (1, 2)


def autonl_space(*, width: float = 1.0, stem_stride: int = 2, num_classes: int = 1000,
                 input_size: int = 224, in_channels: int = 3, dropout: float = 0.2,
                 init: str = "tf_mnas", se: bool = True, lightnl: bool = True) -> SuperkernelSpace:
    """AutoNL's search space at `width` (widths rounded to multiples of 8; the 1280-wide head
    is not scaled, as in the official code)."""
    def w(c: int) -> int:
        return make_divisible(c * width)

    act = "swish"
    stem = w(32)
    first = InvertedResidualSpec(out=w(16), kernel=3, stride=1, expand=False, expansion=1.0,
                                 act_expand=act, act_dw=act, act_post="none", residual="none")
    template = ChainSpec(
        name="autonl_supernet", num_classes=num_classes, input_size=input_size,
        in_channels=in_channels, bn=BatchNormSpec(eps=1e-3, momentum=0.01), init=init,
        stem=ConvSpec(out=stem, kernel=3, stride=stem_stride, act=act), blocks=[first],
        head=HeadSpec(pre_pool=[ConvSpec(out=1280, act=act)], dropout=dropout,
                      classifier="linear"))
    hw = conv_out(conv_out(input_size, stem_stride), 1)
    cin, slots = first.out, []
    for out, stride, layers in STAGES:
        for j in range(layers):
            s = stride if j == 0 else 1
            nl_out = w(out)
            ratios = tuple(sorted({r for r in NL_RATIOS if int(r * nl_out) >= 1},
                                  key=lambda r: int(r * nl_out)))
            ratios = tuple(r for k, r in enumerate(ratios)   # distinct kept widths only
                           if k == 0 or int(r * nl_out) != int(ratios[k - 1] * nl_out))
            hw_out = conv_out(hw, s)
            slots.append(Slot(
                cin=cin, out=nl_out, stride=s, hw=hw, skippable=j > 0,
                se_reduce=tuple(sorted({max(1, int(cin * r)) for r in SE_RATIOS})) if se else (),
                nl_ratios=ratios if lightnl else (),
                nl_strides=NL_STRIDES if hw_out > 1 else (1,)))
            cin, hw = nl_out, hw_out
    return SuperkernelSpace(template, slots, act)


# ----------------------------------------------------------------------------- modules


def _identity(v: torch.Tensor) -> torch.Tensor:
    return v


def tail_mask(n: int, head: int, value: torch.Tensor) -> torch.Tensor:
    """A length-n channel mask: 1 for the first `head` channels, `value` (an indicator) for
    the rest. Multiplying by it keeps a tensor's memory layout, where concatenating slices
    along the channels would turn channels-last tensors into NCHW."""
    return torch.cat([value.new_ones(head), value.expand(n - head)])


DISTANCES = ("euclidean", "relative")
TRAINING_DISTANCES = ("ema", "batch")


@dataclass
class Compactness:
    """How LightNL's compactness rule (AutoNL Eq. 12-13) measures and tracks its distances.

    distance: `euclidean` is Eq. 12's ||A_r - A_gt|| (Frobenius, per image, averaged over the
    batch); `relative` divides it by ||A_gt|| (pooled over the batch), which keeps the
    distance in [0, 1] whatever the features' scale, so a threshold from 0 meets it early.
    training: which distance decides during training, the EMA (`ema`, the paper: "in
    computing Eq. 12 ... for better training convergence") or this batch's (`batch`); the
    EMA decides outside training and for the final choice (Eq. 13) either way.
    momentum: the EMA's (BN-style; the paper gives none)."""

    distance: str = "relative"
    training: str = "batch"
    momentum: float = 0.1

    def __post_init__(self) -> None:
        require(self.distance in DISTANCES, "compactness.distance", " or ".join(DISTANCES),
                self.distance)
        require(self.training in TRAINING_DISTANCES, "compactness.training",
                " or ".join(TRAINING_DISTANCES), self.training)
        require(0 < self.momentum <= 1, "compactness.momentum", "a number in (0, 1]",
                self.momentum)


class LightNLChoice(nn.Module):
    """A LightNL block whose insertion, channel ratio and spatial stride are searched.

    Insertion: 1(||W_dw|| > t_insert) on the block's depthwise kernel; when 0 the block is
    the identity. Compactness (AutoNL Eq. 12-13): the smaller ratio (stride 2) is chosen when
    the distance of its affinity matrix to the full one is below t_small (t_stride), measured
    and tracked as `compactness` says. The distances are cheap: for features theta (N x c),
    ||theta theta^T||_F = ||theta^T theta||_F, so the nested channel options compare c x c
    Gram matrices, the larger one reusing the smaller's entries. The stride-2 affinity is
    compared as the full affinity it approximates, each sub-sampled key standing for its
    2 x 2 neighbourhood.
    """

    def __init__(self, ch: int, ratios: Sequence[float], strides: Sequence[int], *,
                 norm: Norm, compactness: Compactness):
        super().__init__()
        self.keeps = [int(r * ch) for r in ratios]
        self.strides = tuple(strides)
        self.compactness = compactness
        self.dw = nn.Conv2d(ch, ch, 3, 1, 1, groups=ch, bias=False)
        self.bn = norm(ch)
        self.t_insert = nn.Parameter(torch.zeros(()))
        self.t_small = nn.Parameter(torch.zeros(())) if len(self.keeps) > 1 else None
        self.t_stride = nn.Parameter(torch.zeros(())) if len(self.strides) > 1 else None
        # NaN until the first training batch measures it.
        if self.t_small is not None:
            self.register_buffer("dist_small", torch.full((), math.nan))
        if self.t_stride is not None:
            self.register_buffer("dist_stride", torch.full((), math.nan))

    def zero_init(self) -> None:
        nn.init.zeros_(self.bn.weight)
        nn.init.zeros_(self.bn.bias)

    def _distance(self, diff: torch.Tensor, full: torch.Tensor) -> torch.Tensor:
        """From the terms (B, ...) whose sums are the squared norms of A_r - A_gt and of A_gt:
        Eq. 12's distance averaged over the images, or the batch's pooled distance relative
        to ||A_gt||."""
        if self.compactness.distance == "euclidean":
            return diff.flatten(1).sum(1).clamp_min(0).sqrt().mean()
        return diff.sum().clamp_min(0).sqrt() / full.sum().sqrt().clamp_min(1e-12)

    @torch.no_grad()
    def distance_small(self, x: torch.Tensor) -> torch.Tensor:
        """The distance between the affinities A = theta theta^T of the two channel ratios
        (stride 1): A_full - A_small is the extra channels' own affinity."""
        theta = x[:, :self.keeps[-1]].flatten(2).float()          # B, c, N
        gram = theta @ theta.transpose(1, 2)                     # B, c, c
        c = self.keeps[0]
        return self._distance(gram[:, c:, c:].square(), gram.square())

    @torch.no_grad()
    def distance_stride(self, x: torch.Tensor, channels: int) -> torch.Tensor:
        """The distance ||theta (theta - up)^T|| on the first `channels` channels, `up` the
        stride-2 keys repeated over their 2 x 2 neighbourhoods."""
        t = x[:, :channels].float()
        h, w = t.shape[2:]
        up = t[:, :, ::2, ::2].repeat_interleave(2, 2).repeat_interleave(2, 3)[:, :, :h, :w]
        t, diff = t.flatten(2), (t - up).flatten(2)
        g_t, g_d = t @ t.transpose(1, 2), diff @ diff.transpose(1, 2)
        # ||X Y^T||^2 = tr(X^T X Y^T Y): two c x c Gram matrices instead of N x N affinities.
        return self._distance(g_t * g_d, g_t.square())

    def _track(self, name: str, value: torch.Tensor) -> torch.Tensor:
        """Fold this batch's distance into its EMA; return the one that decides in training."""
        ema = getattr(self, name)
        with torch.no_grad():
            ema.copy_(value if torch.isnan(ema) else (1 - self.compactness.momentum) * ema
                      + self.compactness.momentum * value)
        return ema.clone() if self.compactness.training == "ema" else value

    def decisions(self, x: Optional[torch.Tensor] = None,
                  drop: Callable[[torch.Tensor], torch.Tensor] = lambda v: v
                  ) -> dict[str, torch.Tensor]:
        """nl, nl_small, nl_stride2 (those searched), each passed through `drop`; `x` (the
        block input) is needed in training, where each batch's distances are measured."""
        d = {"nl": drop(indicator(self.dw.weight.norm() - self.t_insert))}
        batch = self.training and x is not None
        if self.t_small is not None:
            dist = self._track("dist_small", self.distance_small(x)) if batch else self.dist_small
            # No distance yet (a network never trained): the full ratio.
            d["nl_small"] = drop(torch.nan_to_num(indicator(self.t_small - dist), nan=0.0))
        if self.t_stride is not None:
            if batch:   # on the channels the ratio decision keeps
                small = "nl_small" in d and float(d["nl_small"].detach()) > 0
                dist = self._track("dist_stride",
                                   self.distance_stride(x, self.keeps[0 if small else -1]))
            else:
                dist = self.dist_stride
            d["nl_stride2"] = drop(torch.nan_to_num(indicator(self.t_stride - dist), nan=0.0))
        return d

    def forward(self, x: torch.Tensor, d: dict[str, torch.Tensor]) -> torch.Tensor:
        b, ch, h, w = x.shape
        big = self.keeps[-1]
        theta = x[:, :big]
        if "nl_small" in d:   # the extra channels of the larger ratio, kept when not small
            small = self.keeps[0]
            theta = theta * tail_mask(big, small, 1 - d["nl_small"]).view(1, -1, 1, 1)
        theta = theta.flatten(2).transpose(1, 2)                      # B, N, c

        def product(stride: int) -> torch.Tensor:
            xs = x[:, :, ::stride, ::stride] if stride > 1 else x
            return nonlocal_product(theta, xs[:, :big].flatten(2), xs.flatten(2).transpose(1, 2))

        y = product(1)
        if "nl_stride2" in d:
            y = y + d["nl_stride2"] * (product(2) - y)
        y = (y / (h * w)).transpose(1, 2).reshape(b, ch, h, w)
        return x + d["nl"] * self.bn(self.dw(y))


class SuperkernelLayer(nn.Module):
    """One searchable MBConv layer (module docstring); `decisions()` gives its indicators,
    and `forward` remembers the ones it used (`self.used`) for the cost term."""

    def __init__(self, slot: Slot, *, act: str, norm: Norm, compactness: Compactness):
        super().__init__()
        self.slot = slot
        cin, hidden = slot.cin, SUPER_EXPANSION * slot.cin
        self.hidden, self.half = hidden, round(hidden / 2)
        self.residual = slot.stride == 1 and slot.cin == slot.out
        self.expand = ConvBNAct(cin, hidden, act=act, norm=norm)
        self.dw = ConvBNAct(hidden, hidden, 5, slot.stride, act=act, norm=norm, groups=hidden)
        ring = torch.ones(1, 1, 5, 5)
        ring[..., 1:4, 1:4] = 0
        self.register_buffer("ring", ring, persistent=False)
        self.t_kernel = nn.Parameter(torch.zeros(()))
        self.t_expand = nn.Parameter(torch.zeros(()))
        self.t_keep = nn.Parameter(torch.zeros(())) if slot.skippable else None
        if slot.se_reduce:
            self.se_reduce = ConvBNAct(hidden, slot.se_reduce[-1], act=act, norm=None, bias=True)
            self.se_expand = nn.Conv2d(slot.se_reduce[-1], hidden, 1, bias=True)
            self.t_se = nn.Parameter(torch.zeros(()))
            self.t_se_big = nn.Parameter(torch.zeros(())) if len(slot.se_reduce) > 1 else None
        self.project = ConvBNAct(hidden, slot.out, act="none", norm=norm)
        self.lightnl = (LightNLChoice(slot.out, slot.nl_ratios, slot.nl_strides, norm=norm,
                                      compactness=compactness) if slot.nl_ratios else None)
        self.used: dict[str, torch.Tensor] = {}

    def _kernel(self, drop: Callable) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The masked depthwise kernel and the kernel, expansion and skip indicators (the
        expansion and skip norms are of the kernel-masked weights, as in Single-Path)."""
        w = self.dw[0].weight
        ring = w * self.ring
        d = {"k5": drop(indicator(ring.norm() - self.t_kernel))}
        w = w - ring + d["k5"] * ring
        d["e6"] = drop(indicator(w[self.half:].norm() - self.t_expand))
        if self.t_keep is not None:
            d["keep"] = drop(indicator(w[:self.half].norm() - self.t_keep))
        return w * tail_mask(self.hidden, self.half, d["e6"]).view(-1, 1, 1, 1), d

    def _se_decisions(self, drop: Callable) -> dict[str, torch.Tensor]:
        """SE on/off from the norm of the smaller SE's reduce weights, and the larger SE
        from the norm of the rest (nested, as the expansion decision)."""
        if not self.slot.se_reduce:
            return {}
        w = self.se_reduce[0].weight
        small = self.slot.se_reduce[0]
        d = {"se": drop(indicator(w[:small].norm() - self.t_se))}
        if self.t_se_big is not None:
            d["se_big"] = drop(indicator(w[small:].norm() - self.t_se_big))
        return d

    def decisions(self) -> dict[str, torch.Tensor]:
        """The layer's indicators outside training (LightNL ratios from the EMA distances)."""
        d = {**self._kernel(_identity)[1], **self._se_decisions(_identity)}
        if self.lightnl is not None:
            d.update(self.lightnl.decisions())
        return d

    def forward(self, x: torch.Tensor, keep_prob: float = 1.0,
                generator: Optional[torch.Generator] = None) -> torch.Tensor:
        drop = _identity
        if keep_prob < 1.0 and self.training:
            # Single-Path's indicator dropout during warm-up. TF's dropout also rescales kept
            # indicators by 1/keep, which BN absorbs after a kernel mask but which would scale
            # the identity paths here, so kept indicators stay 1.
            def drop(v: torch.Tensor) -> torch.Tensor:
                return v * (torch.rand((), generator=generator) < keep_prob).to(v)
        weight, d = self._kernel(drop)
        d.update(self._se_decisions(drop))
        h = self.expand(x)
        h = F.conv2d(h, weight, None, self.slot.stride, 2, 1, self.hidden)
        h = self.dw[2](self.dw[1](h))
        h = h * tail_mask(self.hidden, self.half, d["e6"]).view(1, -1, 1, 1)
        if "se" in d:
            s = self.se_reduce(h.mean((2, 3), keepdim=True))
            if "se_big" in d:
                small = self.slot.se_reduce[0]
                s = s * tail_mask(s.shape[1], small, d["se_big"]).view(1, -1, 1, 1)
            h = h * (1 - d["se"] + d["se"] * torch.sigmoid(self.se_expand(s)))
        z = self.project(h)
        if self.lightnl is not None:
            d.update(self.lightnl.decisions(z, drop))
            z = self.lightnl(z, d)
        self.used = d
        if not self.residual:
            return z
        return x + (d["keep"] * z if "keep" in d else z)


class SuperkernelNet(Network):
    """The search network over a SuperkernelSpace: stem, fixed blocks, superkernel layers,
    head; an implementation of nas.supernet.base.Supernet whose own pick is its thresholds'
    decisions.

    `cost()` is the differentiable cost of the decisions the last forward pass used: the
    fixed parts plus, per layer, its table of costs over every setting of its binary
    decisions (the cost of the block each setting exports, 0 when skipped) extended
    multilinearly. `costs` defaults to MACs with LightNL's matrix products.
    """

    def __init__(self, space: SuperkernelSpace, *,
                 compactness: Optional[Compactness] = None, costs: Optional[CostModel] = None):
        super().__init__()
        self.space = space
        t = space.template
        norm = make_norm(t.bn.eps, t.bn.momentum)
        self.stem = build_stem(t)
        self.fixed = nn.Sequential(*[build_block(t, b, cin, i) for i, b, cin, _ in
                                     iter_blocks(t)])
        compactness = compactness or Compactness()
        self.layers = nn.ModuleList(SuperkernelLayer(s, act=space.act, norm=norm,
                                                     compactness=compactness)
                                    for s in space.slots)
        self.head = build_head(t, space.slots[-1].out)
        init_weights(self, t.init)
        self.keep_prob = 1.0
        self.generator: Optional[torch.Generator] = None
        costs = costs or macs_model(space)
        self.fixed_cost = costs.fixed
        for i, s in enumerate(space.slots):
            self.register_buffer(f"table{i}", cost_table(space, s, costs.block),
                                 persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.fixed(self.stem(x))
        for layer in self.layers:
            x = layer(x, self.keep_prob, self.generator)
        return self.head(x)

    def cost(self, decisions: Optional[Sequence[dict[str, torch.Tensor]]] = None
             ) -> torch.Tensor:
        """The cost of `decisions` (default: those of the last forward pass)."""
        if decisions is None:
            decisions = [layer.used for layer in self.layers]
        total = torch.tensor(float(self.fixed_cost), device=self.table0.device)
        for i, (s, d) in enumerate(zip(self.space.slots, decisions)):
            total = total + multilinear(getattr(self, f"table{i}"), [d[b] for b in s.bits])
        return total

    def thresholds(self) -> list[nn.Parameter]:
        """Every decision's threshold (the architecture parameters)."""
        return [p for name, p in self.named_parameters() if name.rsplit(".", 1)[-1].startswith("t_")]

    @torch.no_grad()
    def decisions(self) -> list[dict[str, torch.Tensor]]:
        """Every layer's hard decisions outside training (LightNL from the EMA distances)."""
        return [layer.decisions() for layer in self.layers]

    def choice(self) -> list[int]:
        """The decision vector of the thresholds' current decisions."""
        return self.space.vector([
            choice_from_bits(s, {k: float(v) for k, v in d.items()})
            for s, d in zip(self.space.slots, self.decisions())])

    def export(self, choice: Optional[Sequence[int]] = None,
               name: Optional[str] = None) -> Exported:
        """The chosen architecture (None: the thresholds' decisions); AutoNL trains it from
        scratch, so no weights come with it."""
        vector = resolve_choice(self, choice, any_choice=True)
        return Exported(self.space.to_spec(vector, name), None)

    def recalibrate(self, batches: Iterable, steps: int, choice: Sequence[int] | None = None,
                    device: torch.device | str | None = None) -> int:
        """Re-estimate the BN statistics of the superkernel network, which runs only its
        thresholds' decisions."""
        resolve_choice(self, choice, any_choice=False)
        return recalibrate_bn(self, batches, steps, device)


@dataclass(frozen=True)
class CostModel:
    """What the search minimises: the cost of the parts no decision changes (stem, fixed
    blocks, head) and of one block at its input width and resolution."""

    fixed: float
    block: Callable[[object, int, int], float]


def _macs(cost) -> int:
    return cost.macs + cost.extra_macs


def macs_model(space: SuperkernelSpace) -> CostModel:
    """MACs plus LightNL's matrix products (nas.cost.analytic): AutoNL's FLOPs."""
    from nas.cost.analytic import block_cost, head_cost, stem_cost

    t = space.template
    fixed = _macs(stem_cost(t)) + sum(_macs(block_cost(b, cin, hw))
                                      for _, b, cin, hw in iter_blocks(t))
    last = space.slots[-1]
    fixed += _macs(head_cost(t, last.out, conv_out(last.hw, last.stride)))
    return CostModel(fixed, lambda block, cin, hw: _macs(block_cost(block, cin, hw)))


def cost_table(space: SuperkernelSpace, slot: Slot,
               block_cost: Callable[[object, int, int], float]) -> torch.Tensor:
    """The layer's cost at every setting of its binary decisions (axes in slot.bits order)."""
    names = slot.bits
    table = torch.zeros((2,) * len(names), dtype=torch.float64)
    for bits in itertools.product((0, 1), repeat=len(names)):
        block = space.block(slot, choice_from_bits(slot, dict(zip(names, bits))))
        table[bits] = 0.0 if block is None else float(block_cost(block, slot.cin, slot.hw))
    return table.float()

