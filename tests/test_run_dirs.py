"""A directory that holds a run is never written into by another: nas.train and nas.search
stop with one line and exit status 2 and every earlier file stays byte-identical; only the
documented resume continues a run (resume_dir= for searches, checked first)."""

import shutil

import pytest

from nas.run_dirs import occupied_message

SMALL = ["budget=smoke", "export_onnx=false"]


def _snapshot(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _refused(r):
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2, r.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr[-3000:]
    return lines[0]


@pytest.fixture(scope="module")
def finished_training(tmp_path_factory, run_entry):
    tmp = tmp_path_factory.mktemp("trained")
    r = run_entry("nas.train", tmp, *SMALL, logger="csv")
    assert r.returncode == 0, r.stderr[-3000:]
    return tmp / "run"


def test_a_finished_training_run_is_never_written_into(finished_training, run_entry):
    run = finished_training
    before = _snapshot(run)
    for module, overrides in (("nas.train", SMALL), ("nas.train", ["arch=moga_a", *SMALL]),
                              ("nas.search", ["method=moga", "budget=smoke"])):
        line = _refused(run_entry(module, run.parent, *overrides, logger="csv"))
        assert line == (f"error: hydra.run.dir: {run} already holds a finished train run "
                        f"(.hydra, arch.yaml, checkpoints, csv, ...); nothing was written; "
                        f"start in a new directory (leave hydra.run.dir unset, or name one that does "
                        f"not exist)")
    assert _snapshot(run) == before


def test_an_unfinished_training_run_names_its_resume(finished_training, tmp_path, run_entry):
    run = tmp_path / "killed"
    shutil.copytree(finished_training, run)
    (run / "metrics.json").unlink()
    before = _snapshot(run)
    line = _refused(run_entry("nas.train", tmp_path, *SMALL, run_dir="killed"))
    assert "already holds an unfinished train run" in line
    assert line.endswith(f"or train on from its last checkpoint, in a new directory, with "
                         f"ckpt_path={run}/checkpoints/last.ckpt")
    assert _snapshot(run) == before


def test_resume_dir_takes_only_an_unfinished_search(finished_training, moga_smoke, tmp_path,
                                                    run_entry):
    before = _snapshot(finished_training)
    line = _refused(run_entry("nas.search", tmp_path, f"resume_dir={finished_training}"))
    assert line.startswith(f"error: resume_dir: {finished_training} is not a search run")
    assert _snapshot(finished_training) == before

    search = moga_smoke[0] / "run"
    before = _snapshot(search)
    line = _refused(run_entry("nas.search", tmp_path, f"resume_dir={search}", run_dir="r2"))
    assert line.startswith(f"error: resume_dir: {search} holds a finished search")
    # and pointing a new search at it is refused too
    line = _refused(run_entry("nas.search", search.parent, "method=moga", "budget=smoke"))
    assert line.startswith(f"error: hydra.run.dir: {search} already holds a finished search run")
    assert _snapshot(search) == before


def test_an_occupied_sweep_directory_is_refused(finished_training, tmp_path, run_entry):
    sweep = finished_training.parent
    before = _snapshot(sweep)
    line = _refused(run_entry("nas.train", tmp_path, "-m", *SMALL, f"hydra.sweep.dir={sweep}"))
    assert line.startswith(f"error: hydra.sweep.dir: {sweep} already holds files of another run")
    assert _snapshot(sweep) == before


def test_free_directories_are_accepted(tmp_path):
    assert occupied_message(tmp_path / "new", "hydra.run.dir", "train") is None
    assert occupied_message(tmp_path, "hydra.run.dir", "train") is None       # empty
    (tmp_path / ".hydra").mkdir()
    (tmp_path / "train.log").write_text("a run stopped by bad input")
    assert occupied_message(tmp_path, "hydra.run.dir", "train") is None       # Hydra's record
    (tmp_path / "f").write_text("x")
    assert "is a file, not a run directory" in occupied_message(tmp_path / "f", "k", "train")
