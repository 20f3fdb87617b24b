"""AtomNAS shrinkage: removing atoms keeps the function, the cost model, the optimizer state
and the EMA copy consistent."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from nas.arch.builder import build
from nas.arch.spec import (BatchNormSpec, ChainSpec, ConvSpec, HeadSpec, MixedKernelSpec,
                           SESpec)
from nas.arch.validate import validate
from nas.cost import count
from nas.memory_format import is_channels_last
from nas.optim import RMSpropTF
from nas.methods.atomnas.shrink import shrink_chain

KERNELS = [3, 5, 7]


def small_spec(se: bool = False) -> ChainSpec:
    """Stem 8, the fixed unexpanded block, a stride-2 block, two residual blocks, a widening one."""
    def block(out, stride, hidden, residual, expand=True):
        return MixedKernelSpec(out=out, stride=stride, kernels=list(KERNELS)[:len(hidden)],
                               hidden=hidden, expand=expand, act="relu", residual=residual,
                               se=SESpec(reduce=4, act="relu", gate="sigmoid") if se else None)

    return ChainSpec(
        name="shrink_test", num_classes=10, input_size=32,
        bn=BatchNormSpec(eps=1e-3, momentum=0.01), init="tf_mnas",
        stem=ConvSpec(out=8, kernel=3, stride=2, act="relu"),
        blocks=[block(8, 1, [8], "identity", expand=False),
                block(12, 2, [6, 5, 4], "none"),
                block(12, 1, [5, 4, 3], "identity"),
                block(12, 1, [4, 4, 4], "identity"),
                block(16, 1, [4, 3, 2], "none")],
        head=HeadSpec(pre_pool=[ConvSpec(out=32, act="relu")], dropout=0.0, classifier="linear"),
        drop_path=0.1)


@torch.no_grad()
def randomise(model: nn.Module, gen: torch.Generator) -> None:
    """BN stats, affine parameters and biases far from their init, so slicing errors show."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
            m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.5)
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.2)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
        elif isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None:
            m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.2)


def random_keep(model: nn.Module, gen: torch.Generator) -> dict[int, list[torch.Tensor]]:
    """Random masks for blocks 1-4, at least one atom kept per block, group 1 of block 2 emptied."""
    keep = {}
    for i in (1, 2, 3, 4):
        masks = [torch.rand(h, generator=gen) > 0.4 for h in model.blocks[i].splits]
        masks[0][0] = True
        keep[i] = masks
    keep[2][1][:] = False
    return keep


@torch.no_grad()
def kill(model: nn.Module, keep: dict[int, list[torch.Tensor]]) -> None:
    """Set the dw-BN gamma of every atom to be removed to exactly 0 (a dead atom)."""
    for i, masks in keep.items():
        for dw, m in zip(model.blocks[i].dws, masks):
            dw[1].weight[~m] = 0.0


# The networks run in float64: a shrunk network differs from the original by rounding only
# (measured max |diff| ~4e-16 on outputs of magnitude ~1), so `atol=1e-10, rtol=0` below is
# far above float64 rounding on any CPU and far below what a wrongly removed atom changes.
def setup(seed: int = 0, se: bool = False):
    torch.manual_seed(seed)  # drop path draws from the global generator in train mode
    gen = torch.Generator().manual_seed(seed)
    spec = small_spec(se)
    model = build(spec).double().eval()
    randomise(model, gen)
    x = torch.randn(4, 3, 32, 32, generator=gen, dtype=torch.float64)
    return spec, model, random_keep(model, gen), x


def sliced_expected(old: dict[str, torch.Tensor], name: str, masks: list[torch.Tensor]
                    ) -> torch.Tensor:
    """The old tensor a new parameter/state should equal, worked out independently here."""
    kept = torch.cat(masks)
    if name.startswith("expand."):
        return old[name][kept]
    if name.startswith("dws."):
        _, n, rest = name.split(".", 2)
        survivors = [j for j, m in enumerate(masks) if m.any()]
        j = survivors[int(n)]
        return old[f"dws.{j}.{rest}"][masks[j]]
    if name == "project.0.weight":
        return old[name][:, kept]
    return old[name]


