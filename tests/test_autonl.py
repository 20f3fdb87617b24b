"""AutoNL search (nas.methods.autonl.superkernel, nas.methods.autonl.search): the straight-through
indicators, the superkernel's masking against the exported network, the compactness rule,
the differentiable cost, the Table 1 variants, and end to end."""

import csv
import json
import os
import random
import shlex

import pytest
import torch
from conftest import interrupt_in_second_epoch, search_context

from nas.arch.builder import build
from nas.cost import count
from nas.ops.lightnl import NL_VARIANTS, NonLocalVariant, nonlocal_macs
from nas.supernet.base import Supernet
from nas.config import ConfigError
from nas.methods.autonl.superkernel import (Compactness, LayerChoice, SuperkernelNet,
                                            autonl_space, choice_from_bits, indicator,
                                            multilinear)

BIG = 1e6


def _space(**kw):
    kw = {"width": 0.25, "stem_stride": 1, "num_classes": 10, "input_size": 16, **kw}
    return autonl_space(**kw)


def test_indicator_is_a_hard_step_with_the_sigmoid_gradient():
    margin = torch.tensor([-2.0, -1e-3, 0.0, 0.5], requires_grad=True)
    out = indicator(margin)
    assert out.tolist() == [0.0, 0.0, 1.0, 1.0]
    out.sum().backward()
    s = torch.sigmoid(margin.detach())
    assert torch.allclose(margin.grad, s * (1 - s))


def test_multilinear_is_exact_at_the_corners_and_linear_in_each_bit():
    table = torch.arange(8.0).reshape(2, 2, 2)
    for bits in [(0, 0, 0), (1, 0, 1), (1, 1, 1), (0, 1, 0)]:
        assert multilinear(table, [torch.tensor(float(b)) for b in bits]) == table[bits]
    half = multilinear(table, [torch.tensor(0.5), torch.tensor(0.0), torch.tensor(1.0)])
    assert half == (table[0, 0, 1] + table[1, 0, 1]) / 2


def test_space_matches_the_paper_layout():
    space = autonl_space()
    assert len(space.slots) == 21
    assert [s.out for s in space.slots] == [24] * 4 + [40] * 4 + [80] * 4 + [96] * 4 + [192] * 4 + [320]
    assert [s.skippable for s in space.slots[:5]] == [False, True, True, True, False]
    assert not space.slots[12].skippable and not space.slots[20].skippable  # first of 96, 320
    assert space.slots[0].nl_ratios == (0.125, 0.25) and space.slots[0].nl_strides == (1, 2)
    assert space.slots[8].se_reduce == (10, 20)  # 0.25 / 0.5 of the 40-wide input
    big = space.to_spec(space.largest())
    assert all(b.kernel == 5 and b.expansion == 6.0 for b in big.blocks[1:])
    assert isinstance(SuperkernelNet(_space()), Supernet)


def _copy_weights(net: SuperkernelNet, model: torch.nn.Module, choices) -> None:
    """The superkernel's weights, sliced as each chosen block uses them, into `model`."""
    def put(dst, src, *index):
        dst.data.copy_(src.data[index] if index else src.data)

    def bn(dst, src, n):
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(dst, name).data.copy_(getattr(src, name).data[:n])

    put(model.stem[0].weight, net.stem[0].weight)
    bn(model.stem[1], net.stem[1], net.stem[1].num_features)
    model.blocks[0].load_state_dict(net.fixed[0].state_dict())
    k = 1
    for layer, c in zip(net.layers, choices):
        if c.skip:
            continue
        b = model.blocks[k]
        k += 1
        hidden = int(round(layer.slot.cin * c.expansion))
        put(b.expand[0].weight, layer.expand[0].weight, slice(0, hidden))
        bn(b.expand[1], layer.expand[1], hidden)
        w = layer.dw[0].weight.data[:hidden]
        b.dw[0].weight.data.copy_(w if c.kernel == 5 else w[:, :, 1:4, 1:4])
        bn(b.dw[1], layer.dw[1], hidden)
        if c.se_reduce:
            r = c.se_reduce
            b.se.reduce[0].weight.data.copy_(layer.se_reduce[0].weight.data[:r, :hidden])
            b.se.reduce[0].bias.data.copy_(layer.se_reduce[0].bias.data[:r])
            b.se.expand.weight.data.copy_(layer.se_expand.weight.data[:hidden, :r])
            b.se.expand.bias.data.copy_(layer.se_expand.bias.data[:hidden])
        b.project[0].weight.data.copy_(layer.project[0].weight.data[:, :hidden])
        bn(b.project[1], layer.project[1], layer.slot.out)
        if c.lightnl:
            b.lightnl.dw.load_state_dict(layer.lightnl.dw.state_dict())
            b.lightnl.bn.load_state_dict(layer.lightnl.bn.state_dict())
    model.head.load_state_dict(net.head.state_dict())


