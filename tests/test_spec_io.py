"""ArchSpec YAML round trip and the one-line errors of bad specs."""

import dataclasses

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from nas.arch import io
from nas.arch.builder import build
from nas.arch.io import SpecError
from nas.arch.spec import (BatchNormSpec, ChainSpec, ConvSpec, HeadSpec, InvertedResidualSpec,
                           LightNLSpec, MixedKernelSpec, SandglassSpec, SeparableSpec, SESpec)
from nas.arch.zoo import ZOO, get_spec
from nas.cost import count
from nas.cost.measured import measure


@pytest.mark.parametrize("name", list(ZOO))
def test_yaml_round_trip_is_exact(name, tmp_path):
    spec = get_spec(name)
    assert io.loads(io.dumps(spec)) == spec
    io.save(spec, tmp_path / "arch.yaml")
    assert io.load(tmp_path / "arch.yaml") == spec
    assert io.dumps(io.load(tmp_path / "arch.yaml")) == io.dumps(spec)


def _write(tmp_path, data, name="arch.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _bad(tmp_path, mutate):
    data = io.to_dict(get_spec("moga_a"))
    mutate(data)
    path = _write(tmp_path, data)
    with pytest.raises(SpecError) as e:
        io.load(path)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(str(path))
    return msg


def test_unknown_block_type(tmp_path):
    msg = _bad(tmp_path, lambda d: d["blocks"][3].update(type="resnet"))
    assert "blocks[3].type" in msg and "'resnet'" in msg and "'ir'" in msg


def test_missing_field(tmp_path):
    msg = _bad(tmp_path, lambda d: d["blocks"][2].pop("kernel"))
    assert "blocks[2].kernel" in msg and "missing" in msg and "int" in msg


def test_mistyped_field(tmp_path):
    msg = _bad(tmp_path, lambda d: d["blocks"][5].update(kernel="3"))
    assert "blocks[5].kernel" in msg and "expected an integer" in msg and "'3'" in msg


def test_unknown_field(tmp_path):
    msg = _bad(tmp_path, lambda d: d["blocks"][1].update(kernal=3))
    assert "blocks[1]" in msg and "'kernal'" in msg


def test_impossible_stride(tmp_path):
    msg = _bad(tmp_path, lambda d: d["blocks"][4].update(stride=3))
    assert "blocks[4].stride" in msg and "stride 1 or 2" in msg and "3" in msg


def test_impossible_channel_count(tmp_path):
    msg = _bad(tmp_path, lambda d: d["blocks"][6].update(out=0))
    assert "blocks[6].out" in msg and "positive integer" in msg


def test_even_kernel(tmp_path):
    msg = _bad(tmp_path, lambda d: d["blocks"][6].update(kernel=4))
    assert "blocks[6].kernel" in msg and "odd" in msg


def test_identity_residual_needs_matching_shapes(tmp_path):
    msg = _bad(tmp_path, lambda d: d["blocks"][1].update(residual="identity"))
    assert "blocks[1].residual" in msg and "in=16, out=24, stride=2" in msg


def test_unknown_activation(tmp_path):
    msg = _bad(tmp_path, lambda d: d["blocks"][2].update(act_dw="gelu"))
    assert "blocks[2].act_dw" in msg and "'gelu'" in msg and "relu6" in msg


def test_wrong_hidden_without_expand(tmp_path):
    msg = _bad(tmp_path, lambda d: d["blocks"][0].update(expansion=2.0))
    assert "blocks[0].hidden" in msg and "input width 16" in msg


def test_expansion_and_hidden_both_set(tmp_path):
    msg = _bad(tmp_path, lambda d: d["blocks"][3].update(hidden=10))
    assert "blocks[3]" in msg and "exactly one of 'expansion' or 'hidden'" in msg


def test_bad_head_and_globals(tmp_path):
    assert "head.dropout" in _bad(tmp_path, lambda d: d["head"].update(dropout=1.5))
    assert "num_classes" in _bad(tmp_path, lambda d: d.update(num_classes=-1))
    assert "family" in _bad(tmp_path, lambda d: d.update(family="graph"))
    assert "init" in _bad(tmp_path, lambda d: d.update(init="xavier"))


def test_mixed_kernel_errors(tmp_path):
    def mutate(d):
        d.update(io.to_dict(get_spec("atomnas_a")))
        d["blocks"][7]["hidden"] = [1, 2]
    assert "blocks[7].hidden" in _bad(tmp_path, mutate)

    def empty_strided(d):
        d.update(io.to_dict(get_spec("atomnas_a")))
        d["blocks"][5]["hidden"] = [0, 0, 0]
    msg = _bad(tmp_path, empty_strided)
    assert "blocks[5].hidden" in msg and "identity" in msg


def test_not_yaml_and_missing_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("family: chain\nblocks: [\n")
    with pytest.raises(SpecError, match="broken.yaml: not valid YAML"):
        io.load(path)
    with pytest.raises(SpecError, match="nope.yaml: cannot read"):
        io.load(tmp_path / "nope.yaml")


def test_cell_spec_errors(tmp_path):
    data = io.to_dict(get_spec("darts_v2"))
    data["genotype"]["normal"][3] = ["conv_7x7", 1]
    with pytest.raises(SpecError, match=r"genotype\.normal\[3\]\[0\]: expected one of"):
        io.loads(yaml.safe_dump(data))
    data = io.to_dict(get_spec("darts_v2"))
    data["genotype"]["reduce"][2] = ["skip_connect", 5]
    with pytest.raises(SpecError, match=r"genotype\.reduce\[2\]\[1\]: expected an input index"):
        io.loads(yaml.safe_dump(data))


# ------------------------------------------------------------------ random chain specs

ACT = st.sampled_from(["none", "relu", "relu6", "hswish", "swish"])
SE = st.none() | st.builds(lambda r, a, g, bn: SESpec(reduce=r, act=a, gate=g, bn=bn),
                           st.integers(1, 6), ACT, st.sampled_from(["sigmoid", "hsigmoid"]),
                           st.booleans())


@st.composite
def chain_specs(draw):
    """Small random chains over every block type, residual rules chosen where they fit."""
    cin, blocks = draw(st.integers(4, 12)), []
    stem = ConvSpec(out=cin, kernel=3, stride=draw(st.sampled_from([1, 2])), act=draw(ACT))
    for _ in range(draw(st.integers(1, 5))):
        kind = draw(st.sampled_from(["ir", "mixed", "sandglass", "dwsep"]))
        stride = draw(st.sampled_from([1, 2]))
        out = draw(st.sampled_from([cin, cin + 4, 8, 12]))
        same = stride == 1 and out == cin
        if kind == "ir":
            t = draw(st.sampled_from([1, 3, 6]))
            residual = "identity" if same else ("partial" if stride == 1 and cin < out else "none")
            b = InvertedResidualSpec(
                out=out, kernel=draw(st.sampled_from([3, 5])), stride=stride, expand=t != 1,
                expansion=float(t), act_expand=draw(ACT), act_dw=draw(ACT), act_post=draw(ACT),
                se=draw(SE), residual=residual,
                lightnl=draw(st.none() | st.builds(lambda r, s: LightNLSpec(ratio=r, stride=s),
                                                   st.sampled_from([0.25, 0.5]),
                                                   st.sampled_from([1, 2]))))
        elif kind == "mixed":
            hidden = draw(st.lists(st.integers(0, 9), min_size=3, max_size=3))
            if sum(hidden) == 0 and not same:
                hidden[0] = 3
            b = MixedKernelSpec(out=out, stride=stride, kernels=[3, 5, 7], hidden=hidden,
                                expand=True, act=draw(ACT), se=draw(SE),
                                residual="identity" if same else "none")
        elif kind == "sandglass":
            form = "pw_pw" if stride == 1 and not same else draw(st.sampled_from(["full",
                                                                                  "pw_pw_dw"]))
            b = SandglassSpec(out=out, reduced=draw(st.integers(2, 8)), stride=stride, kernel=3,
                              form=form, act=draw(ACT), se=draw(SE),
                              residual="identity" if same else "none",
                              identity_div=draw(st.sampled_from([1, 2])))
        else:
            b = SeparableSpec(out=out, kernel=3, stride=stride, act_dw=draw(ACT), act_pw=draw(ACT))
        blocks.append(b)
        cin = out
    head = HeadSpec(pre_pool=draw(st.lists(st.builds(lambda o, a: ConvSpec(out=o, act=a),
                                                     st.integers(4, 16), ACT), max_size=1)),
                    post_pool=draw(st.lists(st.builds(lambda o, b: ConvSpec(out=o, act="relu",
                                                                            bn=b, bias=not b),
                                                      st.integers(4, 16), st.booleans()),
                                            max_size=1)),
                    dropout=0.1, classifier=draw(st.sampled_from(["linear", "conv"])),
                    unused_bn=draw(st.sampled_from([0, 8])))
    return ChainSpec(name="random", num_classes=draw(st.integers(2, 7)),
                     input_size=draw(st.sampled_from([15, 16, 23])),
                     bn=BatchNormSpec(eps=1e-5, momentum=0.1),
                     init=draw(st.sampled_from(["torch_default", "torchvision", "tf_mnas"])),
                     stem=stem, blocks=blocks, head=head)


@settings(max_examples=40, deadline=None)
@given(chain_specs())
def test_random_specs_round_trip_and_cost_model_is_exact(spec):
    assert io.loads(io.dumps(spec)) == spec
    assert measure(build(spec), spec.input_size) == count(spec)


def test_replace_keeps_spec_valid():
    spec = dataclasses.replace(get_spec("moga_b"), num_classes=7)
    assert io.loads(io.dumps(spec)).num_classes == 7


def test_cell_spec_shape_rules():
    data = io.to_dict(get_spec("darts_v2"))
    data["genotype"]["reduce_concat"] = [0, 2, 3]
    with pytest.raises(SpecError, match=r"genotype\.reduce_concat: expected intermediate nodes"):
        io.loads(yaml.safe_dump(data))
    data = io.to_dict(get_spec("darts_v2"))
    data["input_size"] = 64
    with pytest.raises(SpecError, match="auxiliary: expected false unless input_size is 32"):
        io.loads(yaml.safe_dump(data))
    data["auxiliary"], data["input_size"] = False, 30
    with pytest.raises(SpecError, match="input_size: expected a multiple of 4"):
        io.loads(yaml.safe_dump(data))


def test_files_that_are_not_arch_yaml_are_one_line(tmp_path):
    """A binary file and a YAML nested thousands of levels deep end in one SpecError line
    naming the file (they raised UnicodeDecodeError and RecursionError)."""
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00\x01 not text")
    with pytest.raises(SpecError, match=r"binary.yaml: not a UTF-8 text file \(byte 0\)") as e:
        io.load(binary)
    assert "\n" not in str(e.value)
    deep = tmp_path / "deep.yaml"
    deep.write_text("a: " + "[" * 5000)
    with pytest.raises(SpecError, match=r"deep.yaml: YAML nested too deeply to read") as e:
        io.load(deep)
    assert "\n" not in str(e.value)
