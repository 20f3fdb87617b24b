"""`python -m nas.search method=moga budget=smoke` end to end, then training its result."""

import csv
import json
import shlex
import shutil

import pytest
import torch

from nas.arch import io
from nas.cost import count


def test_moga_smoke_writes_every_output(moga_smoke):
    tmp, r = moga_smoke
    run = tmp / "run"
    for name in ("arch.yaml", "result.json", "pareto.csv", "pareto.png", "lut.json", "lut_report.json",
                 "supernet.pt", ".hydra/config.yaml"):
        assert (run / name).is_file(), name
    result = json.loads((run / "result.json").read_text())
    spec = io.load(run / "arch.yaml")
    assert count(spec).params == result["params"] and len(result["genome"]) == 14
    rows = list(csv.DictReader((run / "pareto.csv").open()))
    assert rows and {"genome", "accuracy", "latency_ms", "params", "macs", "rank"} <= set(rows[0])
    assert any(row["rank"] == "0" for row in rows)
    assert sorted(p.name for p in (run / "front").glob("*.yaml")) == ["0.yaml", "1.yaml"]
    assert "python -m nas.train arch=file" in r.stdout


def test_printed_train_command_trains_the_result(moga_smoke, tmp_path, run_entry):
    tmp, r = moga_smoke
    line = next(ln.strip() for ln in r.stdout.splitlines() if ln.strip().startswith("python -m"))
    args = shlex.split(line)[3:]  # after "python -m nas.train"
    t = run_entry("nas.train", tmp_path, *args, "budget=smoke", "export_onnx=false")
    assert t.returncode == 0, t.stderr[-3000:]
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["arch"] == "moga_searched"


def test_bad_method_config_is_one_line(tmp_path, run_entry):
    r = run_entry("nas.search", tmp_path, "method=moga", "budget=smoke", "method.width=-1")
    assert r.returncode == 2 and "error: method.width: expected a positive multiplier" in r.stderr
    r = run_entry("nas.search", tmp_path, "method=moga", "budget=smoke",
             "method.objectives=[latency,accuracy]")
    assert r.returncode == 2 and "method.objectives" in r.stderr
    r = run_entry("nas.search", tmp_path, "method=moga", "budget=smoke", "method.width=3000")
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith(
        "error: method.width: the supernet at width 3000.0 (its largest path) cannot be trained "
        "here: at batch 8 it needs at least ")
    assert not (tmp_path / "run" / "supernet.pt").exists()


def test_resume_dir_reuses_finished_stages_and_ends_with_the_same_result(moga_smoke, tmp_path,
                                                                         run_entry):
    tmp, _ = moga_smoke
    run = tmp_path / "killed"
    shutil.copytree(tmp / "run", run)
    for name in ("arch.yaml", "result.json", "pareto.csv", "pareto.png"):
        (run / name).unlink()
    shutil.rmtree(run / "front")
    lut_mtime = (run / "lut.json").stat().st_mtime_ns
    r = run_entry("nas.search", tmp_path, f"resume_dir={run}", run_dir="resumer")
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"Resuming the search in {run}" in r.stdout
    before = json.loads((tmp / "run" / "result.json").read_text())
    after = json.loads((run / "result.json").read_text())
    assert after["supernet_seconds"] == 0.0  # the saved supernet was loaded, not retrained
    assert (run / "lut.json").stat().st_mtime_ns == lut_mtime
    for key in ("genome", "accuracy", "latency_ms", "params", "generations"):
        assert after[key] == before[key], key
    assert (run / "pareto.csv").read_text() == (tmp / "run" / "pareto.csv").read_text()


def test_bad_resume_dir_is_one_line(moga_smoke, tmp_path, run_entry):
    r = run_entry("nas.search", tmp_path, f"resume_dir={tmp_path / 'nope'}")
    assert r.returncode == 2 and "error: resume_dir:" in r.stderr and "nope" in r.stderr
    tmp, _ = moga_smoke
    run = tmp_path / "corrupt"
    shutil.copytree(tmp / "run", run)
    (run / "supernet.pt").write_bytes(b"not a checkpoint")
    (run / "result.json").unlink()                      # killed before the end
    before = (run / "lut.json").read_text()
    r = run_entry("nas.search", tmp_path, f"resume_dir={run}", run_dir="resumer")
    assert r.returncode == 2 and "supernet.pt: not a supernet" in r.stderr.strip().splitlines()[-1]
    assert (run / "lut.json").read_text() == before  # earlier output kept


def test_a_given_latency_table_makes_the_search_reproducible(moga_smoke, tmp_path, run_entry):
    """The same seed and table select the same architecture (a table measured afresh
    differs from run to run, and with it the front)."""
    tmp, _ = moga_smoke
    table = tmp_path / "given_lut.json"
    shutil.copy(tmp / "run" / "lut.json", table)
    r = run_entry("nas.search", tmp_path, "method=moga", "budget=smoke",
                  f"method.lut.table={table}")
    assert r.returncode == 0, r.stderr[-3000:]
    before = json.loads((tmp / "run" / "result.json").read_text())
    after = json.loads((tmp_path / "run" / "result.json").read_text())
    for key in ("genome", "accuracy", "latency_ms"):
        assert after[key] == before[key], key
    assert (tmp_path / "run" / "pareto.csv").read_text() == \
        (tmp / "run" / "pareto.csv").read_text()

    other = json.loads(table.read_text())
    other["meta"]["threads"] = 2
    table.write_text(json.dumps(other))
    r = run_entry("nas.search", tmp_path, "method=moga", "budget=smoke",
                  f"method.lut.table={table}", run_dir="refused")
    assert r.returncode == 2 and not (tmp_path / "refused" / "supernet.pt").exists()
    assert r.stderr.strip().splitlines()[-1] == (
        f"error: method.lut.table: {table} was measured with threads=2; this search needs 1")


