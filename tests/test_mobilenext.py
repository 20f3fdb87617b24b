"""MobileNeXt zoo entries: official counts, per-block layout, widths, analytic == measured."""

import pytest

from nas.arch.builder import build
from nas.arch.spec import SandglassSpec
from nas.arch.validate import validate
from nas.arch.zoo import entry, get_spec
from nas.cost import count
from nas.cost.measured import measure

NAMES = ["mobilenext_035", "mobilenext_050", "mobilenext_075", "mobilenext_100",
         "mobilenext_140", "mobilenext_effnet_b0", "mobilenext_effnet_b1"]

# Exact counts printed by the official training logs / reproduced in specs.md section 3.
OFFICIAL = {"mobilenext_100": 3_535_416, "mobilenext_effnet_b0": 3_937_011,
            "mobilenext_effnet_b1": 4_287_498}
# specs.md section 3, MACs in millions at 224x224.
MACS = {"mobilenext_100": 311.34, "mobilenext_effnet_b0": 330.18, "mobilenext_effnet_b1": 415.06}


@pytest.mark.parametrize("name", list(OFFICIAL))
def test_official_params(name):
    assert count(get_spec(name)).params == OFFICIAL[name]
    assert entry(name).official_params == OFFICIAL[name]


@pytest.mark.parametrize("name", list(MACS))
def test_macs_match_spec(name):
    macs = count(get_spec(name)).macs / 1e6
    assert abs(macs - MACS[name]) / MACS[name] < 1e-3


def test_x14_params_and_macs():
    # specs.md 1.7.1: the released construction gives 6.13 M / 588 M (README 6.1 M / 590 M).
    c = count(get_spec("mobilenext_140"))
    assert round(c.params / 1e6, 2) == 6.13
    assert round(c.params / 1e6, 1) == 6.1
    assert round(c.macs / 1e6) == 588


def test_smaller_widths_follow_the_construction_rule():
    # The released construction (960 stage x3, 1280 stage kept at 1280 below width 1.0) gives
    # these counts. The README rounds them to 1.8 / 2.1 / 2.5 M; none of the three agrees
    # (1.91 / 2.15 / 2.77 M). specs.md flags the 0.75 row as known not to match; 0.35 and 0.5
    # do not round to the README figures either, so exact values are asserted here instead.
    params = {n: count(get_spec(n)).params for n in ("mobilenext_035", "mobilenext_050",
                                                     "mobilenext_075")}
    assert params == {"mobilenext_035": 1_913_976, "mobilenext_050": 2_152_304,
                      "mobilenext_075": 2_766_168}
    # MACs, README 80 / 110 / 210 M: the construction gives 75 / 103 / 208 M.
    macs = [round(count(get_spec(n)).macs / 1e6) for n in params]
    assert macs == [75, 103, 208]


# specs.md 1.7.1, per-block layout of x1.0: (out, reduced, stride, form, identity).
X10_LAYOUT = (
    [(96, 16, 2, "full", False), (144, 32, 1, "full", False), (192, 32, 2, "pw_pw_dw", False)]
    + [(192, 32, 1, "full", True)] * 2
    + [(288, 48, 2, "pw_pw_dw", False)] + [(288, 48, 1, "full", True)] * 2
    + [(384, 64, 1, "pw_pw", False)] + [(384, 64, 1, "full", True)] * 3
    + [(576, 96, 2, "pw_pw_dw", False)] + [(576, 96, 1, "full", True)] * 3
    + [(960, 160, 1, "pw_pw", False)] + [(960, 160, 1, "full", True)] * 2
    + [(1280, 208, 1, "full", False)])


def test_x10_block_layout():
    spec = get_spec("mobilenext_100")
    assert spec.stem.out == 32 and spec.stem.stride == 2 and spec.stem.act == "relu6"
    assert all(isinstance(b, SandglassSpec) for b in spec.blocks)
    got = [(b.out, b.reduced, b.stride, b.form, b.residual == "identity") for b in spec.blocks]
    assert got == X10_LAYOUT
    assert all(b.kernel == 3 and b.act == "relu6" and b.se is None and b.groups == 1
               and b.identity_div == 1 for b in spec.blocks)
    assert spec.head.pre_pool == [] and spec.head.dropout == 0.2
    assert spec.head.classifier == "linear" and spec.head.unused_bn == 0
    assert (spec.bn.eps, spec.bn.momentum, spec.init) == (1e-5, 0.1, "torchvision")


def test_width_rule():
    # Every width: stem and stages make_divisible(c * w, 8); 1280 kept below 1.0, scaled above.
    assert [b.out for b in get_spec("mobilenext_035").blocks][-1] == 1280
    x14 = get_spec("mobilenext_140")
    assert x14.stem.out == 48
    assert sorted({b.out for b in x14.blocks}) == [136, 200, 272, 400, 536, 808, 1344, 1792]


def test_effnet_variants():
    b0, b1 = get_spec("mobilenext_effnet_b0"), get_spec("mobilenext_effnet_b1")
    assert len(b0.blocks) == 20 and len(b1.blocks) == 28  # repeats ceil(1.1 * r) for b1
    for spec, g in ((b0, 1), (b1, 2)):
        assert all(b.se is not None and b.se.act == "swish" and b.se.gate == "sigmoid"
                   for b in spec.blocks)
        assert all(b.groups == (g if b.form == "full" else 1) for b in spec.blocks)
        assert spec.head.unused_bn == 1280 and spec.head.pre_pool == []
        assert spec.drop_path == 0.2 and spec.init == "torch_default"
        assert (spec.bn.eps, spec.bn.momentum) == (1e-3, 0.01)
    # b0: first block stride 1, full form; 96->144 pw_pw_dw at stride 2; 960->1280 pw_pw.
    first, second, last = b0.blocks[0], b0.blocks[1], b0.blocks[-1]
    assert (first.form, first.stride, first.reduced, first.se.reduce) == ("full", 1, 16, 12)
    assert (second.form, second.stride, second.reduced, second.se.reduce) == \
        ("pw_pw_dw", 2, 16, 6)
    assert (last.form, last.reduced, last.se.reduce) == ("pw_pw", 160, 53)
    # b1: the repeated t = 2 block (96 -> 96) is full but has no shortcut.
    assert (b1.blocks[1].out, b1.blocks[1].form, b1.blocks[1].residual) == (96, "full", "none")
    assert (b1.blocks[-1].form, b1.blocks[-1].residual) == ("full", "identity")


@pytest.mark.parametrize("name", NAMES)
def test_analytic_equals_measured(name):
    spec = get_spec(name)
    validate(spec)
    assert measure(build(spec), spec.input_size, spec.in_channels) == count(spec)
