"""Weight-entangled choices: each candidate is the expected slice of its layer's one block,
gradients land only in the slices that ran, a path exports to exactly the stand-alone
network, and FairNAS still trains every choice once per step."""

from collections import Counter

import pytest
import torch

from nas.arch.builder import build
from nas.arch.zoo.moga import decode_gene
from nas.methods.moga.fairnas import FairNASModule
from nas.cost import count
from nas.methods.moga.search import largest_path, moga_space
from nas.optim import OptimConfig
from nas.supernet.base import Supernet
from nas.methods.moga.supernet import ChainSupernet
from nas.methods.moga.entangled import SharedBlock, SlicedChoice, largest, slice_to


@pytest.fixture(scope="module")
def space():
    return moga_space(width=0.25, stem_stride=1, num_classes=10, input_size=32)


@pytest.fixture()
def supernet(space):
    torch.manual_seed(0)
    return ChainSupernet(space, "entangled")


def test_one_block_per_layer_holds_every_choice(space, supernet):
    shared = [layer for layer in supernet.choices if isinstance(layer, SharedBlock)]
    assert len(shared) == 14
    # exactly the parameters of the path with every layer's largest choice
    assert sum(p.numel() for p in supernet.parameters()) == count(largest_path(space)).params
    layer = supernet.choices[1]
    full = layer.full
    assert full.dw[0].weight.shape[-1] == 7 and not isinstance(full.se, torch.nn.Identity)
    assert largest(layer.candidates, layer.cin).expansion == 6.0


def test_a_choice_is_the_expected_slice(space, supernet):
    layer = supernet.choices[3]
    full = layer.full.state_dict()
    for gene in range(12):
        kernel, t, se = decode_gene(gene)
        hidden = layer.cin * t
        sliced = layer.choice(gene).state_dict()
        assert torch.equal(sliced["expand.0.weight"], full["expand.0.weight"][:hidden])
        assert torch.equal(sliced["expand.1.running_var"], full["expand.1.running_var"][:hidden])
        lo = (7 - kernel) // 2
        assert torch.equal(sliced["dw.0.weight"],
                           full["dw.0.weight"][:hidden, :, lo:lo + kernel, lo:lo + kernel])
        assert torch.equal(sliced["project.0.weight"], full["project.0.weight"][:, :hidden])
        assert torch.equal(sliced["project.1.weight"], full["project.1.weight"])
        assert ("se.reduce.0.weight" in sliced) == se
        if se:
            r = hidden // 4
            assert torch.equal(sliced["se.reduce.0.weight"], full["se.reduce.0.weight"][:r, :hidden])
            assert torch.equal(sliced["se.expand.weight"], full["se.expand.weight"][:hidden, :r])
    assert slice_to(torch.arange(49.).view(1, 1, 7, 7), (1, 1, 1, 1)).item() == 24.0


def test_gradients_land_only_in_the_slices_that_ran(space, supernet):
    vector = [0] * 14                       # kernel 3, expansion 3, no SE everywhere
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    torch.nn.functional.cross_entropy(supernet(x, vector), y).backward()
    full = supernet.choices[5].full
    hidden = supernet.choices[5].cin * 3
    expand = full.expand[0].weight.grad
    assert expand[:hidden].abs().sum() > 0 and expand[hidden:].abs().sum() == 0
    dw = full.dw[0].weight.grad
    assert dw[:hidden, :, 2:5, 2:5].abs().sum() > 0
    # Everything outside the 3x3 centre of the first `hidden` channels is exactly zero (not:
    # two float32 sums over different views agree, which depends on the summation order).
    outside = torch.ones_like(dw, dtype=torch.bool)
    outside[:hidden, :, 2:5, 2:5] = False
    assert torch.count_nonzero(dw[outside]) == 0
    assert full.project[0].weight.grad[:, hidden:].abs().sum() == 0
    assert all(p.grad is None for p in full.se.parameters())


def test_exported_path_equals_the_supernet_path(space, supernet):
    assert isinstance(supernet, Supernet)
    batches = [(torch.randn(8, 3, 32, 32), None) for _ in range(3)]
    for seed in range(3):
        vector = space.sample(torch.Generator().manual_seed(seed))
        supernet.train()
        assert supernet.recalibrate(batches, steps=3, choice=vector) == 3
        exported = supernet.export(vector, name="found")
        model = build(exported.spec)
        model.load_state_dict(exported.state_dict)         # strict: every key and shape
        x = torch.randn(4, 3, 32, 32)
        supernet.eval()
        model.eval()
        with torch.no_grad():
            assert torch.allclose(supernet(x, vector), model(x), atol=1e-5)
        assert exported.spec == space.to_spec(vector, name="found")


def test_fairnas_trains_every_entangled_choice_once_per_step(space, monkeypatch):
    module = FairNASModule(space, OptimConfig(), batch_size=2, seed=0, weights="entangled")
    calls = Counter()
    forward = SlicedChoice.forward

    def counted(self, x):
        index = next(i for i, layer in enumerate(module.supernet.choices) if layer is self.shared)
        calls.update([(index, self.k)])
        return forward(self, x)

    monkeypatch.setattr(SlicedChoice, "forward", counted)
    x, y = torch.randn(24, 3, 32, 32), torch.randint(0, 10, (24,))
    module.training_step((x, y), 0).backward()
    assert calls == Counter({(i, k): 1 for i in space.searchable for k in range(12)})
    assert all(p.grad is not None for p in module.supernet.parameters())


def test_unknown_weights_mode_is_refused(space):
    with pytest.raises(ValueError, match="weights: expected one of independent, entangled"):
        ChainSupernet(space, "shared")