def test_a_trained_supernet_is_searched_again_with_other_objectives(moga_smoke, tmp_path,
                                                                    run_entry):
    """method.supernet + method.lut.table: the same seed reproduces the run without training;
    the two-objective search on them is the other half of scripts/moga_params_objective.py."""
    import subprocess
    import sys

    from tests.conftest import REPO

    tmp, _ = moga_smoke
    run = tmp / "run"
    given = [f"method.supernet={run / 'supernet.pt'}", f"method.lut.table={run / 'lut.json'}"]
    r = run_entry("nas.search", tmp_path, "method=moga", "budget=smoke", *given,
                  run_dir="three")
    assert r.returncode == 0, r.stderr[-3000:]
    before = json.loads((run / "result.json").read_text())
    after = json.loads((tmp_path / "three" / "result.json").read_text())
    assert after["supernet_seconds"] == 0.0 and not (tmp_path / "three" / "supernet.pt").exists()
    for key in ("genome", "accuracy", "latency_ms", "random_paths_accuracy"):
        assert after[key] == before[key], key
    r = run_entry("nas.search", tmp_path, "method=moga", "budget=smoke", *given,
                  "method.objectives=[accuracy,latency]", "method.nsga.weights=[0.5,0.5]",
                  run_dir="two")
    assert r.returncode == 0, r.stderr[-3000:]
    fig = tmp_path / "fig9.png"
    r = subprocess.run([sys.executable, str(REPO / "scripts" / "moga_params_objective.py"),
                        str(tmp_path / "three"), str(tmp_path / "two"), "--out", str(fig)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "accuracy + latency + params" in r.stdout and "accuracy + latency " in r.stdout
    assert fig.is_file() and json.loads(fig.with_suffix(".json").read_text())
    r = subprocess.run([sys.executable, str(REPO / "scripts" / "moga_params_objective.py"),
                        str(tmp_path / "three"), str(tmp_path / "nope")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.startswith(f"error: {tmp_path / 'nope'}: not a finished")

    wrong = tmp_path / "other.pt"
    torch.save({"stem.0.weight": torch.zeros(1)}, wrong)
    r = run_entry("nas.search", tmp_path, "method=moga", "budget=smoke",
                  f"method.supernet={wrong}", run_dir="refused")
    assert r.returncode == 2
    assert "other.pt: not a supernet of this search space" in r.stderr.strip().splitlines()[-1]


@pytest.mark.slow
def test_demo_supernet_paths_score_above_90_percent(tmp_path, run_entry):
    """Issue 13: with entangled choices the demo supernet learns; random paths and the
    selected network score above 90 % held out (independent choices stay near chance)."""
    r = run_entry("nas.search", tmp_path, "+experiment=moga_demo")
    assert r.returncode == 0, r.stderr[-3000:]
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["random_paths_accuracy"] >= 0.90 and result["accuracy"] >= 0.90


@pytest.mark.slow
def test_moga_stability_compares_searches_that_measure_their_own_tables(moga_smoke, tmp_path):
    """scripts/moga_stability.py: two smoke searches on one supernet, each measuring its own
    latency table; every selection predicted by both tables, pairs judged against the
    tables' stated errors; run 0 searched again on its own table as saved and x 1.03."""
    import subprocess
    import sys

    from tests.conftest import REPO

    tmp, _ = moga_smoke
    out = tmp_path / "stability"
    r = subprocess.run([sys.executable, str(REPO / "scripts" / "moga_stability.py"),
                        "--supernet", str(tmp / "run" / "supernet.pt"), "--runs", "2",
                        "--out-dir", str(out), "--perturb", "0.002", "--draws", "1",
                        "budget=smoke"],
                       capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert r.returncode in (0, 1), r.stderr[-3000:]
    s = json.loads((out / "stability.json").read_text())
    assert len(s["runs"]) == 2 and len(s["pairs"]) == 1
    pair = s["pairs"][0]
    assert pair["agree"] == (pair["latency_difference"] <= pair["stated_error"])
    assert len(pair["latency_difference_per_table"]) == 2   # both selections on each table
    assert pair["host_speed_ratio"] > 0                    # the same reference paths timed
    assert (r.returncode == 0) == s["all_agree"]
    for run in s["runs"]:
        own = run["predicted_by_each_table_ms"][run["run"]]
        assert own == pytest.approx(run["latency_ms"], rel=1e-9)   # its own table's figure
    assert "same network in" in r.stdout
    controls = {c["table"]: c for c in s["controls"]}
    assert set(controls) == {"as_saved", "times_1.03", "perturbed_0"}
    assert controls["as_saved"]["same_as_run0"]      # a saved table reproduces the search
    assert controls["times_1.03"]["same_as_run0"]    # NSGA-II does not see a uniform drift
    assert controls["times_1.03"]["latency_ms"] == pytest.approx(
        1.03 * s["runs"][0]["latency_ms"], rel=1e-9)
