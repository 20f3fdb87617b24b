"""MoGA-A/B/C (official xiaomi-automl/MoGA models; paper Table 2 and Fig. 8 agree)."""

from __future__ import annotations

from functools import partial

from nas.arch.spec import (BatchNormSpec, ChainSpec, ConvSpec, HeadSpec, InvertedResidualSpec,
                           SESpec)
from nas.arch.widths import make_divisible
from nas.arch.zoo.registry import ZooEntry, register

# The MobileNetV3-Large skeleton the 14 searched layers keep (MoGA Sec. 5).
WIDTHS = [24, 24, 40, 40, 40, 80, 80, 80, 80, 112, 112, 160, 160, 160]
STRIDES = [2, 1, 2, 1, 1, 2, 1, 1, 1, 1, 1, 2, 1, 1]
ACTS = ["relu"] * 5 + ["hswish"] * 9
KERNELS = (3, 5, 7)

# Genes per layer: index = 6*[t=6] + 2*kernel_index + [SE] (paper Table 1).
GENES = {
    "moga_a": [8, 10, 6, 7, 1, 7, 6, 10, 5, 10, 6, 6, 9, 9],
    "moga_b": [0, 0, 10, 0, 8, 7, 9, 0, 11, 10, 2, 11, 11, 7],
    "moga_c": [2, 0, 2, 0, 2, 2, 9, 2, 2, 6, 7, 7, 7, 7],
}


def decode_gene(gene: int) -> tuple[int, int, bool]:
    """Choice index -> (kernel, expansion, se)."""
    if not 0 <= gene < 12:
        raise ValueError(f"MoGA gene must be in [0, 11], got {gene}")
    return KERNELS[(gene % 6) // 2], 6 if gene >= 6 else 3, bool(gene % 2)


def moga_layer(gene: int, cin: int, out: int, stride: int, act: str) -> InvertedResidualSpec:
    """One searchable MBConv layer: (kernel, expansion, SE) from the gene; SE reduces
    hidden // 4 with the layer's activation inside and an h-sigmoid gate."""
    k, t, se = decode_gene(gene)
    hidden = cin * t
    return InvertedResidualSpec(
        out=out, kernel=k, stride=stride, expand=True, expansion=float(t),
        act_expand=act, act_dw=act, act_post="none",
        se=SESpec(reduce=hidden // 4, act=act, gate="hsigmoid") if se else None,
        residual="identity" if stride == 1 and cin == out else "none")


def moga_skeleton(width: float = 1.0, stem_stride: int = 2) -> tuple[int, list[int], list[int], int]:
    """(stem/first-block width, layer widths, layer strides, head width) of the MoGA space.

    Widths scale as make_divisible(c * width, 8); the 1280-wide last layer does not. A
    stem stride of 1 keeps 32x32 inputs (CIFAR, the embedded data) from shrinking to 1x1.
    """
    scale = lambda c: make_divisible(c * width, 8)  # noqa: E731
    return scale(16), [scale(c) for c in WIDTHS], list(STRIDES), scale(960)


def moga(genes: list[int], *, num_classes: int = 1000, input_size: int = 224,
         name: str = "moga", width: float = 1.0, stem_stride: int = 2) -> ChainSpec:
    """A network of the MoGA search space: fixed stem, separable block and head; 14 MBConv
    layers whose (kernel, expansion, SE) come from `genes`. The 16 -> 16 separable block
    has no residual in the official code."""
    first, widths, strides, head = moga_skeleton(width, stem_stride)
    blocks = [InvertedResidualSpec(out=first, kernel=3, stride=1, expand=False, expansion=1.0,
                                   act_expand="none", act_dw="relu", act_post="none",
                                   residual="none")]
    cin = first
    for gene, out, stride, act in zip(genes, widths, strides, ACTS):
        blocks.append(moga_layer(gene, cin, out, stride, act))
        cin = out
    return ChainSpec(
        name=name, num_classes=num_classes, input_size=input_size,
        bn=BatchNormSpec(eps=1e-5, momentum=0.1), init="tf_mnas",
        stem=ConvSpec(out=first, kernel=3, stride=stem_stride, act="hswish"),
        blocks=blocks,
        head=HeadSpec(pre_pool=[ConvSpec(out=head, act="hswish")],
                      post_pool=[ConvSpec(out=1280, act="hswish", bn=False)],
                      dropout=0.2, classifier="linear"))


for _name, _pub, _exact in [
    ("moga_a", "5.1 M / 304 M / 75.9 %", 5_159_802),
    ("moga_b", "5.5 M / 248 M / 75.5 %", 5_506_236),
    ("moga_c", "5.4 M / 221 M / 75.3 %", 5_488_200),
]:
    register(ZooEntry(_name, partial(moga, GENES[_name], name=_name), "MoGA Table 3", _pub, _exact))
