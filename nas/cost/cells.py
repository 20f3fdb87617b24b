"""Params and MACs of a DARTS evaluation network (CellSpec) by integer arithmetic.

Walks the same channel/resolution plan as nas.ops.darts.CellNet without building it:
stem, per cell the two preprocessing layers and every edge op (nodes left out of the
concat still run, so they count), GAP + Linear. The auxiliary head is excluded: it is
not part of the eval-mode forward and the official count_parameters_in_MB skips it.
Pooling and identity edges cost nothing here (no params; pooling MACs are not counted).
"""

from __future__ import annotations

from nas.arch.shapes import (cell_plan, conv_out, ir_op_hidden, reduction_layers,
                              sandglass_hidden)
from nas.arch.spec import CellSpec
from nas.cost.analytic import Cost, _Tally

_SEP = {"sep_conv_3x3": 3, "sep_conv_5x5": 5}
_DIL = {"dil_conv_3x3": 3, "dil_conv_5x5": 5}


def _factorized_reduce(t: _Tally, cin: int, cout: int, hw_out: int) -> None:
    t.conv(cin, cout // 2, 1, hw_out, bn=False)
    t.conv(cin, cout // 2, 1, hw_out, bn=False)
    t.bn += 2 * cout


def _edge(t: _Tally, op: str, c: int, stride: int, hw: int) -> None:
    hw_out = conv_out(hw, stride)
    if op in _SEP:
        k = _SEP[op]
        for _ in range(2):  # second dw runs at stride 1 on the already reduced map
            t.conv(c, c, k, hw_out, groups=c, bn=False)
            t.conv(c, c, 1, hw_out)
    elif op in _DIL:
        t.conv(c, c, _DIL[op], hw_out, groups=c, bn=False)
        t.conv(c, c, 1, hw_out)
    elif op == "sandglass":
        h = sandglass_hidden(c)
        t.conv(c, c, 3, hw, groups=c)
        t.conv(c, h, 1, hw)
        t.conv(h, c, 1, hw)
        t.conv(c, c, 3, hw_out, groups=c)
    elif op == "inverted_residual":
        h = ir_op_hidden(c)
        t.conv(c, h, 1, hw)
        t.conv(h, h, 3, hw_out, groups=h)
        t.conv(h, c, 1, hw_out)
    elif op == "skip_connect" and stride == 2:
        _factorized_reduce(t, c, c, hw_out)


def cell_cost(spec: CellSpec, size: int | None = None) -> Cost:
    """Params (all / without BN) and batch-1 conv+linear MACs at `size` (default input_size)."""
    t = _Tally()
    hw = spec.input_size if size is None else size
    c_stem = spec.stem_multiplier * spec.init_channels
    t.conv(spec.in_channels, c_stem, 3, hw)
    c_last = c_stem
    for _, c_pp, c_p, c, reduction, reduction_prev, c_out in cell_plan(spec):
        # hw is the resolution of s1; s0 is twice that right after a reduction.
        if reduction_prev:
            _factorized_reduce(t, c_pp, c, hw)
        else:
            t.conv(c_pp, c, 1, hw)
        t.conv(c_p, c, 1, hw)
        for op, src in (spec.genotype.reduce if reduction else spec.genotype.normal):
            # In a reduction cell the inputs are reduced by their edges (stride 2), while
            # edges from the intermediate nodes already run at the reduced size.
            if reduction and src >= 2:
                _edge(t, op, c, 1, conv_out(hw, 2))
            else:
                _edge(t, op, c, 2 if reduction else 1, hw)
        if reduction:
            hw = conv_out(hw, 2)
        c_last = c_out
    t.conv(c_last, spec.num_classes, 1, 1, bias=True, bn=False)  # Linear after GAP
    return t.cost()


def auxiliary_params(spec: CellSpec) -> int:
    """Params of the auxiliary head (0 without one): 1x1 -> 128 + BN, 2x2 -> 768 + BN, Linear."""
    if not spec.auxiliary:
        return 0
    aux_at = reduction_layers(spec.layers)[1]
    c_aux = next(c_out for i, *_, c_out in cell_plan(spec) if i == aux_at)
    t = _Tally()
    t.conv(c_aux, 128, 1, 1)
    t.conv(128, 768, 2, 1)
    t.conv(768, spec.num_classes, 1, 1, bias=True, bn=False)
    return t.cost().params