def _force(net: SuperkernelNet, choices) -> None:
    """Thresholds (and LightNL distances) that make the network decide `choices`."""
    with torch.no_grad():
        for layer, c in zip(net.layers, choices):
            layer.t_kernel.fill_(-BIG if c.kernel == 5 else BIG)
            layer.t_expand.fill_(-BIG if c.expansion == 6.0 else BIG)
            if layer.t_keep is not None:
                layer.t_keep.fill_(BIG if c.skip else -BIG)
            s = layer.slot
            if s.se_reduce:
                layer.t_se.fill_(-BIG if c.se_reduce else BIG)
                if layer.t_se_big is not None:
                    layer.t_se_big.fill_(-BIG if c.se_reduce == s.se_reduce[-1] else BIG)
            nl = layer.lightnl
            if nl is not None:
                nl.t_insert.fill_(-BIG if c.lightnl else BIG)
                ratio, stride = c.lightnl or (s.nl_ratios[-1], 1)
                if nl.t_small is not None:
                    nl.dist_small.fill_(0.5)
                    nl.t_small.fill_(1.0 if ratio == s.nl_ratios[0] else 0.0)
                if nl.t_stride is not None:
                    nl.dist_stride.fill_(0.5)
                    nl.t_stride.fill_(1.0 if stride == 2 else 0.0)


def _random_choices(space, rnd):
    out = []
    for s in space.slots:
        out.append(LayerChoice(
            skip=s.skippable and rnd.random() < 0.3, kernel=rnd.choice((3, 5)),
            expansion=rnd.choice((3.0, 6.0)), se_reduce=rnd.choice((None, *s.se_reduce)),
            lightnl=rnd.choice((None, *[(r, st) for r in s.nl_ratios for st in s.nl_strides]))))
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_superkernel_computes_the_exported_network(seed):
    """Kernel, expansion, skip, SE and LightNL masking: with thresholds forcing random
    decisions, the superkernel network's output equals the exported network's with the
    superkernel's weights sliced by hand."""
    torch.manual_seed(seed)
    space = _space()
    net = SuperkernelNet(space)
    with torch.no_grad():   # non-trivial BN statistics and LightNL (not identity) blocks
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    choices = _random_choices(space, random.Random(seed))
    _force(net, choices)
    net.eval()
    spec = space.to_spec(space.vector(choices))
    assert net.choice() == space.vector(choices)
    assert net.export().spec == spec
    model = build(spec).eval()
    _copy_weights(net, model, choices)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(net(x), model(x), atol=1e-4, rtol=1e-4)


def test_differentiable_cost_equals_the_analytic_cost_of_the_export():
    space = _space(input_size=32)
    net = SuperkernelNet(space)
    rnd = random.Random(0)
    for _ in range(25):
        choices = _random_choices(space, rnd)
        bits = []
        for s, c in zip(space.slots, choices):
            b = {"keep": not c.skip, "k5": c.kernel == 5, "e6": c.expansion == 6.0,
                 "se": c.se_reduce is not None, "se_big": c.se_reduce == s.se_reduce[-1],
                 "nl": c.lightnl is not None,
                 "nl_small": bool(c.lightnl) and c.lightnl[0] == s.nl_ratios[0],
                 "nl_stride2": bool(c.lightnl) and c.lightnl[1] == 2}
            bits.append({k: torch.tensor(float(b[k])) for k in s.bits})
            if not c.skip:
                assert choice_from_bits(s, {k: float(v) for k, v in bits[-1].items()}) == c
        cost = count(space.to_spec(space.vector(choices)))
        assert float(net.cost(bits)) == pytest.approx(cost.macs + cost.extra_macs, rel=1e-6)


