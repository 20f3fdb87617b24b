"""DARTS search (nas.methods.darts.search, nas.methods.darts.cells): derivation, the search network,
first- and second-order architecture gradients, the MobileNeXt cell ops, and end to end."""

import csv
import dataclasses
import json
import shlex

import pytest
import torch
from conftest import interrupt_in_second_epoch, search_context

from nas.arch import io
from nas.arch.builder import build
from nas.arch.spec import GenotypeSpec
from nas.arch.zoo.darts import darts
from nas.config import ConfigError
from nas.cost import count
from nas.methods.darts.search import DartsConfig, parameter_free
from nas.methods.darts.grad import HVP_EPS, exact_second_order, first_order, second_order
from nas.supernet.base import Supernet
from nas.methods.darts.cells import (DARTS_OPS, CellSearchSpace, CellSupernet, derive, edge_inputs,
                                parse_ops)


def _space(ops=DARTS_OPS, input_size=32):
    return CellSearchSpace(ops, darts("darts_v2", input_size=input_size))


def test_edges_follow_the_official_order():
    assert edge_inputs()[:5] == [(2, 0), (2, 1), (3, 0), (3, 1), (3, 2)]
    assert len(edge_inputs()) == 14 and edge_inputs()[-1] == (5, 4)


def test_derivation_on_hand_made_weights():
    ops = DARTS_OPS
    k = {op: i for i, op in enumerate(ops)}
    w = torch.full((14, len(ops)), 0.01)
    # Node 2 (edges 0, 1): both inputs kept; `none` is ignored even when it is the largest.
    w[0, k["none"]], w[0, k["sep_conv_3x3"]] = 0.9, 0.3
    w[1, k["max_pool_3x3"]] = 0.5
    # Node 3 (edges 2-4): inputs 2 and 0 are strongest, listed strongest first.
    w[2, k["dil_conv_5x5"]], w[3, k["skip_connect"]], w[4, k["sep_conv_5x5"]] = 0.4, 0.1, 0.6
    # Node 4 (edges 5-8), node 5 (edges 9-13): a tie keeps the earlier input and op.
    w[5, k["avg_pool_3x3"]] = w[6, k["avg_pool_3x3"]] = 0.2
    w[9, k["dil_conv_3x3"]] = w[9, k["sep_conv_3x3"]] = 0.7
    w[13, k["skip_connect"]] = 0.8
    assert derive(w, ops) == [
        ("max_pool_3x3", 1), ("sep_conv_3x3", 0),
        ("sep_conv_5x5", 2), ("dil_conv_5x5", 0),
        ("avg_pool_3x3", 0), ("avg_pool_3x3", 1),
        ("skip_connect", 4), ("sep_conv_3x3", 0)]


def test_search_network_parameter_count_is_the_official_one():
    """quark0/darts model_search.Network(16, 10, 8) logs 'param size = 1.930618MB' (the
    architecture tensors are not parameters there)."""
    net = CellSupernet(_space(), channels=16, layers=8)
    assert sum(p.numel() for p in net.weight_parameters()) == 1_930_618
    assert [tuple(a.shape) for a in net.arch_parameters()] == [(14, 8), (14, 8)]
    assert float(net.alphas_normal.std()) < 5e-3  # initialised 1e-3 N(0, 1)
    # Cell BNs have no affine parameters; only the stem's BN does, as officially.
    affine = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d) and m.affine]
    assert affine == [net.stem[1]]


def test_the_search_network_implements_the_supernet_protocol():
    net = CellSupernet(_space(input_size=16), channels=4, layers=3)
    assert isinstance(net, Supernet)
    exported = net.export(name="found")
    assert exported.state_dict is None and exported.spec.name == "found"
    assert exported.spec.genotype == net.genotype()
    assert net.space.genotype(net.space.vector(net.genotype())) == net.genotype()
    assert net.recalibrate([(torch.randn(4, 3, 16, 16), None)] * 2, steps=2) == 2
    assert build(exported.spec)(torch.randn(2, 3, 16, 16)).shape == (2, 10)


