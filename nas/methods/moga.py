"""MoGA: the MobileNetV3-Large search space of 14 layers x 12 choices (paper Table 1).

A decision vector is the paper's gene encoding itself: candidate index = gene =
6 * [t = 6] + 2 * kernel index + [SE].
"""

from __future__ import annotations

from nas.arch.zoo.moga import ACTS, moga, moga_layer, moga_skeleton
from nas.supernet.chain import ChainSearchSpace

N_CHOICES = 12


def moga_space(*, width: float = 1.0, stem_stride: int = 2, num_classes: int = 1000,
               input_size: int = 224) -> ChainSearchSpace:
    """Fixed stem, separable block and head around 14 searchable layers."""
    template = moga([0] * 14, num_classes=num_classes, input_size=input_size, name="moga_search",
                    width=width, stem_stride=stem_stride)
    first, widths, strides, _ = moga_skeleton(width, stem_stride)
    positions, cin = [[template.blocks[0]]], first
    for out, stride, act in zip(widths, strides, ACTS):
        positions.append([moga_layer(g, cin, out, stride, act) for g in range(N_CHOICES)])
        cin = out
    return ChainSearchSpace(template, positions)
