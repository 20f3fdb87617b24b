"""Params and MACs from a spec without building modules.

Fast enough for evolutionary search (plain integer arithmetic per block) and exactly
equal to what the built module measures: params = sum of numel (BN included),
params_nobn = conv/linear params only (what the AtomNAS/AutoNL profiler reports),
macs = conv and linear multiply-accumulates, extra_macs = LightNL matrix products,
activations = elements of every conv and linear output per image (a lower bound of what
training keeps for the backward pass; left out of comparisons, as a module cannot
measure it the same way).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nas.arch.shapes import conv_out, ir_hidden
from nas.arch.spec import (CellSpec, ChainSpec, ConvSpec, InvertedResidualSpec, MixedKernelSpec,
                           SandglassSpec, SeparableSpec, SESpec)
from nas.ops.lightnl import lightnl_matmul_macs


@dataclass(frozen=True)
class Cost:
    params: int
    params_nobn: int
    macs: int
    extra_macs: int = 0
    activations: int = field(default=0, compare=False)

    def __add__(self, other: "Cost") -> "Cost":
        return Cost(self.params + other.params, self.params_nobn + other.params_nobn,
                    self.macs + other.macs, self.extra_macs + other.extra_macs,
                    self.activations + other.activations)


class _Tally:
    """Accumulates (weights, bn, macs, extra, activations); params = weights + bn."""

    __slots__ = ("w", "bn", "macs", "extra", "acts")

    def __init__(self) -> None:
        self.w = self.bn = self.macs = self.extra = self.acts = 0

    def conv(self, cin: int, cout: int, k: int, hw_out: int, groups: int = 1,
             bias: bool = False, bn: bool = True) -> None:
        weights = cout * (cin // groups) * k * k
        self.w += weights + (cout if bias else 0)
        self.macs += weights * hw_out * hw_out
        self.acts += cout * hw_out * hw_out
        if bn:
            self.bn += 2 * cout

    def se(self, se: SESpec | None, ch: int) -> None:
        if se is not None:
            self.conv(ch, se.reduce, 1, 1, bias=True, bn=se.bn)
            self.conv(se.reduce, ch, 1, 1, bias=True, bn=False)

    def cost(self) -> Cost:
        return Cost(self.w + self.bn, self.w, self.macs, self.extra, self.acts)


def _ir(t: _Tally, b: InvertedResidualSpec, cin: int, hw: int) -> None:
    hidden = ir_hidden(b, cin)
    hw_out = conv_out(hw, b.stride)
    if b.expand:
        t.conv(cin, hidden, 1, hw)
    t.conv(hidden, hidden, b.kernel, hw_out, groups=hidden)
    t.se(b.se, hidden)
    t.conv(hidden, b.out, 1, hw_out)
    if b.lightnl is not None:
        t.conv(b.out, b.out, 3, hw_out, groups=b.out)
        t.extra += lightnl_matmul_macs(b.out, b.lightnl.ratio, b.lightnl.stride, hw_out, hw_out)


def _mixed(t: _Tally, b: MixedKernelSpec, cin: int, hw: int) -> None:
    total = sum(b.hidden)
    if total == 0:
        return
    hw_out = conv_out(hw, b.stride)
    if b.expand:
        t.conv(cin, total, 1, hw)
    for k, h in zip(b.kernels, b.hidden):
        if h:
            t.conv(h, h, k, hw_out, groups=h)
    t.se(b.se, total)
    t.conv(total, b.out, 1, hw_out)


def _sandglass(t: _Tally, b: SandglassSpec, cin: int, hw: int) -> None:
    if b.form == "full":
        t.conv(cin, cin, b.kernel, hw, groups=cin)
    t.conv(cin, b.reduced, 1, hw, groups=b.groups)
    t.conv(b.reduced, b.out, 1, hw, groups=b.groups)
    if b.form != "pw_pw":
        t.conv(b.out, b.out, b.kernel, conv_out(hw, b.stride), groups=b.out)
    t.se(b.se, b.out)


def _dwsep(t: _Tally, b: SeparableSpec, cin: int, hw: int) -> None:
    hw_out = conv_out(hw, b.stride)
    t.conv(cin, cin, b.kernel, hw_out, groups=cin)
    t.conv(cin, b.out, 1, hw_out)


_BLOCK_COSTS = {InvertedResidualSpec: _ir, MixedKernelSpec: _mixed, SandglassSpec: _sandglass,
                SeparableSpec: _dwsep}


def _layer(t: _Tally, c: ConvSpec, cin: int, hw_out: int) -> None:
    t.conv(cin, c.out, c.kernel, hw_out, bias=c.bias, bn=c.bn)


def block_cost(block: object, cin: int, hw: int) -> Cost:
    """Cost of one chain block at input width `cin` and input resolution `hw`."""
    t = _Tally()
    _BLOCK_COSTS[type(block)](t, block, cin, hw)
    return t.cost()


def stem_cost(spec: ChainSpec, size: int | None = None) -> Cost:
    t = _Tally()
    hw = conv_out(spec.input_size if size is None else size, spec.stem.stride)
    _layer(t, spec.stem, spec.in_channels, hw)
    return t.cost()


def head_cost(spec: ChainSpec, cin: int, hw: int) -> Cost:
    t = _Tally()
    for c in spec.head.pre_pool:
        _layer(t, c, cin, hw)
        cin = c.out
    for c in spec.head.post_pool:
        _layer(t, c, cin, 1)
        cin = c.out
    t.conv(cin, spec.num_classes, 1, 1, bias=True, bn=False)
    t.bn += 2 * spec.head.unused_bn
    return t.cost()


def chain_cost(spec: ChainSpec, size: int | None = None) -> Cost:
    t = _Tally()
    hw = conv_out(spec.input_size if size is None else size, spec.stem.stride)
    _layer(t, spec.stem, spec.in_channels, hw)
    cin = spec.stem.out
    for b in spec.blocks:
        _BLOCK_COSTS[type(b)](t, b, cin, hw)
        cin = b.out
        hw = conv_out(hw, b.stride)
    return t.cost() + head_cost(spec, cin, hw)


def count(spec: ChainSpec | CellSpec, size: int | None = None) -> Cost:
    """Params and MACs of the network a spec describes, at `size` (default: spec.input_size)."""
    if isinstance(spec, ChainSpec):
        return chain_cost(spec, size)
    from nas.cost.cells import cell_cost

    return cell_cost(spec, size)