def test_thresholds_learn_from_the_cost_term():
    """ln(cost) pushes every threshold up (larger thresholds drop options), through the
    straight-through gradient, and CE reaches them through the masks."""
    net = SuperkernelNet(_space())
    net.train()
    net(torch.randn(4, 3, 16, 16))
    torch.log(net.cost()).backward()
    layer = net.layers[1]
    for t in (layer.t_kernel, layer.t_expand, layer.t_keep, layer.t_se, layer.lightnl.t_insert):
        assert t.grad is not None and t.grad < 0
    net.zero_grad()
    out = net(torch.randn(4, 3, 16, 16))
    torch.nn.functional.cross_entropy(out, torch.randint(0, 10, (4,))).backward()
    assert layer.t_kernel.grad != 0 and layer.t_expand.grad != 0


def test_compactness_rule_on_constructed_features():
    """The smaller ratio wins when its affinity matrix is within the threshold of the full
    one: zero extra channels give distance 0; the distance is ||A_small - A_full|| /
    ||A_full|| of the explicit N x N affinities; features constant on 2 x 2 blocks give a
    stride-2 distance of 0."""
    space = _space()
    layer = SuperkernelNet(space).layers[0]
    nl = layer.lightnl
    assert nl.keeps == [1, 2]   # 8 channels: 12.5 % and 25 %
    torch.manual_seed(0)
    x = torch.randn(3, 8, 4, 4)
    d_small = nl.distance_small(x)
    theta = x[:, :2].flatten(2).transpose(1, 2)
    full = theta @ theta.transpose(1, 2)
    small = theta[..., :1] @ theta[..., :1].transpose(1, 2)
    assert float(d_small) == pytest.approx(float((full - small).norm() / full.norm()), rel=1e-5)
    up = x[:, :2, ::2, ::2].repeat_interleave(2, 2).repeat_interleave(2, 3)
    strided = theta @ up.flatten(2)   # each sub-sampled key for its 2 x 2 neighbourhood
    assert float(nl.distance_stride(x, 2)) == pytest.approx(
        float((full - strided).norm() / full.norm()), rel=1e-5)
    x_nested = x.clone()
    x_nested[:, 1] = 0
    assert float(nl.distance_small(x_nested)) == 0.0
    blocky = torch.randn(3, 8, 2, 2).repeat_interleave(2, 2).repeat_interleave(2, 3)
    assert float(nl.distance_stride(blocky, 2)) == pytest.approx(0.0, abs=1e-6)
    # Training: the batch distance decides and the EMA follows; a threshold just above it
    # selects the smaller ratio.
    nl.train()
    with torch.no_grad():
        nl.t_small.fill_(float(d_small) + 1e-3)
    d = nl.decisions(x)
    assert float(d["nl_small"].detach()) == 1.0 and float(nl.dist_small) == pytest.approx(float(d_small))
    with torch.no_grad():
        nl.t_small.fill_(float(d_small) - 1e-3)
    assert float(nl.decisions(x)["nl_small"]) == 0.0


