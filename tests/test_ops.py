"""Building blocks behave as the papers and official code define them."""

import math

import pytest
import torch
from torch import nn

from nas.arch.builder import build
from nas.arch.spec import InvertedResidualSpec, MixedKernelSpec, SandglassSpec, SESpec
from nas.arch.zoo import get_spec
from nas.ops.blocks import InvertedResidual, MixedKernel, Sandglass
from nas.ops.layers import DropPath, TrimmedConv2d, _unused_taps, make_act, make_norm
from nas.ops.lightnl import LightNL, lightnl_matmul_macs

NORM = make_norm(1e-5, 0.1)


def test_hard_activations_are_the_mobilenetv3_ones():
    x = torch.linspace(-5, 5, 101)
    assert torch.allclose(make_act("hswish")(x), x * torch.clamp(x + 3, 0, 6) / 6)
    assert torch.allclose(make_act("hsigmoid")(x), torch.clamp(x + 3, 0, 6) / 6)


@pytest.mark.parametrize("name,eps,momentum,init", [
    ("mobilenetv2_100", 1e-5, 0.1, "torchvision"), ("moga_a", 1e-5, 0.1, "tf_mnas"),
    ("autonl_s", 1e-3, 0.01, "tf_mnas"), ("atomnas_a", 1e-3, 0.01, "tf_mnas"),
    ("rexnet_100", 1e-5, 0.1, "torch_default"), ("rexnet_lite_100", 1e-5, 0.1, "torch_default"),
    ("mobilenext_100", 1e-5, 0.1, "torchvision"),
    ("mobilenext_effnet_b0", 1e-3, 0.01, "torch_default"), ("darts_v2", 1e-5, 0.1, None),
])
def test_bn_constants_follow_the_official_code(name, eps, momentum, init):
    spec = get_spec(name)
    assert (spec.bn.eps, spec.bn.momentum) == (eps, momentum)
    assert getattr(spec, "init", None) == init
    bns = [m for m in build(spec).modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all((m.eps, m.momentum) == (eps, momentum) for m in bns)


def test_weight_init_schemes():
    torch.manual_seed(0)
    tv = build(get_spec("mobilenetv2_100")).head.classifier.weight
    assert tv.std().item() == pytest.approx(0.01, rel=0.05)
    mnas = build(get_spec("moga_a")).head.classifier.weight
    bound = 1 / math.sqrt(1000)
    assert mnas.abs().max().item() <= bound and mnas.abs().max().item() > 0.9 * bound
    conv = build(get_spec("moga_a")).blocks[1].project[0].weight  # 1x1, 144 -> 24 channels
    assert conv.std().item() == pytest.approx(math.sqrt(2 / 24), rel=0.1)


def test_lightnl_starts_as_identity_and_orders_agree():
    torch.manual_seed(0)
    nl = LightNL(16, 0.25, 2, norm=NORM)
    nl.zero_init()
    x = torch.randn(2, 16, 9, 9)
    assert torch.equal(nl(x), x)
    nn.init.normal_(nl.bn.weight)
    theta = x[:, :4].flatten(2).transpose(1, 2)
    xs = x[:, :, ::2, ::2]
    phi, g = xs[:, :4].flatten(2), xs.flatten(2).transpose(1, 2)
    a = torch.matmul(torch.matmul(theta, phi), g)
    b = torch.matmul(theta, torch.matmul(phi, g))
    assert torch.allclose(a, b, atol=1e-4)
    y = (a / 81).transpose(1, 2).reshape(2, 16, 9, 9)
    nl.eval()
    assert torch.allclose(nl(x), nl.bn(nl.dw(y)) + x, atol=1e-5)


def test_lightnl_macs_pick_the_cheaper_order():
    # 56x56x24, r = 0.25 (6 channels), stride 2: theta (phi^T g) is cheaper.
    n, n_sub = 56 * 56, 28 * 28
    assert lightnl_matmul_macs(24, 0.25, 2, 56, 56) == min(n * n_sub * (6 + 24),
                                                           6 * n_sub * 24 + n * 6 * 24)


def _ir(residual, cin, out, **kw):
    spec = InvertedResidualSpec(out=out, kernel=3, stride=1, expand=True, expansion=2.0,
                                act_expand="relu", act_dw="none", act_post="relu6",
                                residual=residual, **kw)
    return InvertedResidual(spec, cin, norm=NORM).eval()


def test_rexnet_partial_shortcut_adds_into_the_first_channels():
    torch.manual_seed(0)
    block = _ir("partial", 8, 12, se=SESpec(reduce=2, act="relu", gate="sigmoid", bn=True))
    x = torch.randn(2, 8, 7, 7)
    body = block.body(x)
    out = block(x)
    assert torch.allclose(out[:, :8], body[:, :8] + x) and torch.equal(out[:, 8:], body[:, 8:])


def test_sandglass_identity_tensor_multiplier():
    torch.manual_seed(0)
    spec = SandglassSpec(out=12, reduced=4, stride=1, kernel=3, form="full", act="relu6",
                         residual="identity", identity_div=3)
    block = Sandglass(spec, 12, norm=NORM).eval()
    x = torch.randn(2, 12, 5, 5)
    body, out = block.body(x), block(x)
    assert torch.allclose(out[:, :4], body[:, :4] + x[:, :4]) and torch.equal(out[:, 4:], body[:, 4:])


def test_mixed_kernel_fused_equals_the_official_unfused_sum():
    """AtomNAS: per-kernel 1x1 expand/dw/1x1 project groups summed, then one BN."""
    torch.manual_seed(0)
    spec = MixedKernelSpec(out=6, stride=2, kernels=[3, 5, 7], hidden=[4, 0, 3], expand=True,
                           act="relu", residual="none")
    block = MixedKernel(spec, 5, norm=NORM).eval()
    x = torch.randn(2, 5, 9, 9)
    w_exp, bn_exp = block.expand[0].weight, block.expand[1]
    w_proj, bn_proj = block.project[0].weight, block.project[1]
    total, start = 0, 0
    for dw, h in zip(block.dws, block.splits):
        sl = slice(start, start + h)
        e = torch.relu(nn.functional.batch_norm(
            nn.functional.conv2d(x, w_exp[sl]), bn_exp.running_mean[sl], bn_exp.running_var[sl],
            bn_exp.weight[sl], bn_exp.bias[sl], eps=bn_exp.eps))
        total = total + nn.functional.conv2d(dw(e), w_proj[:, sl])
        start += h
    assert torch.allclose(block(x), bn_proj(total), atol=1e-5)


def test_all_empty_mixed_block_is_identity():
    spec = MixedKernelSpec(out=5, stride=1, kernels=[3, 5], hidden=[0, 0], expand=True,
                           act="relu", residual="identity")
    x = torch.randn(1, 5, 4, 4)
    block = MixedKernel(spec, 5, norm=NORM)
    assert torch.equal(block(x), x) and not list(block.parameters())


def test_drop_path():
    torch.manual_seed(0)
    dp = DropPath(0.5)
    x = torch.ones(1000, 3)
    assert torch.equal(dp.eval()(x), x)
    y = dp.train()(x)
    assert set(y[:, 0].tolist()) == {0.0, 2.0} and torch.equal(y[:, 0], y[:, 2])
    assert y.mean().item() == pytest.approx(1.0, abs=0.1)


def test_unused_bn_is_frozen_and_counted():
    model = build(get_spec("mobilenext_effnet_b0", num_classes=10, input_size=32))
    assert not any(p.requires_grad for p in model.head.unused_bn.parameters())
    assert sum(p.numel() for p in model.head.unused_bn.parameters()) == 2560


@pytest.mark.parametrize("size", [(1, 1), (2, 2), (2, 3), (3, 1), (5, 5), (9, 9)])
@pytest.mark.parametrize("kernel,stride,groups", [(7, 1, 6), (7, 2, 6), (5, 2, 1), (3, 1, 6),
                                                  (1, 1, 1)])
def test_trimmed_conv_equals_conv2d_on_maps_smaller_than_the_kernel(size, kernel, stride, groups):
    torch.manual_seed(0)
    full = nn.Conv2d(6, 6, kernel, stride, kernel // 2, groups=groups, bias=True)
    trimmed = TrimmedConv2d(6, 6, kernel, stride, kernel // 2, groups=groups, bias=True)
    trimmed.load_state_dict(full.state_dict())
    x = torch.randn(2, 6, *size, requires_grad=True)
    x2 = x.detach().clone().requires_grad_()
    y, y2 = full(x), trimmed(x2)
    grad = torch.randn_like(y)
    y.backward(grad)
    y2.backward(grad)
    assert y2.shape == y.shape
    torch.testing.assert_close(y2, y)
    torch.testing.assert_close(x2.grad, x.grad)
    torch.testing.assert_close(trimmed.weight.grad, full.weight.grad)  # zeros on unused taps
    torch.testing.assert_close(trimmed.bias.grad, full.bias.grad)


def test_trimmed_conv_skips_the_taps_that_only_see_padding():
    assert _unused_taps(1, 7, 1, 3) == 3   # 1x1 map: only the centre tap
    assert _unused_taps(2, 7, 1, 3) == 2   # 2x2 map: the central 3x3
    assert _unused_taps(2, 7, 2, 3) == 2   # one output reads rows -3..3; 0..1 are real
    assert _unused_taps(4, 7, 1, 3) == 0
    assert _unused_taps(1, 1, 1, 0) == 0
    # a traced graph keeps the full kernel, so an exported model holds at any input size
    conv = TrimmedConv2d(4, 4, 7, 1, 3, groups=4, bias=False)
    traced = torch.jit.trace(conv, torch.randn(1, 4, 1, 1))
    x = torch.randn(1, 4, 9, 9)
    torch.testing.assert_close(traced(x), nn.functional.conv2d(x, conv.weight, None, 1, 3,
                                                                groups=4))
