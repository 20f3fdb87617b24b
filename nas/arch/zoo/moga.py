"""MoGA-A/B/C (official xiaomi-automl/MoGA models; paper Table 2 and Fig. 8 agree)."""

from __future__ import annotations

from functools import partial

from nas.arch.spec import (BatchNormSpec, ChainSpec, ConvSpec, HeadSpec, InvertedResidualSpec,
                           SESpec)
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


def moga(genes: list[int], *, num_classes: int = 1000, input_size: int = 224,
         name: str = "moga") -> ChainSpec:
    """A network of the MoGA search space: fixed stem, separable block and head; 14 MBConv
    layers whose (kernel, expansion, SE) come from `genes`.

    SE reduces hidden // 4 with the block's activation inside and an h-sigmoid gate; the
    16 -> 16 separable block has no residual in the official code.
    """
    blocks = [InvertedResidualSpec(out=16, kernel=3, stride=1, expand=False, expansion=1.0,
                                   act_expand="none", act_dw="relu", act_post="none",
                                   residual="none")]
    cin = 16
    for gene, out, stride, act in zip(genes, WIDTHS, STRIDES, ACTS):
        k, t, se = decode_gene(gene)
        hidden = cin * t
        blocks.append(InvertedResidualSpec(
            out=out, kernel=k, stride=stride, expand=True, expansion=float(t),
            act_expand=act, act_dw=act, act_post="none",
            se=SESpec(reduce=hidden // 4, act=act, gate="hsigmoid") if se else None,
            residual="identity" if stride == 1 and cin == out else "none"))
        cin = out
    return ChainSpec(
        name=name, num_classes=num_classes, input_size=input_size,
        bn=BatchNormSpec(eps=1e-5, momentum=0.1), init="tf_mnas",
        stem=ConvSpec(out=16, kernel=3, stride=2, act="hswish"),
        blocks=blocks,
        head=HeadSpec(pre_pool=[ConvSpec(out=960, act="hswish")],
                      post_pool=[ConvSpec(out=1280, act="hswish", bn=False)],
                      dropout=0.2, classifier="linear"))


for _name, _pub, _exact in [
    ("moga_a", "5.1 M / 304 M / 75.9 %", 5_159_802),
    ("moga_b", "5.5 M / 248 M / 75.5 %", 5_506_236),
    ("moga_c", "5.4 M / 221 M / 75.3 %", 5_488_200),
]:
    register(ZooEntry(_name, partial(moga, GENES[_name], name=_name), "MoGA Table 3", _pub, _exact))
