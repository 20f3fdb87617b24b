"""AtomNAS-A/B/C and the "+" variants (meijieru/AtomNAS searched configs)."""

from __future__ import annotations

from functools import partial

from nas.arch.spec import (BatchNormSpec, ChainSpec, ConvSpec, HeadSpec, MixedKernelSpec,
                           SESpec)
from nas.arch.widths import make_divisible
from nas.arch.zoo.registry import ZooEntry, register

KERNELS = [3, 5, 7]
# Rows 2..22: (out, stride); row 1 is a fixed t=1 k3 block to 16 channels.
LAYOUT = [(24, 2), (24, 1), (24, 1), (24, 1), (40, 2), (40, 1), (40, 1), (40, 1), (80, 2),
          (80, 1), (80, 1), (80, 1), (96, 1), (96, 1), (96, 1), (96, 1), (192, 2), (192, 1),
          (192, 1), (192, 1), (320, 1)]
# Surviving hidden channels per kernel (3, 5, 7) after shrinkage; 0 = all atoms pruned.
HIDDEN = {
    "a": [(16, 12, 9), (19, 2, 1), (9, 7, 1), (14, 1, 0), (46, 49, 50), (27, 19, 14),
          (22, 11, 3), (30, 14, 3), (127, 130, 111), (33, 25, 45), (38, 12, 34), (53, 23, 19),
          (344, 196, 168), (44, 18, 27), (37, 29, 18), (52, 21, 24), (381, 364, 342),
          (123, 76, 162), (179, 107, 212), (238, 111, 171), (654, 495, 546)],
    "b": [(7, 15, 17), (16, 4, 0), (17, 7, 1), (22, 4, 1), (58, 66, 67), (39, 24, 17),
          (22, 13, 3), (38, 16, 3), (166, 148, 151), (31, 43, 65), (41, 15, 28), (77, 21, 43),
          (378, 256, 204), (54, 31, 32), (54, 26, 26), (73, 42, 26), (442, 433, 430),
          (154, 112, 263), (234, 142, 282), (295, 190, 202), (766, 631, 671)],
    "c": [(15, 23, 13), (20, 3, 2), (21, 8, 1), (21, 4, 0), (64, 65, 70), (40, 23, 28),
          (36, 21, 9), (40, 22, 7), (169, 170, 157), (45, 55, 74), (58, 21, 37), (77, 18, 39),
          (393, 263, 247), (57, 40, 36), (61, 34, 26), (87, 38, 33), (454, 468, 468),
          (188, 137, 306), (253, 187, 314), (345, 202, 233), (823, 738, 749)],
}
STEM = {"a": 16, "b": 32, "c": 32}


def _chain(stem: int, hidden_rows: list, *, plus: bool, num_classes: int, input_size: int,
           name: str, first_out: int = 16, outs: list[int] | None = None, stem_stride: int = 2,
           head: int = 1280) -> ChainSpec:
    """Stem, the fixed t=1 k3 block to `first_out` channels, then one mixed-kernel block per
    row (output channels `outs`, LAYOUT's by default)."""
    act = "swish" if plus else "relu"
    outs = [out for out, _ in LAYOUT] if outs is None else outs

    def se(cin: int) -> SESpec | None:
        return SESpec(reduce=round(cin * 0.5), act=act, gate="sigmoid") if plus else None

    blocks = [MixedKernelSpec(out=first_out, stride=1, kernels=[3], hidden=[stem], expand=False,
                              act=act, se=se(stem),
                              residual="identity" if stem == first_out else "none")]
    cin = first_out
    for out, (_, stride), hidden in zip(outs, LAYOUT, hidden_rows):
        blocks.append(MixedKernelSpec(
            out=out, stride=stride, kernels=list(KERNELS), hidden=list(hidden), expand=True,
            act=act, se=se(cin), residual="identity" if stride == 1 and cin == out else "none"))
        cin = out
    return ChainSpec(
        name=name, num_classes=num_classes, input_size=input_size,
        bn=BatchNormSpec(eps=1e-3, momentum=0.01), init="tf_mnas",
        stem=ConvSpec(out=stem, kernel=3, stride=stem_stride, act=act), blocks=blocks,
        head=HeadSpec(pre_pool=[ConvSpec(out=head, act=act)], dropout=0.28 if plus else 0.2,
                      classifier="linear"))


def atomnas(variant: str, plus: bool = False, *, num_classes: int = 1000, input_size: int = 224,
            name: str | None = None) -> ChainSpec:
    """ReLU network (A/B/C), or with `plus`: Swish everywhere and an SE (reduce
    round(in * 0.5), Swish inside, sigmoid gate) on every block's hidden tensor.

    Dropout: 0.2 (the search-and-train run) for A/B/C, 0.28 for the retrained "+" nets.
    """
    return _chain(STEM[variant], HIDDEN[variant], plus=plus, num_classes=num_classes,
                  input_size=input_size,
                  name=name or f"atomnas_{variant}{'_plus' if plus else ''}")


def atomnas_supernet(stem: int = 32, *, num_classes: int = 1000, input_size: int = 224,
                     width: float = 1.0, stem_stride: int = 2) -> ChainSpec:
    """The AtomNAS search supernet as a spec: every searchable block holds 6 * C_in atoms per
    kernel 3/5/7 (1,520,973,056 MACs with stem 32, the paper's 1521 M).

    `width` scales the stem and every block's output with make_divisible(c * width, 8), as
    MobileNetV2 does, so small proxy supernets keep the same topology; the 1280 head is only
    scaled above 1.0. `stem_stride` 1 is the CIFAR-style stem for 32x32 inputs (without it the
    last stage would run at 1x1).
    """
    stem_ch = make_divisible(stem * width, 8)
    first_out = make_divisible(16 * width, 8)
    outs = [make_divisible(out * width, 8) for out, _ in LAYOUT]
    ins = [first_out] + outs[:-1]
    return _chain(stem_ch, [(6 * c,) * 3 for c in ins], plus=False, num_classes=num_classes,
                  input_size=input_size, name="atomnas_supernet", first_out=first_out,
                  outs=outs, stem_stride=stem_stride,
                  head=make_divisible(1280 * max(1.0, width), 8))


_PUBLISHED = {  # paper params are conv/linear only (params_nobn)
    "a": ("3.9 M / 258 M / 74.6 %", 3_885_272), "b": ("4.4 M / 326 M / 75.5 %", 4_453_927),
    "c": ("4.7 M / 360 M / 75.9 %", 4_782_696),
    "a_plus": ("4.7 M / 260 M / 76.3 %", 4_718_080), "b_plus": ("5.5 M / 329 M / 77.2 %", None),
    "c_plus": ("5.9 M / 363 M / 77.6 %", None),
}
for _key, (_pub, _exact) in _PUBLISHED.items():
    _name = f"atomnas_{_key}"
    register(ZooEntry(_name, partial(atomnas, _key[0], _key.endswith("plus"), name=_name),
                      "AtomNAS Table 1 (params without BN)", _pub, _exact))