def test_function_kept_with_group_removed_and_zero_constant_identity():
    spec, model, keep, x = setup()
    keep[3] = [torch.zeros(4, dtype=torch.bool)] * 3  # block 3 becomes the identity
    kill(model, keep)
    with torch.no_grad():  # block 3's branch is then the constant project_bn(...); make it 0
        model.blocks[3].project[1].weight.zero_()
        model.blocks[3].project[1].bias.zero_()
    ref = model(x)
    unfolded = copy.deepcopy(model)

    new_spec = shrink_chain(model, spec, keep)

    assert new_spec.blocks[2].hidden[1] == 0 and len(model.blocks[2].dws) == 2
    assert new_spec.blocks[3].hidden == [0, 0, 0] and model.blocks[3].is_identity
    assert model.spec is new_spec and spec.blocks[3].hidden == [4, 4, 4]  # input spec untouched
    assert model.blocks[1].expand[0].weight.dtype == torch.float64
    assert torch.allclose(model(x), ref, atol=1e-10, rtol=0)
    # the fold is what makes it exact: without it the removed atoms' beta is lost
    shrink_chain(unfolded, spec, keep, fold=False)
    assert not torch.allclose(unfolded(x), ref, atol=1e-3)


def test_identity_conversion_drops_the_branch_constant():
    """Documented behaviour: the block's eval-mode output x + c becomes x (c != 0 here)."""
    spec, model, keep, x = setup(seed=1)
    keep[3] = [torch.zeros(4, dtype=torch.bool)] * 3
    kill(model, keep)
    without_branch = copy.deepcopy(model)
    without_branch.blocks[3] = nn.Identity()
    with torch.no_grad():
        assert not torch.allclose(model(x), without_branch(x), atol=1e-3)
        expected = without_branch(x)

    shrink_chain(model, spec, keep)

    assert torch.allclose(model(x), expected, atol=1e-10, rtol=0)


def test_se_blocks_are_sliced_and_not_folded():
    """With an SE the fold is skipped; atoms whose act(beta) is 0 are still removed exactly."""
    spec, model, keep, x = setup(seed=2, se=True)
    kill(model, keep)
    with torch.no_grad():
        for i, masks in keep.items():
            for dw, m in zip(model.blocks[i].dws, masks):
                dw[1].bias[~m] = -1.0  # relu(-1) = 0: a removed atom contributes nothing
    mean_before = model.blocks[2].project[1].running_mean.clone()
    ref = model(x)

    new_spec = shrink_chain(model, spec, keep)

    assert torch.equal(model.blocks[2].project[1].running_mean, mean_before)
    assert model.blocks[2].se.expand.weight.shape[0] == sum(new_spec.blocks[2].hidden)
    assert sum(p.numel() for p in model.parameters()) == count(new_spec).params
    assert torch.allclose(model(x), ref, atol=1e-10, rtol=0)


def test_params_spec_and_strict_reload_agree():
    spec, model, keep, _ = setup(seed=3)
    keep[3] = [torch.zeros(4, dtype=torch.bool)] * 3
    drop = [getattr(b.drop_path, "p", None) for b in model.blocks]
    before = count(spec).params

    new_spec = shrink_chain(model, spec, keep)

    validate(new_spec)
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params == count(new_spec).params < before
    build(new_spec).load_state_dict(model.state_dict(), strict=True)
    assert [getattr(b.drop_path, "p", None) for b in model.blocks] == drop
    bn = model.blocks[1].expand[1]
    assert (bn.eps, bn.momentum) == (1e-3, 0.01)


