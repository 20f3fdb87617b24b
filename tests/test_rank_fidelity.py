"""scripts/rank_fidelity.py: its Kendall tau-b on hand-worked examples, and a tiny run end to
end (train a supernet, score, train stand-alone, write the JSON; reload the supernet)."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import load_script

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "rank_fidelity.py"


tau_b = load_script("rank_fidelity").kendall_tau_b


def test_tau_b_without_ties():
    assert tau_b([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert tau_b([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # one discordant pair of six: (5 - 1) / 6
    assert tau_b([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(2 / 3, abs=1e-4)
    assert tau_b([0.9, 0.1, 0.5], [0.8, 0.3, 0.7]) == pytest.approx(1.0)


def test_tau_b_with_ties():
    # pairs: five concordant, one tied in x only -> 5 / sqrt((6 - 1) * 6)
    assert tau_b([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(5 / math.sqrt(30))
    # x ties (0,1) and (2,3); y ties (1,2); concordant (0,2) (0,3) (1,3) -> 3 / sqrt(4 * 5)
    assert tau_b([1, 1, 2, 2], [1, 2, 2, 3]) == pytest.approx(3 / math.sqrt(20))
    # a pair tied in both x and y drops out of every count
    assert tau_b([1, 1, 2], [5, 5, 6]) == pytest.approx(1.0)
    assert math.isnan(tau_b([3, 3, 3], [1, 2, 3]))
    with pytest.raises(ValueError):
        tau_b([1, 2], [1, 2, 3])


def test_tau_b_matches_scipy_on_random_ties():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    for _ in range(20):
        x, y = rng.integers(0, 4, 9), rng.integers(0, 5, 9)
        if len(set(x)) > 1 and len(set(y)) > 1:
            assert tau_b(x, y) == pytest.approx(stats.kendalltau(x, y).statistic)


TINY = ["--width", "0.25", "--n", "3", "--supernet-epochs", "1", "--supernet-batches", "2",
        "--per-path-batch", "4", "--epochs", "1", "--train-batches", "3", "--batch", "16",
        "--recal-steps", "2", "--score-batches", "1", "--score-batch", "64",
        "--eval-batches", "1", "--standalone-seeds", "2", "--threads", "1"]


def _run(*args, cwd):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=cwd, env=env, check=False,
                          capture_output=True, text=True, timeout=300)


def test_rank_fidelity_runs_end_to_end(tmp_path):
    out, weights = tmp_path / "rf" / "result.json", tmp_path / "supernet.pt"
    r = _run(*TINY, "--out", str(out), "--save-supernet", str(weights), cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["n"] == 3 and len(result["architectures"]) == 3
    tau = result["kendall_tau_b"]
    assert tau is None or -1.0 <= tau <= 1.0
    for row in result["architectures"]:
        assert len(row["genome"]) == 14
        assert 0.0 <= row["supernet_top1"] <= 1.0 and 0.0 <= row["standalone_top1"] <= 1.0
        assert row["supernet_loss"] > 0 and row["supernet_score"] == -row["supernet_loss"]
        assert 1 <= row["supernet_rank"] <= 3 and 1 <= row["standalone_rank"] <= 3
        assert len(row["standalone_runs"]) == 2
        assert row["standalone_top1"] == pytest.approx(sum(row["standalone_runs"]) / 2)
    assert result["standalone_self_tau_b"] is None or -1 <= result["standalone_self_tau_b"] <= 1
    assert result["scoring"] == {"recal_images": 8, "heldout_images": 64}
    assert result["score"] == "loss" and set(result["kendall_tau_b_by_score"]) == {"top1", "loss"}
    assert "Kendall tau-b" in r.stdout
    assert not list(tmp_path.glob("lightning_logs")), "the supernet trainer wrote logs"

    # A supernet of another width is refused with one line, before any training.
    bad = _run(*TINY, "--supernet", str(weights), "--width", "0.5", "--out",
               str(tmp_path / "bad.json"), cwd=tmp_path)
    assert bad.returncode == 2
    assert bad.stderr.strip().startswith("error: --supernet") and "--width 0.5" in bad.stderr
    assert not (tmp_path / "bad.json").exists()


def test_help():
    r = _run("--help", cwd=REPO)
    assert r.returncode == 0 and "Kendall" in r.stdout and "--supernet" in r.stdout


def test_ladder_sampling_spans_the_cost_range():
    """The ladder climbs from near the cheapest network of the space to near the dearest,
    further than uniform draws reach, and its layers still vary."""
    from nas.cost import count
    from nas.methods.moga.search import moga_space

    script = load_script("rank_fidelity")
    space = moga_space(width=0.25, stem_stride=2, num_classes=10, input_size=32)
    ladders = script.choice_ladders(space)
    assert all(sorted(l) == list(range(12)) for l in ladders)
    assert ladders[0][0] == 0 and ladders[0][-1] == 11   # k3 e3 cheapest, k7 e6 SE dearest
    picked = script.sample_vectors(space, 6, seed=3, ladder=True)
    macs = [count(space.to_spec(v)).macs for v in picked]
    assert len({tuple(v) for v in picked}) == 6
    assert macs[0] < macs[2] < macs[5] and len(set(picked[0])) > 1
    cheapest, dearest = (count(space.to_spec([g] * 14)).macs for g in (0, 11))
    uniform = [count(space.to_spec(v)).macs for v in script.sample_vectors(space, 30, seed=3)]
    assert macs[0] < min(uniform) and macs[-1] > max(uniform)
    assert macs[0] - cheapest < 0.25 * (dearest - cheapest)
    assert dearest - macs[-1] < 0.25 * (dearest - cheapest)
    assert script.sample_vectors(space, 5, seed=3) == script.sample_vectors(space, 6, seed=3)[:5]
