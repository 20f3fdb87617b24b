"""MobileNetV2 (torchvision definition) at every width, and MobileNetV2-LightNL (AutoNL 4.1)."""

from __future__ import annotations

from functools import partial

from nas.arch.spec import (BatchNormSpec, ChainSpec, ConvSpec, HeadSpec, InvertedResidualSpec,
                           LightNLSpec)
from nas.arch.widths import make_divisible
from nas.arch.zoo.registry import ZooEntry, register

# (expansion t, output channels c, repeats n, first stride s)
STAGES = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
          (6, 160, 3, 2), (6, 320, 1, 1)]


def mobilenetv2(width: float = 1.0, *, num_classes: int = 1000, input_size: int = 224,
                lightnl: bool = False, name: str | None = None) -> ChainSpec:
    """Stage widths make_divisible(c * width, 8); the 1280 head is not shrunk below 1.0.

    With `lightnl`, a LightNL (ratio 0.25; stride 2 on maps larger than 14x14) follows
    the projection of all 17 blocks, before the residual add (AutoNL Sec. 4.1).
    """
    cin = make_divisible(32 * width, 8)
    hw = input_size // 2
    blocks = []
    for t, c, n, s in STAGES:
        out = make_divisible(c * width, 8)
        for i in range(n):
            stride = s if i == 0 else 1
            hw_out = (hw - 1) // stride + 1
            blocks.append(InvertedResidualSpec(
                out=out, kernel=3, stride=stride, expand=t != 1, expansion=float(t),
                act_expand="relu6", act_dw="relu6", act_post="none",
                residual="identity" if stride == 1 and cin == out else "none",
                lightnl=LightNLSpec(ratio=0.25, stride=2 if hw_out > 14 else 1) if lightnl else None))
            cin, hw = out, hw_out
    return ChainSpec(
        name=name or f"mobilenetv2_{round(width * 100):03d}", num_classes=num_classes,
        input_size=input_size, bn=BatchNormSpec(eps=1e-5, momentum=0.1), init="torchvision",
        stem=ConvSpec(out=make_divisible(32 * width, 8), kernel=3, stride=2, act="relu6"),
        blocks=blocks,
        head=HeadSpec(pre_pool=[ConvSpec(out=make_divisible(1280 * max(1.0, width), 8),
                                         act="relu6")],
                      dropout=0.2, classifier="linear"))


_PUBLISHED = {  # timm's measured counts; MobileNeXt paper Table 3 (MobileNetV2 rows)
    0.35: ("1.68 M (timm) / 59 M (MobileNeXt T3)", None),
    0.5: ("1.97 M (timm) / 97 M (MobileNeXt T3)", None),
    0.75: ("2.64 M (timm) / 150 M (MobileNeXt T3, sic)", None),
    1.0: ("3.5 M / 300 M / 72.0 %; torchvision 3,504,872", 3_504_872),
    1.4: ("6.11 M (timm) / 582 M; papers quote 6.9 M / 585 M", None),
}
for _w, (_pub, _exact) in _PUBLISHED.items():
    _name = f"mobilenetv2_{round(_w * 100):03d}"
    register(ZooEntry(_name, partial(mobilenetv2, _w, name=_name), "MobileNetV2",
                      _pub, official_params=_exact))

register(ZooEntry(
    "mobilenetv2_100_lightnl", partial(mobilenetv2, 1.0, lightnl=True, name="mobilenetv2_100_lightnl"),
    "AutoNL Sec. 4.1", "- / 316 M (+15 M) / 75.0 %", official_params=3_521_416))
