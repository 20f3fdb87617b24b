"""Every search on several devices: `budget=smoke trainer=ddp` with two CPU processes (gloo)
writes the same kind of result as the one-process smoke run (ReXNet: its candidate trainings
run on the two devices)."""

import json

import pytest

DDP = ("trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2",
       "trainer.sync_batchnorm=false")
# Written by the DDP launcher (Lightning's log of the second process), not by the search.
LAUNCHER_FILES = {"train_ddp_process_1.log"}


def _files(run):
    return {p.name for p in run.iterdir() if not p.name.startswith(".")} - LAUNCHER_FILES


@pytest.mark.slow
@pytest.mark.parametrize("method", ["moga", "atomnas", "darts", "autonl", "rexnet"])
def test_every_search_runs_on_two_devices(method, smoke_search, run_entry, tmp_path):
    extra = ("method.evaluator.backend=hydra", "method.evaluator.launcher=basic") \
        if method == "rexnet" else ()
    r = run_entry("nas.search", tmp_path, f"method={method}", "budget=smoke", *DDP, *extra)
    assert r.returncode == 0, r.stderr[-3000:]
    alone, _ = smoke_search(method)
    run, single = tmp_path / "run", alone / "run"
    result = json.loads((run / "result.json").read_text())
    assert set(result) == set(json.loads((single / "result.json").read_text()))
    assert _files(run) == _files(single)
    if method == "rexnet":
        trainings = sorted((run / "trainings").glob("c*_r*/metrics.json"))
        assert trainings and all(json.loads(p.read_text())["world_size"] == 2
                                 for p in trainings)
    if method == "atomnas":
        assert result["shrinks"] >= 1 and result["macs"] < result["supernet_macs"]


def test_in_process_trainings_on_several_devices_are_refused(run_entry, tmp_path):
    r = run_entry("nas.search", tmp_path, "method=rexnet", "budget=smoke", *DDP)
    assert r.returncode == 2
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("error: evaluator.backend: inprocess trains in this process")
    assert "trainer.devices=2" in last and "expected backend hydra" in last
    assert not (tmp_path / "run" / "trainings" / "c000_r0").exists()
