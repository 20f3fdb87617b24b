"""python -m nas.compare: every search and the random baseline, every result trained with
one recipe, one table, one figure and a test of which differences exceed the seed noise."""

import csv
import json

import pytest
from omegaconf import OmegaConf

from nas.compare import CompareConfig, _pending, pareto, welch, write_report
from nas.config import ConfigError, check


def test_pareto_front_and_welch():
    # (MACs, accuracy): the second beats the first; the third is cheaper; the fourth dominated
    points = [(2.0, 0.5), (2.0, 0.6), (1.0, 0.4), (3.0, 0.55)]
    assert pareto(points) == [1, 2]
    assert welch([0.9, 0.91, 0.92], [0.5, 0.51, 0.52]) < 1e-4
    assert welch([0.9, 0.92, 0.91], [0.91, 0.9, 0.92]) > 0.5
    assert welch([0.9], [0.5, 0.6]) is None             # one run: no test
    assert welch([0.5, 0.5], [0.5, 0.5]) is None         # no spread


def test_the_report_says_which_differences_are_real(tmp_path):
    rows = [{"method": m, "seed": s, "params": 1000, "macs": macs, "latency_ms": 1.5,
             "search_seconds": 1.0,
             "train_seconds": 2.0, "val_top1": acc, "test_top1": acc,
             "command": f"python -m nas.search method={m} seed={s}"}
            for m, macs, accs in (("a", 2e6, (0.90, 0.91, 0.92)), ("b", 1e6, (0.50, 0.52, 0.51)),
                                  ("c", 3e6, (0.91, 0.90, 0.92)))
            for s, acc in enumerate(accs)]
    summary = write_report(rows, tmp_path, [1, 2])
    assert summary["a"]["test_top1"] == pytest.approx(0.91) and summary["b"]["runs"] == 3
    md = (tmp_path / "compare.md").read_text()
    assert "| a - b | +40.00 pt |" in md and md.split("| a - b |")[1].split("\n")[0] \
        .endswith("| real |")
    assert md.split("| a - c |")[1].split("\n")[0].endswith("| noise |")
    with open(tmp_path / "compare.csv") as f:
        assert len(list(csv.DictReader(f))) == 9
    assert (tmp_path / "compare.png").stat().st_size > 5000


def test_compare_config_is_checked():
    with pytest.raises(ConfigError, match="compare.methods: expected a list of moga"):
        check(CompareConfig, {"methods": ["moga", "nasnet"]}, "compare")
    with pytest.raises(ConfigError, match="compare.seeds: expected a list of distinct"):
        check(CompareConfig, {"seeds": [0, 0]}, "compare")


def test_unfinished_searches_are_grouped_into_as_few_multiruns_as_they_allow(tmp_path):
    methods, seeds = ["moga", "darts"], [0, 1, 2]
    assert _pending(tmp_path, methods, seeds) == {("moga", "darts"): [0, 1, 2]}  # fresh: one
    for job in ("moga_s0", "moga_s1", "darts_s1"):
        (tmp_path / "searches" / job).mkdir(parents=True)
        (tmp_path / "searches" / job / "result.json").write_text("{}")
    assert _pending(tmp_path, methods, seeds) == {("darts",): [0], ("moga", "darts"): [2]}


@pytest.fixture(scope="module")
def smoke_comparison(tmp_path_factory, run_entry):
    """`python -m nas.compare compare=smoke`: every method and the baseline, one seed."""
    tmp = tmp_path_factory.mktemp("compare")
    r = run_entry("nas.compare", tmp, "compare=smoke")
    assert r.returncode == 0, r.stderr[-3000:]
    return tmp / "run"


def test_the_smoke_comparison_runs_end_to_end(smoke_comparison):
    run = smoke_comparison
    with open(run / "compare.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["method"] for r in rows] == ["moga", "atomnas", "darts", "autonl", "rexnet",
                                           "random"]
    for row in rows:
        job = f"{row['method']}_s{row['seed']}"
        metrics = json.loads((run / "trainings" / job / "metrics.json").read_text())
        assert metrics["seed"] == 0 and metrics["epochs"] == 1    # the smoke training budget
        assert float(row["latency_ms"]) > 0
        assert row["command"].startswith(f"python -m nas.search method={row['method']} "
                                         f"budget=smoke data=embedded seed=0")
    # one recipe for every result, BN recalibrated before each evaluation
    recipe = OmegaConf.load(run / "trainings" / "recipe.yaml")
    assert recipe.bn_recalibration_steps == 16 and recipe.budget.name == "smoke"
    random = json.loads((run / "searches" / "random_s0" / "result.json").read_text())
    band = rows[-1]["command"].split("method.macs=[")[1].rstrip("]'").split(",")
    assert float(band[0]) <= random["macs"] <= float(band[1])
    assert (run / "compare.png").stat().st_size > 5000
    assert "| moga - random |" in (run / "compare.md").read_text()


@pytest.mark.slow
def test_a_killed_comparison_resumes(smoke_comparison, run_entry, tmp_path):
    """The DARTS search and the AutoNL training unfinished: only they run again."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(smoke_comparison, run)
    (run / "compare.csv").unlink()
    (run / "searches" / "darts_s0" / "result.json").unlink()
    (run / "trainings" / "autonl_s0" / "metrics.json").unlink()
    kept = {p: p.stat().st_mtime_ns for p in (run / "trainings").glob("*/metrics.json")}
    r = run_entry("nas.compare", tmp_path, f"resume_dir={run}", "compare=smoke",
                  run_dir="resumer")
    assert r.returncode == 0, r.stderr[-3000:]
    assert {p: p.stat().st_mtime_ns for p in kept} == kept
    assert (run / "searches" / ".interrupted" / "darts_s0.0").is_dir()
    assert (run / "trainings" / "autonl_s0" / "metrics.json").is_file()
    assert (run / "compare.csv").is_file()
