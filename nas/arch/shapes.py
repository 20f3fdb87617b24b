"""Shapes along a spec: each chain block's input channels and input resolution, each DARTS
cell's widths, and the widths inside the cell ops.

One walker per family, shared by validation, the builders and the cost model, so they agree
on how channels and strides propagate.
"""

from __future__ import annotations

from typing import Iterator

from nas.arch.spec import CellSpec, ChainSpec, InvertedResidualSpec


def conv_out(size: int, stride: int) -> int:
    """Spatial size after a 'same'-padded (k//2) conv or pool: ceil(size / stride)."""
    return (size - 1) // stride + 1


def ir_hidden(block: InvertedResidualSpec, in_ch: int) -> int:
    """Hidden width of an inverted residual; expansion rounds as int(round(in * t))."""
    if block.hidden is not None:
        return block.hidden
    return int(round(in_ch * block.expansion))


def iter_blocks(spec: ChainSpec, size: int | None = None) -> Iterator[tuple[int, object, int, int]]:
    """Yield (index, block, in_channels, input_size) for every block."""
    ch = spec.stem.out
    hw = conv_out(spec.input_size if size is None else size, spec.stem.stride)
    for i, block in enumerate(spec.blocks):
        yield i, block, ch, hw
        ch = block.out
        hw = conv_out(hw, block.stride)


def last_channels(spec: ChainSpec) -> int:
    return spec.blocks[-1].out if spec.blocks else spec.stem.out


def reduction_layers(layers: int) -> tuple[int, int]:
    """DARTS places its two reduction cells at layers // 3 and 2 * layers // 3."""
    return layers // 3, 2 * layers // 3


def cell_plan(spec: CellSpec) -> Iterator[tuple[int, int, int, int, bool, bool, int]]:
    """Per cell of a DARTS network, (index, c_pp, c_p, c, reduction, reduction_prev, c_out):
    the widths of its two inputs, its own width (doubled at each reduction) and its output
    (c x the concatenated nodes). One walker for the evaluation network, the search network
    and the cost model."""
    reductions = reduction_layers(spec.layers)
    c_stem = spec.stem_multiplier * spec.init_channels
    c_pp, c_p, c = c_stem, c_stem, spec.init_channels
    reduction_prev = False
    for i in range(spec.layers):
        reduction = i in reductions
        if reduction:
            c *= 2
        concat = spec.genotype.reduce_concat if reduction else spec.genotype.normal_concat
        c_out = len(concat) * c
        yield i, c_pp, c_p, c, reduction, reduction_prev, c_out
        reduction_prev = reduction
        c_pp, c_p = c_p, c_out


# Width ratio of the two MobileNeXt cell ops. The paper gives neither; each is its own paper's
# default: MobileNeXt's sandglass reduces by t = 6 (Table 2), MobileNetV2's inverted residual
# expands by t = 6. So the comparison sets the two designs against each other at their usual
# shape: the sandglass (2 C^2 / 6 weights in its 1x1s) is cheaper than sep_conv_3x3 (2 C^2),
# the inverted residual (12 C^2) dearer.
SANDGLASS_REDUCTION = 6
IR_EXPANSION = 6


def sandglass_hidden(c: int) -> int:
    """Middle width of the sandglass cell op on c channels (ceil: at least one)."""
    return -(-c // SANDGLASS_REDUCTION)


def ir_op_hidden(c: int) -> int:
    """Hidden width of the inverted-residual cell op on c channels."""
    return IR_EXPANSION * c
