"""Shapes along a chain spec: each block's input channels and input resolution.

One walker shared by validation, the builder and the cost model, so the three agree on
how channels and strides propagate.
"""

from __future__ import annotations

from typing import Iterator

from nas.arch.spec import ChainSpec, InvertedResidualSpec


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