def test_parse_ops():
    assert parse_ops("darts") == DARTS_OPS
    assert parse_ops("darts+sandglass")[-1] == "sandglass"
    assert parse_ops("none+sep_conv_3x3+inverted_residual") == \
        ("none", "sep_conv_3x3", "inverted_residual")
    # MobileNeXt's two readings of "+IR": one more candidate, or in sep_conv_3x3's place.
    assert parse_ops("darts+ir_added") == (*DARTS_OPS, "inverted_residual")
    replacing = parse_ops("darts+ir_replacing")
    assert len(replacing) == len(DARTS_OPS) and "sep_conv_3x3" not in replacing
    assert replacing.index("inverted_residual") == DARTS_OPS.index("sep_conv_3x3")
    assert "sep_conv_5x5" in replacing
    assert parse_ops(["none", "skip_connect", "sandglass"]) == ("none", "skip_connect",
                                                                 "sandglass")
    for bad, match in (("darts+sandglas", "unknown operation 'sandglas'"),
                       ("darts+skip_connect", "given twice"), ("none", "besides none")):
        with pytest.raises(ValueError, match=match):
            parse_ops(bad)
    with pytest.raises(ConfigError, match="ops: unknown operation"):
        DartsConfig(ops="darts+sg")
    with pytest.raises(ConfigError, match="ops: expected a preset"):
        DartsConfig(ops=3)
    with pytest.raises(ConfigError, match="order"):
        DartsConfig(order=3)


def _tiny(seed=0):
    torch.manual_seed(seed)
    template = darts("darts_v2", input_size=8)
    net = CellSupernet(CellSearchSpace(DARTS_OPS, template), channels=4, layers=3).double()
    with torch.no_grad():
        for a in net.arch_parameters():
            a.normal_(0, 0.5)
    batch = lambda: (torch.randn(6, 3, 8, 8).double(), torch.randint(0, 10, (6,)))  # noqa: E731
    return net, batch(), batch()


def test_first_order_is_the_validation_gradient():
    net, _, (x, y) = _tiny()
    loss = torch.nn.functional.cross_entropy(net(x), y)
    expected = torch.autograd.grad(loss, net.arch_parameters())
    for a, b in zip(first_order(net, net.arch_parameters(), x, y), expected):
        torch.testing.assert_close(a, b)


def test_second_order_matches_autograd_through_the_unrolled_step():
    """The finite-difference Hessian-vector product against the exact gradient of
    L_val(w - xi (mu m + grad L_train + wd w), a) by double backward, momentum included."""
    net, train, val = _tiny()
    named = net.named_weight_parameters()
    buffers = {id(w): 0.1 * torch.randn_like(w) for _, w in named}
    kw = dict(lr=0.1, momentum=0.9, weight_decay=3e-4, momentum_buffer=lambda w: buffers[id(w)])
    exact = exact_second_order(net, named, net.arch_parameters(), train, val, **kw)
    approx = second_order(net, named, net.arch_parameters(), train, val, **kw, hvp_eps=1e-5)
    first = first_order(net, net.arch_parameters(), *val)
    for e, a, f in zip(exact, approx, first):
        assert float((a - e).norm() / e.norm()) < 1e-6
        assert float((f - e).norm() / e.norm()) > 0.1  # the second-order term matters here
    # The virtual steps leave the network's BN statistics as they were.
    before = {k: b.clone() for k, b in net.named_buffers()}
    second_order(net, named, net.arch_parameters(), train, val, **kw)
    assert all(torch.equal(before[k], b) for k, b in net.named_buffers())


def _smooth_tiny(seed=0):
    """_tiny without kinks: no max pool, every ReLU a Softplus, so the loss is smooth in the
    weights and a finite difference's error is its O(eps^2) truncation alone."""
    torch.manual_seed(seed)
    ops = tuple(op for op in DARTS_OPS if op != "max_pool_3x3")
    net = CellSupernet(CellSearchSpace(ops, darts("darts_v2", input_size=8)), channels=4,
                       layers=3).double()
    for module in list(net.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, torch.nn.ReLU):
                setattr(module, name, torch.nn.Softplus())
    with torch.no_grad():
        for a in net.arch_parameters():
            a.normal_(0, 0.5)
    batch = lambda: (torch.randn(6, 3, 8, 8).double(), torch.randint(0, 10, (6,)))  # noqa: E731
    return net, batch(), batch()


