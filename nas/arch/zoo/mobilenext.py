"""MobileNeXt (sandglass blocks) on the MobileNetV2 topology at every width, and on the
EfficientNet-B0/B1 topology (the paper's "MobileNeXt†", Table 6).

Both follow the authors' released code rather than the paper tables where they differ:
the 960 stage has 3 blocks (paper Table 2 says 2), and each block's form depends on its
position (see `_mbv2_form` and `_effnet_form`); specs.md section 1.7 lists the rules.
"""

from __future__ import annotations

import math
from functools import partial

from nas.arch.spec import BatchNormSpec, ChainSpec, ConvSpec, HeadSpec, SandglassSpec, SESpec
from nas.arch.widths import make_divisible
from nas.arch.zoo.registry import ZooEntry, register

# MobileNetV2 topology, released code: (reduction ratio t, output channels c, repeats n, stride s)
MBV2_STAGES = [(2, 96, 1, 2), (6, 144, 1, 1), (6, 192, 3, 2), (6, 288, 3, 2), (6, 384, 4, 1),
               (6, 576, 4, 2), (6, 960, 3, 1), (6, 1280, 1, 1)]

# EfficientNet topology: (repeats, kernel, stride, t, in, out); every block has SE ratio 0.25.
EFFNET_STAGES = [(1, 3, 1, 2, 32, 96), (1, 3, 2, 6, 96, 144), (3, 5, 2, 6, 144, 192),
                 (3, 3, 2, 6, 192, 288), (4, 5, 1, 6, 288, 384), (4, 5, 2, 6, 384, 576),
                 (3, 3, 1, 6, 576, 960), (1, 3, 1, 6, 960, 1280)]
# variant: (depth coefficient, groups of the 1x1 convs in the full-form blocks)
EFFNET_VARIANTS = {"b0": (1.0, 1), "b1": (1.1, 2)}


def _mbv2_reduced(cin: int, out: int, t: int) -> int:
    """Reduced width in // t, raised to make_divisible(ceil(out / 6), 16) when below out / 6."""
    h = cin // t
    if h < out / 6.0:
        h = make_divisible(math.ceil(out / 6.0), 16)
    return h


def _mbv2_form(cin: int, out: int, stride: int, t: int, keep: bool) -> tuple[str, int, bool]:
    """(form, stride, identity) of a block of the MobileNetV2-topology network.

    The first (t = 2) block is full with the stride on its last depthwise conv; a width
    change without a "keep" flag drops the leading depthwise conv (and the trailing one too
    at stride 1); everything else is full with stride 1 on both depthwise convs and has an
    identity shortcut unless it is a "keep" block (first block of a stage with n = 1, s = 1).
    """
    if t == 2:
        return "full", stride, False
    if cin != out and not keep:
        return ("pw_pw", 1, False) if stride == 1 else ("pw_pw_dw", stride, False)
    # The released code's last case: both depthwise convs at stride 1 whatever `stride`
    # says (no registered width reaches it with stride 2).
    return "full", 1, not keep


def mobilenext(width: float = 1.0, *, num_classes: int = 1000, input_size: int = 224,
               identity_div: int = 1, name: str | None = None) -> ChainSpec:
    """MobileNeXt on the MobileNetV2 topology (20 blocks, ReLU6, no head conv).

    Widths make_divisible(c * width, 8) (divisor 4 at width 0.1); the 1280 stage keeps 1280
    channels below width 1.0 and is scaled above it. The identity shortcut adds the first
    out // identity_div channels (the released model uses identity_div 1).
    """
    divisor = 4 if width == 0.1 else 8
    stem = make_divisible(32 * width, divisor)
    cin = stem
    blocks = []
    for t, c, n, s in MBV2_STAGES:
        out = make_divisible(c * width, divisor)
        if c == 1280 and width < 1.0:
            out = 1280
        for i in range(n):
            form, stride, identity = _mbv2_form(cin, out, s if i == 0 else 1, t,
                                                keep=i == 0 and n == 1 and s == 1)
            blocks.append(SandglassSpec(
                out=out, reduced=_mbv2_reduced(cin, out, t), stride=stride, kernel=3, form=form,
                act="relu6", residual="identity" if identity else "none",
                identity_div=identity_div))
            cin = out
    return ChainSpec(
        name=name or f"mobilenext_{round(width * 100):03d}", num_classes=num_classes,
        input_size=input_size, bn=BatchNormSpec(eps=1e-5, momentum=0.1), init="torchvision",
        stem=ConvSpec(out=stem, kernel=3, stride=2, act="relu6"), blocks=blocks,
        head=HeadSpec(dropout=0.2, classifier="linear"))


