"""AutoNL-S and AutoNL-L (configs of the authors' PyTorch re-release, yet_another_mobilenet_series)."""

from __future__ import annotations

from functools import partial

from nas.arch.spec import (BatchNormSpec, ChainSpec, ConvSpec, HeadSpec, InvertedResidualSpec,
                           LightNLSpec, SESpec)
from nas.arch.zoo.registry import ZooEntry, register

# (kernel, expansion, out, stride, SE reduce width or 0, LightNL (ratio, stride) or None)
AUTONL_S = [
    (3, 1, 16, 1, 0, None), (3, 3, 24, 2, 0, (0.25, 1)), (3, 3, 24, 1, 0, None),
    (5, 3, 40, 2, 0, (0.25, 1)), (3, 3, 40, 1, 0, (0.25, 2)), (3, 3, 40, 1, 0, None),
    (5, 6, 80, 2, 10, (0.25, 1)), (3, 3, 80, 1, 40, None), (3, 3, 80, 1, 40, None),
    (5, 6, 96, 1, 20, (0.25, 1)), (3, 3, 96, 1, 48, None), (3, 3, 96, 1, 48, None),
    (3, 3, 96, 1, 48, None), (5, 6, 192, 2, 24, (0.25, 1)), (5, 3, 192, 1, 96, None),
    (5, 3, 192, 1, 96, None), (5, 3, 192, 1, 96, None), (5, 6, 320, 1, 96, (0.25, 1)),
]
AUTONL_L = [
    (3, 1, 16, 1, 0, None), (5, 3, 24, 2, 0, (0.25, 1)), (5, 3, 24, 1, 0, None),
    (3, 3, 24, 1, 0, (0.25, 2)), (5, 6, 40, 2, 0, (0.25, 1)), (3, 3, 40, 1, 0, (0.25, 2)),
    (3, 3, 40, 1, 0, (0.25, 2)), (3, 3, 40, 1, 0, (0.25, 2)), (5, 6, 80, 2, 0, (0.25, 1)),
    (3, 3, 80, 1, 40, None), (3, 3, 80, 1, 40, None), (3, 3, 80, 1, 40, (0.125, 2)),
    (5, 6, 96, 1, 40, (0.25, 1)), (5, 3, 96, 1, 48, None), (5, 3, 96, 1, 48, None),
    (3, 3, 96, 1, 48, (0.25, 2)), (5, 6, 192, 2, 48, (0.25, 1)), (5, 6, 192, 1, 96, (0.125, 1)),
    (5, 6, 192, 1, 96, (0.125, 1)), (5, 6, 192, 1, 96, None), (5, 6, 320, 1, 96, (0.25, 1)),
]


def autonl(rows: list[tuple], *, num_classes: int = 1000, input_size: int = 224,
           name: str = "autonl") -> ChainSpec:
    """Swish everywhere; SE on the hidden tensor with reduce = round(in * se_ratio) (given as
    widths above), sigmoid gate; LightNL after the projection, before the residual add;
    BN momentum 0.01 (TF 0.99) and eps 1e-3."""
    cin, blocks = 32, []
    for k, t, out, s, se, nl in rows:
        blocks.append(InvertedResidualSpec(
            out=out, kernel=k, stride=s, expand=t != 1, expansion=float(t),
            act_expand="swish", act_dw="swish", act_post="none",
            se=SESpec(reduce=se, act="swish", gate="sigmoid") if se else None,
            residual="identity" if s == 1 and cin == out else "none",
            lightnl=LightNLSpec(ratio=nl[0], stride=nl[1]) if nl else None))
        cin = out
    return ChainSpec(
        name=name, num_classes=num_classes, input_size=input_size,
        bn=BatchNormSpec(eps=1e-3, momentum=0.01), init="tf_mnas",
        stem=ConvSpec(out=32, kernel=3, stride=2, act="swish"), blocks=blocks,
        head=HeadSpec(pre_pool=[ConvSpec(out=1280, act="swish")], dropout=0.2,
                      classifier="linear"))


register(ZooEntry("autonl_s", partial(autonl, AUTONL_S, name="autonl_s"), "AutoNL Table 2",
                  "4.4 M / 267 M / 76.5 %", 4_389_350))
register(ZooEntry("autonl_l", partial(autonl, AUTONL_L, name="autonl_l"), "AutoNL Table 2",
                  "5.6 M / 353 M / 77.7 %", 5_580_336))