def test_second_order_at_the_shipped_step_on_a_smooth_network():
    """At DARTS's own step (HVP_EPS = 0.01 / ||v||) the finite difference is accurate where
    the loss is smooth: relative error ~1e-4 (measured 0.6-1.6e-4 over seeds 0-2; bound
    5e-4), shrinking 100x for a 10x smaller step (the O(eps^2) of a central difference). On
    the ReLU / max-pool network of the test above the same step crosses activation kinks
    and is off by more than the gradient itself (measured 2-4x), so that test uses 1e-5."""
    net, train, val = _smooth_tiny()
    named = net.named_weight_parameters()
    buffers = {id(w): 0.1 * torch.randn_like(w) for _, w in named}
    kw = dict(lr=0.1, momentum=0.9, weight_decay=3e-4, momentum_buffer=lambda w: buffers[id(w)])
    alphas = net.arch_parameters()
    exact = exact_second_order(net, named, alphas, train, val, **kw)
    shipped = second_order(net, named, alphas, train, val, **kw)      # hvp_eps = HVP_EPS
    tenth = second_order(net, named, alphas, train, val, **kw, hvp_eps=HVP_EPS / 10)
    first = first_order(net, alphas, *val)
    assert HVP_EPS == 0.01
    for e, a, b, f in zip(exact, shipped, tenth, first):
        err, err_tenth = float((a - e).norm() / e.norm()), float((b - e).norm() / e.norm())
        assert err < 5e-4
        assert 50 < err / err_tenth < 200                 # ~100: truncation, not a bug
        assert float((f - e).norm() / e.norm()) > 0.1    # the second-order term matters


