"""AtomNAS atom bookkeeping: per-atom costs, penalty normalisers and weights, the L1 penalty,
the dead-atom rule and the shrink keep masks; plus the width / stem options of the supernet."""

import dataclasses

import pytest
import torch

from nas.arch.builder import build
from nas.arch.shapes import iter_blocks
from nas.arch.validate import validate
from nas.arch.zoo.atomnas import atomnas_supernet
from nas.cost.analytic import count
from nas.methods.atomnas.atoms import (atom_groups, dead_atoms, dead_macs, ema_decay_for_batch,
                                importance, keep_masks, penalty, penalty_normaliser,
                                penalty_weights, rho)


def _tiny_spec():
    """A small supernet (width 0.25, 32x32, CIFAR stem) that builds and runs fast."""
    return atomnas_supernet(width=0.25, stem_stride=1, input_size=32, num_classes=10)


def _groups_of(groups, block):
    return [g for g in groups if g.block == block]


def test_per_atom_cost_by_hand():
    groups = atom_groups(atomnas_supernet())
    # Block 1: 16 channels at 112x112 in, stride 2 -> 56x56, 24 out.
    first = _groups_of(groups, 1)
    assert [(g.kernel, g.channels) for g in first] == [(3, 96), (5, 96), (7, 96)]
    assert [g.cost for g in first] == [
        16 * 112 * 112 + 9 * 56 * 56 + 24 * 56 * 56,   # 304,192
        16 * 112 * 112 + 25 * 56 * 56 + 24 * 56 * 56,  # 354,368
        16 * 112 * 112 + 49 * 56 * 56 + 24 * 56 * 56,  # 429,632
    ]
    assert first[0].cost == 304_192
    # Block 21 (last): 192 channels at 7x7, stride 1, 320 out.
    last = _groups_of(groups, 21)
    assert [(g.kernel, g.channels) for g in last] == [(3, 1152), (5, 1152), (7, 1152)]
    assert [g.cost for g in last] == [25_529, 26_313, 27_489]
    assert 25_529 == 192 * 49 + 9 * 49 + 320 * 49


def test_atom_count_and_first_block_skipped():
    spec = atomnas_supernet()
    groups = atom_groups(spec)
    assert sum(g.channels for g in groups) == 31_392
    assert min(g.block for g in groups) == 1
    assert sorted({g.block for g in groups}) == list(range(1, 22))
    assert len(groups) == 21 * 3
    # The stem width does not change the searchable blocks.
    assert sum(g.channels for g in atom_groups(atomnas_supernet(16))) == 31_392


def test_empty_groups_renumber_and_keep_their_costs():
    spec = _tiny_spec()
    before = {(g.block, g.kernel): g.cost for g in atom_groups(spec)}
    blocks = list(spec.blocks)
    blocks[3] = dataclasses.replace(blocks[3], hidden=[0, 5, 7])
    shrunk = dataclasses.replace(spec, blocks=blocks)
    groups = atom_groups(shrunk)
    b3 = _groups_of(groups, 3)
    assert [(g.group, g.kernel, g.channels) for g in b3] == [(0, 5, 5), (1, 7, 7)]
    assert all(g.cost == before[(g.block, g.kernel)] for g in groups)
    # Group indices address MixedKernel.dws of the built model.
    model = build(shrunk)
    for g in groups:
        conv = model.blocks[g.block].dws[g.group][0]
        assert conv.kernel_size == (g.kernel, g.kernel)
        assert conv.out_channels == g.channels


def test_normalisers_and_weights():
    groups = atom_groups(atomnas_supernet())
    atoms = sum(g.channels for g in groups)
    mean = penalty_normaliser(groups, "mean")
    total = penalty_normaliser(groups, "sum")
    assert total == sum(g.cost * g.channels for g in groups)
    assert total / mean == pytest.approx(atoms, rel=1e-12)
    # Mean-normalised weights average to 1 over the atoms.
    w = penalty_weights(groups, "mean", mean)
    assert sum(wi * g.channels for wi, g in zip(w, groups)) / atoms == pytest.approx(1.0)
    assert w[0] == pytest.approx(304_192 / mean)
    w_sum = penalty_weights(groups, "sum", total)
    assert w_sum[0] == pytest.approx(w[0] / atoms)
    assert penalty_normaliser(groups, "equal") == 1.0
    assert penalty_weights(groups, "equal", 1.0) == [1.0] * len(groups)
    with pytest.raises(ValueError):
        penalty_normaliser(groups, "median")


def test_rho_and_ema_decay():
    assert rho(0, 1e-4, 100) == 0.0
    assert rho(25, 1e-4, 100) == pytest.approx(2.5e-5)
    assert rho(100, 1e-4, 100) == pytest.approx(1e-4)
    assert rho(5000, 1e-4, 100) == pytest.approx(1e-4)
    assert rho(0, 1e-4, 0) == pytest.approx(1e-4)
    assert ema_decay_for_batch(0.9999, 2048) == pytest.approx(0.9999 ** 0.5, rel=1e-15)
    assert ema_decay_for_batch(0.9999, 2048) == pytest.approx(0.99995, abs=2e-9)
    assert ema_decay_for_batch(0.9999, 4096) == 0.9999