def test_compactness_euclidean_distance_and_ema_in_training():
    """distance=euclidean is Eq. 12's ||A_small - A_full|| of the explicit N x N affinities,
    per image and averaged; training=ema decides by the EMA the batch was just folded into,
    so a batch far from the running value does not flip the choice by itself."""
    layer = SuperkernelNet(_space(), compactness=Compactness("euclidean", "ema", 0.1)).layers[0]
    nl = layer.lightnl
    torch.manual_seed(0)
    x = torch.randn(3, 8, 4, 4)
    theta = x[:, :2].flatten(2).transpose(1, 2)                   # B, N, c
    full = theta @ theta.transpose(1, 2)
    small = theta[..., :1] @ theta[..., :1].transpose(1, 2)
    per_image = (full - small).flatten(1).norm(dim=1)
    assert float(nl.distance_small(x)) == pytest.approx(float(per_image.mean()), rel=1e-5)
    up = x[:, :2, ::2, ::2].repeat_interleave(2, 2).repeat_interleave(2, 3)
    strided = theta @ up.flatten(2)
    assert float(nl.distance_stride(x, 2)) == pytest.approx(
        float((full - strided).flatten(1).norm(dim=1).mean()), rel=1e-5)
    # EMA in training: first batch sets it; a batch 10x further moves it by momentum only
    nl.train()
    d0 = float(nl.distance_small(x))
    with torch.no_grad():
        nl.t_small.fill_(2 * d0)
    assert float(nl.decisions(x)["nl_small"].detach()) == 1.0
    assert float(nl.dist_small) == pytest.approx(d0)
    far = x * 10 ** 0.5          # affinities scale by 10, the distance too
    assert float(nl.decisions(far)["nl_small"].detach()) == 1.0   # EMA 0.9 d0 + 0.1 * 10 d0
    assert float(nl.dist_small) == pytest.approx(1.9 * d0, rel=1e-5)
    # the same two batches with training=batch: the far batch decides by itself
    batch = SuperkernelNet(_space(), compactness=Compactness("euclidean", "batch", 0.1))
    nl_b = batch.layers[0].lightnl
    nl_b.train()
    with torch.no_grad():
        nl_b.t_small.fill_(2 * d0)
    nl_b.decisions(x)
    assert float(nl_b.decisions(far)["nl_small"].detach()) == 0.0
    with pytest.raises(ConfigError, match="compactness.distance: expected euclidean or "
                                          "relative"):
        Compactness(distance="l2")


def test_budget_paper_uses_the_papers_compactness_rule():
    from hydra import compose, initialize_config_dir

    from nas.config import CONF_DIR

    with initialize_config_dir(str(CONF_DIR), version_base=None):
        paper = compose("search", ["+experiment=autonl_imagenet"])
        demo = compose("search", ["method=autonl"])
    assert dict(paper.method.compactness) == {"distance": "euclidean", "training": "ema",
                                              "momentum": 0.1}
    assert (demo.method.compactness.distance, demo.method.compactness.training) == \
        ("relative", "batch")


def test_indicator_dropout_follows_the_seeded_generator():
    net = SuperkernelNet(_space())
    net.train()
    net.keep_prob = 0.5
    x = torch.randn(2, 3, 16, 16)
    used = []
    for _ in range(2):
        net.generator = torch.Generator().manual_seed(7)
        net(x)
        used.append([{k: float(v) for k, v in layer.used.items()} for layer in net.layers])
    assert used[0] == used[1]
    dropped = sum(v == 0.0 for layer in used[0] for v in layer.values())
    assert dropped > 0


@pytest.mark.parametrize("variant", NL_VARIANTS)
def test_nonlocal_variant_macs_are_what_the_module_computes(variant):
    from torch.utils.flop_counter import FlopCounterMode

    for ch, hw, ratio, stride in [(16, 8, 0.25, 2), (24, 7, 0.125, 1)]:
        module = NonLocalVariant(variant, ch, ratio=ratio, stride=stride)
        with FlopCounterMode(display=False) as counter:
            module(torch.randn(1, ch, hw, hw))
        assert counter.get_total_flops() // 2 == nonlocal_macs(variant, ch, hw, hw, ratio=ratio,
                                                                stride=stride)


