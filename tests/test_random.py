"""method=random, the baseline: uniform draws from any of the five spaces, a cost band,
each kept architecture trained once through the evaluator, the best by validation top-1."""

import csv
import json

import pytest
import torch

from nas.arch import io
from nas.arch.builder import build
from nas.cost import count
from nas.data import EmbeddedConfig, make_datamodule
from nas.methods.base import method_class, method_config
from nas.config import check


def _method(name, budget="smoke"):
    cfg = method_config(name, budget)
    cls = method_class(cfg)
    return cls(check(cls.Config, {k: v for k, v in cfg.items() if k != "_target_"}, "method"))


@pytest.mark.parametrize("space", ["moga", "atomnas", "darts", "autonl", "rexnet"])
def test_every_space_draws_valid_networks_by_seed(space):
    datamodule = make_datamodule(EmbeddedConfig())
    draw = _method(space).sampler(datamodule)
    specs = [draw(seed) for seed in (0, 1, 2, 0)]
    assert io.dumps(specs[0]) == io.dumps(specs[3])           # a draw is its seed's
    assert len({io.dumps(s) for s in specs[:3]}) == 3          # and seeds differ
    model = build(specs[1]).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 32, 32))
    assert (out[0] if isinstance(out, tuple) else out).shape == (2, 10)
    # (DARTS counts, as the official code, without the auxiliary head)
    assert count(specs[1]).params == sum(p.numel() for n, p in model.named_parameters()
                                         if "auxiliary" not in n)


@pytest.fixture(scope="module")
def random_smoke(tmp_path_factory, run_entry):
    tmp = tmp_path_factory.mktemp("random")
    r = run_entry("nas.search", tmp, "method=random", "method.space=moga", "budget=smoke",
                  "method.samples=3", "method.macs=[3.0e6,4.5e6]")
    assert r.returncode == 0, r.stderr[-3000:]
    return tmp / "run"


def test_the_baseline_trains_its_draws_and_selects_by_validation(random_smoke):
    run = random_smoke
    with open(run / "candidates.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["id"] for r in rows] == ["r000", "r001", "r002"]
    assert all(3.0e6 <= int(r["macs"]) <= 4.5e6 for r in rows)
    result = json.loads((run / "result.json").read_text())
    vals = [float(r["val_top1"]) for r in rows]
    best = rows[vals.index(max(vals))]               # ties: the first drawn
    assert result["best"] == best["id"] and result["space"] == "moga"
    assert result["val_top1"] == pytest.approx(float(best["val_top1"]))
    assert result["params"] == int(best["params"]) == count(io.load(run / "arch.yaml")).params
    draws = result["draws"]
    assert draws["kept"] == 3 and sum(draws.values()) == int(rows[-1]["draw"]) + 1
    metrics = json.loads((run / "trainings" / best["id"] / "metrics.json").read_text())
    assert metrics["final_val_top1"] == pytest.approx(float(best["val_top1"]), abs=1e-5)


def test_a_band_no_draw_meets_is_one_line(run_entry, tmp_path):
    r = run_entry("nas.search", tmp_path, "method=random", "method.space=darts",
                  "budget=smoke", "method.macs=[1,2]", "method.max_draws=20")
    assert r.returncode == 2
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("error: method.macs / method.params: 0 of 3 architectures of the "
                           "darts space fell in the cost band")


def test_bad_random_config_is_one_line(run_entry, tmp_path):
    r = run_entry("nas.search", tmp_path, "method=random", "method.space=nasnet",
                  "budget=smoke")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1].startswith(
        "error: method.space: expected one of moga, atomnas, darts, autonl, rexnet")