def test_penalty_matches_hand_loop_and_has_gradients_only_on_dw_bn():
    torch.manual_seed(0)
    spec = _tiny_spec()
    model = build(spec)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(-1.0, 1.0)
    groups = atom_groups(spec)
    weights = penalty_weights(groups, "mean", penalty_normaliser(groups, "mean"))
    cost = {(g.block, g.group): w for g, w in zip(groups, weights)}

    expected = 0.0
    dw_bn = set()
    for i, blk in enumerate(model.blocks):
        if i == 0:  # the fixed unexpanded block is not penalised
            continue
        for j, dw in enumerate(blk.dws):
            bn = dw[1]
            assert isinstance(bn, torch.nn.BatchNorm2d)
            dw_bn.add(id(bn.weight))
            for a in bn.weight.tolist():
                expected += cost[(i, j)] * abs(a)

    p = penalty(model, groups, weights)
    assert p.item() == pytest.approx(expected, rel=1e-5)
    p.backward()
    for name, param in model.named_parameters():
        if id(param) in dw_bn:
            assert param.grad is not None, name
        else:
            assert param.grad is None, name
    g = groups[4]
    bn = model.blocks[g.block].dws[g.group][1]
    assert torch.allclose(bn.weight.grad, weights[4] * bn.weight.detach().sign())

    alpha = importance(model, groups)
    assert len(alpha) == len(groups)
    assert not alpha[4].requires_grad
    assert torch.equal(alpha[4], bn.weight.detach())


def test_dead_atoms_needs_both_below():
    alpha = [torch.tensor([0.0, 5e-4, 0.5, 1e-3])]
    ema = [torch.tensor([1e-6, 0.5, 5e-4, -1e-3])]
    assert dead_atoms(alpha, ema)[0].tolist() == [True, False, False, True]
    # EMA criterion only (last epoch).
    assert dead_atoms(None, ema)[0].tolist() == [True, False, True, True]
    assert dead_atoms(alpha, ema, threshold=1e-5)[0].tolist() == [True, False, False, False]


def test_dead_macs():
    groups = atom_groups(atomnas_supernet())
    dead = [torch.zeros(g.channels, dtype=torch.bool) for g in groups]
    dead[0][:3] = True   # block 1, k3: 304,192 each
    dead[2][7] = True    # block 1, k7: 429,632
    dead[-1][0] = True   # block 21, k7: 27,489
    assert dead_macs(groups, dead) == 3 * 304_192 + 429_632 + 27_489
    assert dead_macs(groups, [torch.zeros(g.channels, dtype=torch.bool) for g in groups]) == 0


def test_keep_masks_keeps_one_atom_in_stride2_block_and_lets_residual_block_go():
    spec = atomnas_supernet()
    groups = atom_groups(spec)
    torch.manual_seed(0)
    alpha = [torch.rand(g.channels) * 1e-4 for g in groups]
    dead = [torch.zeros(g.channels, dtype=torch.bool) for g in groups]
    b1 = [j for j, g in enumerate(groups) if g.block == 1]   # stride 2, 16 -> 24
    b2 = [j for j, g in enumerate(groups) if g.block == 2]   # stride 1, 24 -> 24
    b3 = [j for j, g in enumerate(groups) if g.block == 3]
    for j in b1 + b2:
        dead[j][:] = True
    alpha[b1[2]][5] = -5e-4  # the largest |alpha| in block 1
    dead[b3[1]][:4] = True

    masks = keep_masks(spec, groups, dead, alpha)
    assert set(masks) == {1, 2, 3}
    assert [int(m.sum()) for m in masks[1]] == [0, 0, 1]
    assert bool(masks[1][2][5])
    assert all(int(m.sum()) == 0 for m in masks[2])
    assert [int(m.sum()) for m in masks[3]] == [groups[b3[0]].channels,
                                                groups[b3[1]].channels - 4,
                                                groups[b3[2]].channels]
    assert not masks[3][1][:4].any()
    assert dead[b1[2]][5]  # the dead masks are not modified


def test_supernet_width_and_stem_options():
    for width in (0.25, 0.5):
        for stem_stride in (1, 2):
            spec = atomnas_supernet(width=width, stem_stride=stem_stride, input_size=32,
                                    num_classes=10)
            validate(spec)
            c = count(spec)
            assert c.macs > 0 and c.params > 0
            assert spec.stem.stride == stem_stride
            assert spec.head.pre_pool[0].out == 1280
            for i, block, cin, _ in iter_blocks(spec):
                assert block.out % 8 == 0
                if i > 0:
                    assert block.hidden == [6 * cin] * 3
    half = atomnas_supernet(width=0.5, stem_stride=1, input_size=32)
    assert half.stem.out == 16
    assert [b.out for b in half.blocks][:7] == [8, 16, 16, 16, 16, 24, 24]
    assert half.blocks[-1].out == 160
    # The CIFAR stem keeps 32x32 for the first block.
    assert next(iter_blocks(half))[3] == 32
    assert next(iter_blocks(atomnas_supernet(width=0.5, input_size=32)))[3] == 16
    # Defaults unchanged.
    c = count(atomnas_supernet())
    assert (c.params, c.macs) == (11_242_152, 1_520_973_056)
    assert count(atomnas_supernet(width=1.0, stem_stride=2)).macs == 1_520_973_056