def test_table1_reproduces_the_paper_column(tmp_path):
    from conftest import REPO
    import subprocess
    import sys

    out = tmp_path / "t1.csv"
    r = subprocess.run([sys.executable, str(REPO / "scripts" / "lightnl_table1.py"), "--out",
                        str(out)], capture_output=True, text=True, cwd=tmp_path,
                       env=dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1"),
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    added = {row["variant"]: int(row["added_macs"]) / 1e6 for row in csv.DictReader(open(out))}
    paper = {"wang": 6200, "levi": 146, "eq3": 119, "eq5": 93, "eq7": 66, "lightnl": 15}
    for v, m in paper.items():
        assert added[v] == pytest.approx(m, rel=0.02), v
    # The paper's Eq. 9 row had no key stride, its LightNL row had it.
    assert added["eq9_no_stride"] == pytest.approx(38, rel=0.02)
    assert added["eq9"] == pytest.approx(36.24, abs=0.01)
    assert added["lightnl_no_stride"] == pytest.approx(16.48, abs=0.01)
    assert "eq9: the paper's +38 M is the reading without the key stride" in r.stdout
    assert "lightnl: the paper's +15 M is the reading with the key stride" in r.stdout


def test_autonl_smoke_end_to_end(smoke_search, run_entry, tmp_path):
    """`method=autonl budget=smoke` writes every output; its cost is the export's analytic
    MACs; the printed train command trains the network."""
    tmp, r = smoke_search("autonl")
    run = tmp / "run"
    for name in ("arch.yaml", "result.json", "decisions.csv", "decisions.png",
                 "checkpoints/last.ckpt"):
        assert (run / name).is_file(), name
    result = json.loads((run / "result.json").read_text())
    assert result["search_cost"] == result["macs"] + result["lightnl_macs"]
    assert result["macs"] <= result["largest_macs"]
    rows = list(csv.DictReader(open(run / "decisions.csv")))
    assert {int(r["epoch"]) for r in rows} == {0, 1, 2} and len(rows) == 3 * 21
    cmd = shlex.split(result["train_command"])
    assert cmd[:3] == ["python", "-m", "nas.train"]
    trained = run_entry("nas.train", tmp_path, *cmd[3:], "budget=smoke", "export_onnx=false",
                        run_dir="train")
    assert trained.returncode == 0, trained.stderr[-3000:]
    # The threshold-gradient probe reads the run's checkpoint and config.
    import subprocess
    import sys

    from conftest import REPO

    def probe(path):
        return subprocess.run([sys.executable, str(REPO / "scripts" / "autonl_gradients.py"),
                               str(path), "--batches", "2"], capture_output=True, text=True,
                              cwd=tmp_path, timeout=300,
                              env=dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1"))

    r = probe(run / "checkpoints" / "last.ckpt")
    assert r.returncode == 0, r.stderr[-2000:]
    assert {line.split()[0] for line in r.stdout.splitlines()[2:]} >= {"t_kernel", "t_keep",
                                                                       "t_insert"}
    bad = probe(tmp_path / "train" / "checkpoints" / "last.ckpt")
    assert bad.returncode == 2 and bad.stderr.startswith("error:")


def test_an_interrupted_search_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch):
    """Stopped at the start of its second epoch (after a first epoch of warm-up with indicator
    dropout; the cost term acts in the second), the search run again in its directory ends
    with the same weights, thresholds, LightNL distances, decisions and architecture as an
    uninterrupted run."""
    from nas.checkpoints import read_checkpoint
    from nas.methods.autonl import search as method

    cfg = method.AutoNLConfig(width=0.25, stem_stride=1, init="torchvision",
                              warmup_fraction=0.5, lam=0.5)
    straight = method._search(cfg, search_context(tmp_path / "straight"))

    interrupt_in_second_epoch(monkeypatch, method.AutoNLModule,
                              lambda: method._search(cfg, search_context(tmp_path / "resumed")))
    resumed = method._search(cfg, search_context(tmp_path / "resumed"))
    assert resumed.arch == straight.arch
    assert (tmp_path / "resumed" / "decisions.csv").read_text() == \
        (tmp_path / "straight" / "decisions.csv").read_text()
    a, b = (read_checkpoint(tmp_path / d / "checkpoints" / "last.ckpt")["state_dict"]
            for d in ("straight", "resumed"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert resumed.metrics["search_cost"] == straight.metrics["search_cost"]


def test_bad_settings_and_foreign_checkpoints_are_refused(tmp_path, run_entry):
    from nas.checkpoints import CheckpointError
    from nas.methods.autonl import search as method
    from nas.methods.stage import check_stage_resume

    r = run_entry("nas.search", tmp_path, "method=autonl", "budget=smoke", "method.cost=flops")
    assert r.returncode == 2 and "method.cost" in r.stderr.strip().splitlines()[-1]
    ckpt = tmp_path / "other.ckpt"
    torch.save({"nas": {"format": "nas.classifier/1"}, "state_dict": {}}, ckpt)
    identity = method.space_identity(_space())
    with pytest.raises(CheckpointError, match="not a checkpoint of the autonl search stage"):
        check_stage_resume(ckpt, "autonl", identity)
    torch.save({"nas": {"format": "nas.classifier/1",
                        "search": {"stage": "autonl",
                                   "identity": method.space_identity(_space(width=0.5))}},
                "state_dict": {}}, ckpt)
    with pytest.raises(CheckpointError, match="autonl search stage over another network"):
        check_stage_resume(ckpt, "autonl", identity)


def test_latency_cost_is_the_lookup_table_prediction_of_the_export(tmp_path):
    """method.cost=latency: the multilinear cost at hard decisions equals the table's
    prediction (stem + blocks + head) of the exported network; a second call reuses the
    saved table without measuring."""
    from nas.cost.lut import LatencyTable
    from nas.methods.autonl.search import AutoNLConfig
    from nas.methods.autonl.latency import latency_model

    space = _space(input_size=8, se=False, lightnl=False)
    cfg = AutoNLConfig(cost="latency", lut=str(tmp_path / "lut.json"), lut_repeats=1)
    model = latency_model(space, cfg, tmp_path)
    table = LatencyTable.load(tmp_path / "lut.json")
    net = SuperkernelNet(space, costs=model)
    rnd = random.Random(0)
    for _ in range(5):
        choices = _random_choices(space, rnd)
        bits = [{"keep": torch.tensor(float(not c.skip)), "k5": torch.tensor(float(c.kernel == 5)),
                 "e6": torch.tensor(float(c.expansion == 6.0))} for c in choices]
        bits = [{k: d[k] for k in s.bits} for s, d in zip(space.slots, bits)]
        spec = space.to_spec(space.vector(choices))
        assert float(net.cost(bits)) == pytest.approx(table.predict(spec, calibrated=False),
                                                      rel=1e-5)
    mtime = (tmp_path / "lut.json").stat().st_mtime_ns
    latency_model(space, cfg, tmp_path)
    assert (tmp_path / "lut.json").stat().st_mtime_ns == mtime


def test_bench_autonl_times_both_networks(tmp_path):
    """scripts/bench_autonl.py on a tiny setting: both step times and their ratio."""
    import subprocess
    import sys

    from conftest import REPO

    out = tmp_path / "b.json"
    r = subprocess.run([sys.executable, str(REPO / "scripts" / "bench_autonl.py"), "--batch", "2",
                        "--size", "8", "--warmup", "0", "--iterations", "1", "--repeats", "1",
                        "--threads", "1", "--out", str(out)], capture_output=True, text=True,
                       cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1"),
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    data = json.loads(out.read_text())
    assert set(data["results"]) == {"search", "largest"} and data["ratio"] > 0
    assert "target <= 1.5x" in r.stdout


@pytest.mark.parametrize("name, params", [("autonl_s", 4_389_350), ("autonl_l", 5_580_336)])
def test_the_published_networks_are_points_of_the_space(name, params):
    """AutoNL-S and AutoNL-L (the authors' configs, in the zoo) are decision vectors of the
    full-width space: per stage their blocks, then skipped layers."""
    from nas.arch.zoo import get_spec

    published = get_spec(name)
    space = autonl_space()
    blocks = published.blocks[1:]          # after the fixed first block
    choices, k = [], 0
    for s in space.slots:
        b = blocks[k] if k < len(blocks) else None
        if s.skippable and (b is None or b.out != s.out):   # the stage has fewer blocks
            choices.append(LayerChoice(True, 3, 3.0, None, None))
            continue
        k += 1
        choices.append(LayerChoice(False, b.kernel, b.expansion,
                                   b.se.reduce if b.se else None,
                                   (b.lightnl.ratio, b.lightnl.stride) if b.lightnl else None))
    assert k == len(blocks)
    spec = space.to_spec(space.vector(choices))
    assert spec.blocks == published.blocks and spec.head == published.head
    assert count(spec).params == params


def test_demo_recipe_of_searched_networks_recalibrates_bn():
    """conf/recipe/demo/autonl_s.yaml (what a searched arch.yaml trains with at the demo
    budget) sets the train config's own bn_recalibration_steps; the command line still wins."""
    from hydra import compose, initialize_config_dir

    from nas.config import CONF_DIR

    base = ["arch=mobilenetv2_035", "recipe=demo/autonl_s"]
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        assert compose("train", overrides=base).bn_recalibration_steps == 16
        assert compose("train", overrides=[*base, "bn_recalibration_steps=2"]
                       ).bn_recalibration_steps == 2
        assert compose("train", overrides=["arch=mobilenetv2_035"]).bn_recalibration_steps == 0