@pytest.mark.parametrize("op, per_c", [
    # dw 3x3 + BN, 1x1 c->h + BN, 1x1 h->c + BN, dw 3x3 + BN; h = ceil(c / 6)
    ("sandglass", lambda c, h: 9 * c + 2 * c + c * h + 2 * h + h * c + 2 * c + 9 * c + 2 * c),
    # 1x1 c->6c + BN, dw 3x3 + BN, 1x1 6c->c + BN
    ("inverted_residual", lambda c, h: c * 6 * c + 12 * c + 9 * 6 * c + 12 * c + 6 * c * c + 2 * c),
])
@pytest.mark.parametrize("c", [6, 16, 36])
def test_mobilenext_cell_ops_have_exact_params(op, per_c, c):
    from nas.ops.darts import make_op

    h = -(-c // 6)
    for stride in (1, 2):
        module = make_op(op, c, stride, torch.nn.BatchNorm2d)
        assert sum(p.numel() for p in module.parameters()) == per_c(c, h)
        x = torch.randn(2, c, 8, 8)
        assert module(x).shape == (2, c, 8 // stride, 8 // stride)


def test_cell_networks_with_mobilenext_ops_count_exactly():
    """The cost model (params, MACs) agrees with the built network for both new ops."""
    from nas.cost.measured import measure

    base = darts("darts_v2", init_channels=8, layers=5)
    g = base.genotype
    swap = lambda edges, new: [(new if i % 3 == 0 else op, src)  # noqa: E731
                               for i, (op, src) in enumerate(edges)]
    for new in ("sandglass", "inverted_residual"):
        spec = dataclasses.replace(base, genotype=GenotypeSpec(
            normal=swap(g.normal, new), normal_concat=[2, 3, 4, 5],
            reduce=swap(g.reduce, new), reduce_concat=[2, 3, 4, 5]))
        assert io.loads(io.dumps(spec)) == spec
        model = build(spec).eval()
        params = sum(p.numel() for k, p in model.named_parameters() if "auxiliary" not in k)
        cost, measured = count(spec), measure(model, spec.input_size)
        assert cost.params == params
        assert abs(cost.macs - measured.macs) <= 1e-3 * measured.macs


def test_parameter_free_count():
    assert parameter_free(darts("darts_v2").genotype.normal) == 2
    assert parameter_free(darts("darts_v2").genotype.reduce) == 8


def _read(run):
    return ((run / "genotypes.csv").read_text(), (run / "alphas.csv").read_text(),
            json.loads((run / "result.json").read_text()))


def test_darts_smoke_end_to_end_and_deterministic(smoke_search, run_entry, tmp_path):
    """`method=darts budget=smoke` writes every output; a second run with the same seed
    derives the same genotypes and the same mixture weights; its arch.yaml trains."""
    tmp, r = smoke_search("darts")
    run = tmp / "run"
    for name in ("arch.yaml", "result.json", "alphas.csv", "genotypes.csv", "alphas.png",
                 "cells.png"):
        assert (run / name).is_file(), name
    genotypes, alphas, result = _read(run)
    rows = list(csv.DictReader(genotypes.splitlines()))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert result["param_free_normal"] == int(rows[-1]["param_free_normal"])
    assert result["recipe"] == "darts_v2" and result["order"] == 1
    spec = io.load(run / "arch.yaml")
    assert spec.family == "cell" and result["params"] == count(spec).params
    assert len(alphas.splitlines()) == 1 + 2 * 2 * 14

    again = run_entry("nas.search", tmp_path, "method=darts", "budget=smoke")
    assert again.returncode == 0, again.stderr[-3000:]
    assert _read(tmp_path / "run")[:2] == (genotypes, alphas)

    # The printed command trains it at the search's 16x16 input, with DARTS's recipe.
    args = shlex.split(result["train_command"])[3:]  # after "python -m nas.train"
    assert "data.input_size=16" in args
    trained = run_entry("nas.train", tmp_path, *args, "budget=smoke", "export_onnx=false",
                        run_dir="train")
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert "training with recipe=smoke/darts_v2" not in trained.stdout  # no smoke recipe
    metrics = json.loads((tmp_path / "train" / "metrics.json").read_text())
    assert metrics["arch"] == "darts_searched" and metrics["macs"] == result["macs"]


def test_darts_second_order_with_sandglass(run_entry, tmp_path):
    r = run_entry("nas.search", tmp_path, "method=darts", "budget=smoke", "method.order=2",
                  "method.ops=darts+sandglass")
    assert r.returncode == 0, r.stderr[-3000:]
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["order"] == 2 and result["ops"][-1] == "sandglass"
    header = (tmp_path / "run" / "alphas.csv").read_text().splitlines()[0]
    assert header.endswith(",dil_conv_5x5,sandglass")


def test_budget_paper_is_the_official_search_protocol():
    """+experiment=darts_cifar10 (budget=paper on CIFAR-10): the 50 epochs at batch 64 on all
    training images halved, both halves through the training transform; the demo keeps a
    validation part and the eval transform on the architecture half."""
    from hydra import compose, initialize_config_dir

    from nas.config import CONF_DIR

    with initialize_config_dir(str(CONF_DIR), version_base=None):
        paper = compose("search", ["+experiment=darts_cifar10"])
        demo = compose("search", ["method=darts"])
    assert (paper.data.val_fraction, paper.data.search_holdout) == (0.0, 0.5)
    assert paper.method.arch_transform == "train"
    assert (paper.budget.epochs, paper.budget.batch_size) == (50, 64)
    assert (demo.data.val_fraction, demo.method.arch_transform) == (0.1, "eval")
    with pytest.raises(ConfigError, match="arch_transform: expected train or eval"):
        DartsConfig(arch_transform="augment")


def test_ops_as_a_hydra_list(run_entry, tmp_path):
    """The form a Hydra user tries first: a list of op names on the command line."""
    r = run_entry("nas.search", tmp_path, "method=darts", "budget=smoke",
                  "method.ops=[none,skip_connect,sandglass]")
    assert r.returncode == 0, r.stderr[-3000:]
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["ops"] == ["none", "skip_connect", "sandglass"]


def test_bad_ops_is_one_line(run_entry, tmp_path):
    r = run_entry("nas.search", tmp_path, "method=darts", "budget=smoke",
                  "method.ops=darts+sandglas")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1].startswith("error: method.ops: unknown operation")
    r = run_entry("nas.search", tmp_path, "method=darts", "budget=smoke", "data.input_size=18",
                  run_dir="odd")
    assert r.returncode == 2 and "expected a multiple of 4, got 18" in r.stderr


def test_an_interrupted_search_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch):
    """Stopped at the start of its second epoch (after the first epoch's checkpoint), the
    search run again in its directory continues from checkpoints/last.ckpt and ends with
    the same architecture weights, history and genotype as an uninterrupted run."""
    from nas.methods.darts import search as method

    cfg = DartsConfig(channels=4, layers=3, eval_channels=4, eval_layers=3)
    straight = method._search(cfg, search_context(tmp_path / "straight"))

    interrupt_in_second_epoch(monkeypatch, method.DartsModule,
                              lambda: method._search(cfg, search_context(tmp_path / "resumed")))
    assert (tmp_path / "resumed" / "checkpoints" / "last.ckpt").is_file()
    resumed = method._search(cfg, search_context(tmp_path / "resumed"))
    assert resumed.arch == straight.arch
    for name in ("alphas.csv", "genotypes.csv"):
        assert (tmp_path / "resumed" / name).read_text() == \
            (tmp_path / "straight" / name).read_text()
    keep = ("genotype_normal", "genotype_reduce", "search_val_top1", "iterations",
            "mean_max_weight_normal")
    assert {k: resumed.metrics[k] for k in keep} == {k: straight.metrics[k] for k in keep}