@pytest.mark.parametrize("make_opt", [
    lambda ps: RMSpropTF(ps, lr=0.01, momentum=0.9),
    lambda ps: torch.optim.SGD(ps, lr=0.01, momentum=0.9),
    lambda ps: torch.optim.Adam(ps, lr=0.01),
], ids=["rmsprop_tf", "sgd", "adam"])
def test_optimizer_state_follows(make_opt):
    spec, model, keep, x = setup(seed=4)
    keep[3] = [torch.zeros(4, dtype=torch.bool)] * 3  # its params leave the optimizer
    model.train()
    opt = make_opt(list(model.parameters()))
    model(x).square().mean().backward()
    opt.step()
    old_params = {i: {n: p.detach().clone() for n, p in model.blocks[i].named_parameters()}
                  for i in keep}
    old_states = {i: {n: {k: v.clone() for k, v in opt.state[p].items()}
                      for n, p in model.blocks[i].named_parameters()} for i in keep}
    stem_w = model.stem[0].weight
    stem_state = opt.state[stem_w]

    shrink_chain(model, spec, keep, optimizers=[opt])

    for i, masks in keep.items():
        for name, p in model.blocks[i].named_parameters():
            assert torch.equal(p.detach(), sliced_expected(old_params[i], name, masks)), name
            state = opt.state[p]
            assert state, name
            for key, value in state.items():
                old = {n: s[key] for n, s in old_states[i].items()}
                if value.shape == p.shape:
                    assert torch.equal(value, sliced_expected(old, name, masks)), (name, key)
                else:  # e.g. Adam's step counter, carried over
                    assert torch.equal(value, old_states[i][name][key]), (name, key)
    in_opt = [p for g in opt.param_groups for p in g["params"]]
    assert {id(p) for p in in_opt} == {id(p) for p in model.parameters()}
    assert len(in_opt) == len(list(model.parameters()))
    assert len(opt.state) == len(in_opt)
    assert model.stem[0].weight is stem_w and opt.state[stem_w] is stem_state

    opt.zero_grad()
    w = model.blocks[2].expand[0].weight.detach().clone()
    model(x).square().mean().backward()
    opt.step()
    assert not torch.equal(model.blocks[2].expand[0].weight.detach(), w)


def test_rebuilt_blocks_and_their_optimizer_state_keep_the_memory_format():
    spec, model, keep, x = setup(seed=6)
    model.to(memory_format=torch.channels_last)
    opt = RMSpropTF(list(model.parameters()), lr=0.01, momentum=0.9)
    model.train()
    model(x).square().mean().backward()
    opt.step()
    model.eval()
    kill(model, keep)
    ref = model(x)

    shrink_chain(model, spec, keep, optimizers=[opt], memory_format=torch.channels_last)

    for i in keep:
        weights = [p for p in model.blocks[i].parameters() if p.dim() == 4]
        assert weights and all(is_channels_last(p) for p in weights), i
        for p in weights:
            assert all(v.stride() == p.stride() for v in opt.state[p].values()
                       if isinstance(v, torch.Tensor) and v.shape == p.shape), i
    assert torch.allclose(model(x), ref, atol=1e-10, rtol=0)


def test_ema_copy_gets_the_same_structure():
    spec, model, keep, _ = setup(seed=5)
    ema = copy.deepcopy(model)
    with torch.no_grad():  # an EMA differs in values, not in structure
        for p in ema.parameters():
            p.mul_(0.9)

    new_spec = shrink_chain(model, spec, keep)
    ema_spec = shrink_chain(ema, spec, keep)

    assert ema_spec == new_spec
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    assert {k: v.shape for k, v in ema.state_dict().items()} == shapes


def _masks(*sizes, value=True):
    return [torch.full((s,), value, dtype=torch.bool) for s in sizes]


@pytest.mark.parametrize("keep, message", [
    ({2: _masks(5, 4)}, "block 2: expected a list of 3 masks"),
    ({2: _masks(5, 4, 4)}, "block 2, group 2: expected a 1-D bool mask of 3 entries"),
    ({2: [torch.ones(5), *_masks(4, 3)]}, "block 2, group 0: expected a 1-D bool mask"),
    ({2: [torch.ones(5, 1, dtype=torch.bool), *_masks(4, 3)]}, "1-D bool mask of 5 entries"),
    ({0: _masks(8)}, "block 0: has no expand conv"),
    ({1: _masks(6, 5, 4, value=False)}, "block 1: every atom removed"),
    ({4: _masks(4, 3, 2, value=False)}, "block 4: every atom removed"),
    ({7: _masks(4, 3, 2)}, "block index 7 is not in range"),
])
def test_bad_keep_raises_one_line_and_changes_nothing(keep, message):
    spec, model, _, _ = setup(seed=6)
    good = {3: _masks(4, 4, 4)}  # valid, checked first: must not be applied either
    blocks = list(model.blocks)
    state = {k: v.clone() for k, v in model.state_dict().items()}

    with pytest.raises(ValueError, match=message) as err:
        shrink_chain(model, spec, {**good, **keep})

    assert "\n" not in str(err.value)
    assert list(model.blocks) == blocks
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
