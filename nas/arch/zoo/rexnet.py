"""ReXNet and ReXNet-lite at every width (clovaai/rexnet rexnetv1.py, rexnetv1_lite.py)."""

from __future__ import annotations

from functools import partial

from nas.arch.spec import (BatchNormSpec, ChainSpec, ConvSpec, HeadSpec, InvertedResidualSpec,
                           SESpec)
from nas.arch.widths import rexnet_channels, rexnet_lite_channels
from nas.arch.zoo.registry import ZooEntry, register

REPEATS = [1, 2, 2, 3, 3, 5]
STRIDES = [1, 2, 2, 2, 1, 2]
SE_STAGES = [False, False, True, True, True, True]


def _per_block(values: list) -> list:
    return [v for v, n in zip(values, REPEATS) for _ in range(n)]


def _block_strides() -> list[int]:
    return [s if i == 0 else 1 for s, n in zip(STRIDES, REPEATS) for i in range(n)]


def rexnet(width: float = 1.0, *, num_classes: int = 1000, input_size: int = 224,
           name: str | None = None) -> ChainSpec:
    """ReXNet: linearly growing widths, SiLU after the expansion, no activation after the
    depthwise BN, SE (hidden // 12, BN inside) in stages 3-6, ReLU6 before the projection,
    partial shortcut into the first `in` channels. Stem SiLU as in the released weights
    (the paper says ReLU6)."""
    stem, ins, outs = rexnet_channels(width)
    blocks = []
    for i, (cin, out, s, se) in enumerate(zip(ins, outs, _block_strides(), _per_block(SE_STAGES))):
        t = 1 if i == 0 else 6
        hidden = cin * t
        blocks.append(InvertedResidualSpec(
            out=out, kernel=3, stride=s, expand=t != 1, expansion=float(t),
            act_expand="swish", act_dw="none", act_post="relu6",
            se=SESpec(reduce=hidden // 12, act="relu", gate="sigmoid", bn=True) if se else None,
            residual="partial" if s == 1 and cin <= out else "none"))
    return ChainSpec(
        name=name or f"rexnet_{round(width * 100):03d}", num_classes=num_classes,
        input_size=input_size, bn=BatchNormSpec(eps=1e-5, momentum=0.1), init="torch_default",
        stem=ConvSpec(out=stem, kernel=3, stride=2, act="swish"), blocks=blocks,
        head=HeadSpec(pre_pool=[ConvSpec(out=int(1280 * width), act="swish")], dropout=0.2,
                      classifier="conv"))


def rexnet_lite(width: float = 1.0, *, num_classes: int = 1000, input_size: int = 224,
                name: str | None = None) -> ChainSpec:
    """ReXNet-lite: make_divisible(., 8) widths over 15 increments, ReLU6 everywhere (also
    after the depthwise BN), no SE, and a 1024-wide 1x1 conv + BN + ReLU6 after pooling."""
    stem, ins, outs = rexnet_lite_channels(width)
    blocks = []
    for i, (cin, out, s) in enumerate(zip(ins, outs, _block_strides())):
        t = 1 if i == 0 else 6
        blocks.append(InvertedResidualSpec(
            out=out, kernel=3, stride=s, expand=t != 1, expansion=float(t),
            act_expand="relu6", act_dw="relu6", act_post="none",
            residual="partial" if s == 1 and cin <= out else "none"))
    pen = int(1280 * width) if width > 1.0 else 1280
    return ChainSpec(
        name=name or f"rexnet_lite_{round(width * 100):03d}", num_classes=num_classes,
        input_size=input_size, bn=BatchNormSpec(eps=1e-5, momentum=0.1), init="torch_default",
        stem=ConvSpec(out=stem, kernel=3, stride=2, act="relu6"), blocks=blocks,
        head=HeadSpec(pre_pool=[ConvSpec(out=pen, act="relu6")],
                      post_pool=[ConvSpec(out=1024, act="relu6", bias=True)],
                      dropout=0.2, classifier="conv"))


# width: (published params / FLOPs / top-1, exact count from specs.md section 3)
_REXNET = {
    0.9: ("4.1 M / 0.35 B / 77.2 %", 4_091_257), 1.0: ("4.8 M / 0.40 B / 77.9 %", 4_796_873),
    1.1: ("5.6 M / 0.48 B / 78.6 %", None), 1.2: ("6.6 M / 0.57 B / 79.0 %", None),
    1.3: ("7.6 M / 0.66 B / 79.5 %", 7_557_091), 1.4: ("8.6 M / 0.76 B / 79.8 %", None),
    1.5: ("9.7 M / 0.86 B / 80.3 %", 9_728_593), 2.0: ("16 M / 1.5 B / 81.6 %", 16_366_620),
    2.2: ("19 M / 1.8 B / 81.7 %", None), 3.0: ("34 M / 3.4 B / 82.8 %", 34_708_792),
}
_LITE = {
    1.0: ("4.7 M / 0.41 B / 76.2 %", 4_740_056), 1.3: ("6.8 M / 0.65 B / 77.8 %", 6_747_960),
    1.5: ("8.3 M / 0.84 B / 78.6 %", 8_332_296), 2.0: ("13.0 M / 1.5 B / 80.2 %", 12_966_200),
}
for _w, (_pub, _exact) in _REXNET.items():
    _name = f"rexnet_{round(_w * 100):03d}"
    register(ZooEntry(_name, partial(rexnet, _w, name=_name), "ReXNet Table A1", _pub, _exact))
for _w, (_pub, _exact) in _LITE.items():
    _name = f"rexnet_lite_{round(_w * 100):03d}"
    register(ZooEntry(_name, partial(rexnet_lite, _w, name=_name), "ReXNet Table A2", _pub, _exact))
