"""DARTS evaluation network: official parameter count, analytic == measured cost, forward."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nas.arch.builder import build
from nas.arch.validate import validate
from nas.arch.zoo import entry, get_spec
from nas.cost import count
from nas.cost.cells import auxiliary_params, cell_cost
from nas.cost.measured import measure
from nas.ops.darts import CellNet, FactorizedReduce

GENOTYPES = ("darts_v1", "darts_v2")


@pytest.fixture(scope="module", params=GENOTYPES)
def spec_and_model(request):
    spec = get_spec(request.param)
    return spec, build(spec)


def test_darts_v2_official_param_count():
    spec = get_spec("darts_v2")
    model = build(spec)
    assert isinstance(model, CellNet)
    assert entry("darts_v2").official_params == 3_349_342
    assert count(spec).params == 3_349_342  # auxiliary head excluded, as the official count
    assert measure(model, 32).params == 3_349_342
    assert auxiliary_params(spec) == 476_426
    assert sum(p.numel() for p in model.auxiliary_head.parameters()) == 476_426
    assert sum(p.numel() for p in model.parameters()) == 3_349_342 + 476_426


def test_auxiliary_params_zero_without_head():
    spec = dataclasses.replace(get_spec("darts_v2"), auxiliary=False)
    assert auxiliary_params(spec) == 0
    assert build(spec).auxiliary_head is None
    assert cell_cost(spec) == cell_cost(get_spec("darts_v2"))


@pytest.mark.parametrize("size", [32, 64])
def test_analytic_equals_measured(spec_and_model, size):
    spec, model = spec_and_model
    analytic = cell_cost(spec, size)
    measured = measure(model, size)
    assert (analytic.params, analytic.params_nobn, analytic.macs) == \
        (measured.params, measured.params_nobn, measured.macs)
    assert analytic.extra_macs == measured.extra_macs == 0
    assert count(spec, size) == analytic


def test_zoo_entries_validate():
    for name in GENOTYPES:
        spec = get_spec(name)
        validate(spec)
        e = entry(name)
        assert (e.num_classes, e.input_size) == (10, 32)
        assert (spec.init_channels, spec.layers, spec.auxiliary, spec.drop_path) == (36, 20, True, 0.2)
        assert get_spec(name).genotype is not spec.genotype  # fresh, mutable copies


def test_train_forward_backward_with_aux():
    torch.manual_seed(0)
    model = build(get_spec("darts_v2")).train()
    model.drop_path_prob = 0.2
    x = torch.randn(2, 3, 32, 32)
    y = torch.tensor([1, 7])
    logits, aux = model(x)
    assert logits.shape == aux.shape == (2, 10)
    loss = nn.functional.cross_entropy(logits, y) + 0.4 * nn.functional.cross_entropy(aux, y)
    loss.backward()
    assert torch.isfinite(loss)
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing
    assert all(p.grad is not None for p in model.auxiliary_head.parameters())


def test_eval_output_and_determinism():
    torch.manual_seed(0)
    spec = get_spec("darts_v1", num_classes=7)
    model = build(spec).eval()
    model.drop_path_prob = 0.3  # ignored in eval
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        a, b = model(x), model(x)
    assert isinstance(a, torch.Tensor) and a.shape == (3, 7)
    assert torch.equal(a, b)


def test_train_without_aux_returns_logits_and_drop_path_is_runtime():
    torch.manual_seed(0)
    spec = dataclasses.replace(get_spec("darts_v2"), auxiliary=False, layers=5, init_channels=8)
    model = build(spec).train()
    x = torch.randn(4, 3, 32, 32)
    model.drop_path_prob = 0.0
    out = model(x)
    assert isinstance(out, torch.Tensor) and out.shape == (4, 10)
    assert torch.equal(out, model(x))  # no randomness without drop path (batch-stat BN)
    model.drop_path_prob = 0.5
    torch.manual_seed(1)
    assert not torch.allclose(out, model(x))


def test_reduction_cells_and_shapes():
    spec = get_spec("darts_v2")
    model = build(spec).eval()
    assert [i for i, c in enumerate(model.cells) if c.reduction] == [6, 13]
    sizes = []
    hooks = [c.register_forward_hook(lambda m, i, o: sizes.append(tuple(o.shape[1:])))
             for c in model.cells]
    with torch.no_grad():
        model(torch.zeros(1, 3, 32, 32))
    for h in hooks:
        h.remove()
    assert sizes[0] == (144, 32, 32)
    assert sizes[6] == (288, 16, 16)
    assert sizes[13] == (576, 8, 8)
    assert sizes[-1] == (576, 8, 8)
    assert model.classifier.in_features == 576


def test_factorized_reduce_shape():
    fr = FactorizedReduce(8, 12, nn.BatchNorm2d)
    out = fr(torch.randn(2, 8, 16, 16))
    assert out.shape == (2, 12, 8, 8)
    assert sum(p.numel() for p in fr.parameters()) == 2 * 8 * 6 + 2 * 12
    with pytest.raises(ValueError):
        FactorizedReduce(8, 7, nn.BatchNorm2d)


@pytest.mark.parametrize("channels_last", [False, True])
def test_factorized_reduce_is_the_official_strided_convs(channels_last):
    """Every other pixel at stride 1 (our form) against the official 1x1 stride-2 convs, same
    weights; 4 input channels, where oneDNN's channels-last strided backward broke on AVX2."""
    fr = FactorizedReduce(4, 6, nn.BatchNorm2d).eval()
    x = torch.randn(2, 4, 8, 8)
    if channels_last:
        fr, x = fr.to(memory_format=torch.channels_last), x.contiguous(
            memory_format=torch.channels_last)
    x.requires_grad_()
    fr(x).sum().backward()
    relu = x.detach().relu()
    official = torch.cat([F.conv2d(relu, fr.conv_1.weight, stride=2),
                          F.conv2d(relu[:, :, 1:, 1:], fr.conv_2.weight, stride=2)], dim=1)
    # Two kernels summing 4 products each: float32 rounding only.
    torch.testing.assert_close(fr(x), fr.bn(official), rtol=1e-5, atol=1e-6)
    assert x.grad.shape == x.shape


def test_reduce_concat_of_inputs_rejected():
    spec = get_spec("darts_v2")
    spec.genotype.reduce_concat = [0, 2, 3, 4, 5]
    with pytest.raises(ValueError):
        build(spec)