def _effnet_form(cin: int, out: int, stride: int, t: int) -> tuple[str, bool]:
    """(form, identity) in the EfficientNet-topology network: full for t = 2 (never a
    shortcut) and for in == out (identity at stride 1); otherwise pw_pw at stride 1 and
    pw_pw_dw at stride 2."""
    if t == 2:
        return "full", False
    if cin != out:
        return ("pw_pw" if stride == 1 else "pw_pw_dw"), False
    return "full", stride == 1


def mobilenext_effnet(variant: str = "b0", *, num_classes: int = 1000, input_size: int = 224,
                      name: str | None = None) -> ChainSpec:
    """MobileNeXt on the EfficientNet-B0 stages (b0; b1 = depth 1.1 and grouped 1x1 g = 2
    in the full-form blocks).

    Reduced width make_divisible(in // t, 2); SE on every block output (before the
    shortcut) with max(1, int(out / t * 0.25)) channels, Swish inside; Swish everywhere;
    no head conv, but the official model builds an unused BN(1280) (params only).
    Drop path 0.2 scaled by block index, PyTorch default init (the official EfficientNet
    class does not re-initialise its layers).
    """
    depth, groups = EFFNET_VARIANTS[variant]
    blocks = []
    for repeats, k, s, t, cin, out in EFFNET_STAGES:
        for i in range(int(math.ceil(depth * repeats))):
            stride = s if i == 0 else 1
            block_in = cin if i == 0 else out
            form, identity = _effnet_form(block_in, out, stride, t)
            blocks.append(SandglassSpec(
                out=out, reduced=make_divisible(block_in // t, 2), stride=stride, kernel=k,
                form=form, act="swish", groups=groups if form == "full" else 1,
                se=SESpec(reduce=max(1, int(out / t * 0.25)), act="swish", gate="sigmoid"),
                residual="identity" if identity else "none"))
    return ChainSpec(
        name=name or f"mobilenext_effnet_{variant}", num_classes=num_classes,
        input_size=input_size, bn=BatchNormSpec(eps=1e-3, momentum=0.01), init="torch_default",
        stem=ConvSpec(out=32, kernel=3, stride=2, act="swish"), blocks=blocks,
        head=HeadSpec(dropout=0.2, classifier="linear", unused_bn=1280), drop_path=0.2)


# width: official README params / MAdds / top-1; exact count of the released x1.0 log.
# The released construction gives 1.91 / 2.15 / 2.77 / 3.54 / 6.13 M params: the README's
# 0.35, 0.5 and 0.75 params figures are not what this construction counts.
_MBV2 = {
    0.35: ("1.8 M / 80 M / 64.7 %", None),
    0.5: ("2.1 M / 110 M / 67.7 %", None),
    0.75: ("2.5 M / 210 M / 72 %", None),
    1.0: ("3.5 M / 300 M / 74.02 %; log 3,535,416", 3_535_416),
    1.4: ("6.1 M / 590 M / 76.1 %", None),
}
for _w, (_pub, _exact) in _MBV2.items():
    _name = f"mobilenext_{round(_w * 100):03d}"
    register(ZooEntry(_name, partial(mobilenext, _w, name=_name), "MobileNeXt Table 3 / README",
                      _pub, official_params=_exact))

register(ZooEntry("mobilenext_effnet_b0",
                  partial(mobilenext_effnet, "b0", name="mobilenext_effnet_b0"),
                  "MobileNeXt Table 6 (MobileNeXt-1.0\u2020)", "3.94 M / 330 M / 76.05 %",
                  official_params=3_937_011))
register(ZooEntry("mobilenext_effnet_b1",
                  partial(mobilenext_effnet, "b1", name="mobilenext_effnet_b1"),
                  "MobileNeXt Table 6 (MobileNeXt-1.1\u2020)", "4.28 M / 420 M / 76.7 %; "
                  "log 4,287,498", official_params=4_287_498))