def _script(name, *args, cwd):
    import os
    import subprocess
    import sys

    from conftest import REPO

    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, str(REPO / "scripts" / name), *args], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=900)


@pytest.mark.slow   # 25 s: kept out of the default run, which must stay under 10 min
def test_bench_darts_times_both_orders(tmp_path):
    """scripts/bench_darts.py on a tiny network (NNI needs its own virtualenv: skipped)."""
    out = tmp_path / "bench.json"
    r = _script("bench_darts.py", "--batches", "2", "--channels", "2", "--layers", "3",
                "--size", "8", "--iterations", "2", "--repeats", "1", "--threads", "1",
                "--out", str(out), cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    results = json.loads(out.read_text())["results"]
    assert set(results) == {f"nas {layout} order {o} batch 2" for o in (1, 2)
                            for layout in ("channels_last", "contiguous")}
    assert {r["layout"] for s in results.values() for r in s["runs"]} == {"channels_last",
                                                                         "contiguous"}
    for s in results.values():
        assert s["ms_median"] > 0 and s["peak_rss_mb_median"] > 0 and len(s["runs"]) == 1
    assert "second order" in r.stdout
    bad = _script("bench_darts.py", "--nni-python", str(tmp_path / "none"), cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.startswith("error: --nni-python")


@pytest.mark.slow
def test_mobilenext_comparison_script_at_smoke_scale(tmp_path):
    """scripts/darts_mobilenext.py: four searches (the ops presets), four trainings, one
    table; a second call reuses every finished step."""
    out = tmp_path / "mn"
    args = ["--out", str(out), "--budget", "smoke", "--", "logger=none",
            "trainer.enable_progress_bar=false"]
    r = _script("darts_mobilenext.py", *args, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = list(csv.DictReader((out / "table.csv").read_text().splitlines()))
    assert [row["ops"] for row in rows] == ["darts", "darts+sandglass", "darts+ir_added",
                                            "darts+ir_replacing"]
    assert all(int(row["params"]) > 0 and 0 <= float(row["test_top1"]) <= 1 for row in rows)
    assert "| darts+sandglass |" in (out / "table.md").read_text()
    again = _script("darts_mobilenext.py", *args, cwd=tmp_path)
    assert again.returncode == 0 and again.stdout.count("reusing") == 8


@pytest.mark.slow
def test_darts_runs_under_cpu_ddp(run_entry, tmp_path):
    """Two processes (gloo): the architecture gradient is averaged over the ranks, the
    history and result are written once, by rank zero."""
    r = run_entry("nas.search", tmp_path, "method=darts", "budget=smoke", "trainer=ddp",
                  "trainer.accelerator=cpu", "trainer.devices=2", "trainer.sync_batchnorm=false")
    assert r.returncode == 0, r.stderr[-3000:]
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["epochs"] == 2
    assert len((tmp_path / "run" / "genotypes.csv").read_text().splitlines()) == 3
