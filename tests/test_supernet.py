"""The shared supernet abstraction on the MoGA space, and FairNAS strict fairness."""

import os
from collections import Counter

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from nas.arch.builder import build
from nas.arch.zoo import get_spec
from nas.arch.zoo.moga import GENES
from nas.cost import count
from nas.cost.measured import measure
from nas.methods.moga.fairnas import FairNASModule, fair_paths
from nas.methods.moga.search import moga_space
from nas.optim import OptimConfig
from nas.supernet.base import Supernet
from nas.methods.moga.supernet import ChainSupernet


@pytest.fixture(scope="module")
def space():
    return moga_space(width=0.25, stem_stride=1, num_classes=10, input_size=32)


def test_moga_space_encodes_the_published_genes():
    space = moga_space()
    assert space.n_choices == [12] * 14 and space.cardinality == 12 ** 14
    for name, genes in GENES.items():
        assert space.to_spec(genes, name=name) == get_spec(name)
        assert space.encode(space.decode(genes)) == genes


def test_sampling_is_reproducible_and_checked(space):
    a = space.sample(torch.Generator().manual_seed(3))
    assert a == space.sample(torch.Generator().manual_seed(3))
    assert all(0 <= v < 12 for v in a)
    with pytest.raises(ValueError, match="decision 'block3': index 12"):
        space.check([0, 0, 12] + [0] * 11)
    with pytest.raises(ValueError, match="expected 14 decisions"):
        space.check([0] * 13)


def test_sampled_specs_are_exact(space):
    supernet = ChainSupernet(space)
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        vector = space.sample(g)
        spec = space.to_spec(vector)
        path = supernet.path(vector)
        assert measure(path, 32) == count(spec)
        assert sum(p.numel() for p in path.parameters()) == count(spec).params


def test_exported_path_equals_the_supernet_path(space):
    torch.manual_seed(0)
    supernet = ChainSupernet(space)
    vector = space.sample(torch.Generator().manual_seed(1))
    batches = [(torch.randn(8, 3, 32, 32), None) for _ in range(3)]
    assert isinstance(supernet, Supernet)
    assert supernet.recalibrate(batches, steps=3, choice=vector) == 3
    exported = supernet.export(vector, name="found")
    spec, state = exported.spec, exported.state_dict
    model = build(spec)
    model.load_state_dict(state)
    x = torch.randn(4, 3, 32, 32)
    supernet.eval()
    model.eval()
    with torch.no_grad():
        assert torch.allclose(supernet(x, vector), model(x), atol=1e-5)
    assert spec.name == "found"


def test_fair_paths_cover_every_choice_once(space):
    paths = fair_paths(space, seed=0, step=7)
    assert len(paths) == 12
    for layer in range(len(space)):
        assert sorted(p[layer] for p in paths) == list(range(12))
    assert paths == fair_paths(space, seed=0, step=7) != fair_paths(space, seed=0, step=8)


def test_one_fairnas_step_trains_every_choice_block_exactly_once(space):
    module = FairNASModule(space, OptimConfig(), batch_size=2, seed=0)
    calls = Counter()
    for i, layer in enumerate(module.supernet.choices):
        for j, block in enumerate(layer):
            block.register_forward_hook(lambda m, inp, out, key=(i, j): calls.update([key]))
            for p in block.parameters():
                p.register_hook(lambda g, key=(i, j): calls.update([("grad",) + key]))
    x, y = torch.randn(24, 3, 32, 32), torch.randint(0, 10, (24,))
    module.training_step((x, y), 0).backward()
    for i in space.searchable:
        for j in range(12):
            assert calls[(i, j)] == 1
            n_params = len(list(module.supernet.choices[i][j].parameters()))
            assert calls[("grad", i, j)] == n_params  # one gradient contribution per tensor
    with pytest.raises(ValueError, match="cannot be split into 12"):
        module.training_step((x[:10], y[:10]), 0)


def _rank_paths(rank, world, port, space, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    module = FairNASModule(space, OptimConfig(), batch_size=2, seed=5)
    mine = [module.paths(step) for step in range(3)]
    gathered = [None] * world
    dist.all_gather_object(gathered, mine)
    if rank == 0:
        out.put(gathered)
    dist.destroy_process_group()


def test_sampling_is_identical_across_two_ranks(space):
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = 29500 + os.getpid() % 1000
    procs = [ctx.Process(target=_rank_paths, args=(r, 2, port, space, queue)) for r in range(2)]
    for p in procs:
        p.start()
    gathered = queue.get(timeout=120)
    for p in procs:
        p.join(timeout=60)
    assert gathered[0] == gathered[1]
