"""AtomNAS end to end: the smoke search in a subprocess (shrinks, outputs, the evaluate command
reproduces the reported accuracy), resuming a shrunk run, the lambda sweep, bad config."""

import csv
import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import load_script
import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint

from nas.arch import io
from nas.config import check
from nas.cost import count
from nas.data import data_config, make_datamodule
from nas.memory_format import MemoryFormat, is_channels_last
from nas.checkpoints import CheckpointError
from nas.methods.atomnas.search import (AtomNASConfig, AtomNASModule, supernet_spec,
                                 verify_shrunk_weights)
from nas.methods.stage import check_stage_resume

REPO = Path(__file__).resolve().parents[1]


def test_smoke_search_shrinks_and_writes_every_output(atomnas_smoke):
    tmp, r = atomnas_smoke
    run = tmp / "run"
    for name in ("arch.yaml", "model.ckpt", "flops.csv", "flops.png", "atoms.png", "result.json",
                 "checkpoints/last.ckpt"):
        assert (run / name).is_file(), name
    result = json.loads((run / "result.json").read_text())
    rows = list(csv.DictReader((run / "flops.csv").open()))
    macs = [int(row["macs"]) for row in rows]
    assert any(row["shrunk"] == "True" for row in rows)
    assert macs == sorted(macs, reverse=True) and macs[-1] < macs[0]
    spec = io.load(run / "arch.yaml")
    assert count(spec).macs == result["macs"] == macs[-1] < result["supernet_macs"]
    assert "weights=" in r.stdout and "evaluate_only=true" in r.stdout


def test_evaluating_model_ckpt_gives_the_reported_accuracy(atomnas_smoke, tmp_path, run_entry):
    tmp, _ = atomnas_smoke
    result = json.loads((tmp / "run" / "result.json").read_text())
    r = run_entry("nas.train", tmp_path, "arch=file", f"arch.path={tmp / 'run' / 'arch.yaml'}",
             f"weights={result['model_ckpt']}", "evaluate_only=true", "export_onnx=false")
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["arch"] == "atomnas_searched" and m["macs"] == result["macs"]
    assert m["final_val_top1"] == pytest.approx(result["val_top1"], abs=1e-9)


def _module(tmp_path, **overrides):
    base = OmegaConf.load(REPO / "conf" / "method" / "atomnas.yaml")
    base.pop("_target_")
    conf = OmegaConf.merge(base,
                           {"width": 0.25, "init": "torchvision", "lam_scale": 100.0,
                            "dead_threshold": 0.9999, "recalibration_steps": 1,
                            "optim": {"warmup_epochs": 0.0}}, overrides)
    cfg = check(AtomNASConfig, conf, "method")
    data = make_datamodule(data_config(OmegaConf.create(
        {"name": "embedded", "batch_size": 16, "eval_batch_size": 16})))
    spec = supernet_spec(cfg, num_classes=data.num_classes, input_size=data.input_size,
                         in_channels=data.in_channels)
    return AtomNASModule(spec, cfg, batch_size=16), data


def _trainer(tmp_path, epochs):
    return pl.Trainer(max_epochs=epochs, limit_train_batches=3, limit_val_batches=1,
                      logger=False, enable_progress_bar=False, enable_model_summary=False,
                      num_sanity_val_steps=0, accelerator="cpu", default_root_dir=str(tmp_path),
                      callbacks=[MemoryFormat("channels_last"),
                                 ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True,
                                                 save_top_k=0)])


def _assert_channels_last(module, optimizer):
    """Rebuilt layers follow the trainer's layout: weights, their EMA and optimizer state."""
    weights = [p for p in module.model.net.parameters() if p.dim() == 4]
    assert weights and all(is_channels_last(p) for p in weights)
    assert all(is_channels_last(p) for p in module.ema_model.parameters() if p.dim() == 4)
    for p in weights:
        for v in optimizer.state[p].values():
            if isinstance(v, torch.Tensor) and v.shape == p.shape:
                assert v.stride() == p.stride()


def test_resume_after_shrink_rebuilds_the_shrunk_network(tmp_path):
    pl.seed_everything(0)
    module, data = _module(tmp_path)
    _trainer(tmp_path, 2).fit(module, datamodule=data)
    shrunk = module.spec
    assert count(shrunk).macs < count(module.supernet_spec).macs
    # The live model, its EMA and the optimizer all follow the shrink.
    assert sum(p.numel() for p in module.model.net.parameters()) == count(shrunk).params
    assert {k: v.shape for k, v in module.ema_model.state_dict().items()} == \
        {k: v.shape for k, v in module.model.net.state_dict().items()}
    _assert_channels_last(module, module.trainer.optimizers[0])
    ckpt = torch.load(tmp_path / "ckpt" / "last.ckpt", map_location="cpu", weights_only=True)
    assert io.loads(ckpt["nas"]["arch_yaml"]) == shrunk

    resumed, _ = _module(tmp_path)  # built as the supernet, as a fresh process would
    trainer = _trainer(tmp_path, 3)
    trainer.fit(resumed, datamodule=data, ckpt_path=str(tmp_path / "ckpt" / "last.ckpt"))
    assert trainer.global_step == 9
    assert count(resumed.spec).macs <= count(shrunk).macs
    assert sum(p.numel() for p in resumed.model.net.parameters()) == count(resumed.spec).params
    opt_params = {id(p) for g in trainer.optimizers[0].param_groups for p in g["params"]}
    assert opt_params == {id(p) for p in resumed.model.net.parameters()}
    _assert_channels_last(resumed, trainer.optimizers[0])
    assert [h["epoch"] for h in resumed.history][:len(module.history)] == \
        [h["epoch"] for h in module.history]


def test_lambda_sweep_gives_fewer_macs_for_larger_lambda(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "nas.search", "-m", "method=atomnas", "budget=smoke",
         "method.lam=1.0e-4,1.8e-4,5.0e-4", "logger=none", "trainer.enable_progress_bar=false",
         f"hydra.sweep.dir={tmp_path / 'sweep'}"],
        cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True,
        text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    results = [json.loads((tmp_path / "sweep" / f"{i}_atomnas" / "result.json").read_text())
               for i in range(3)]
    assert [res["lam"] for res in results] == [1.0e-4, 1.8e-4, 5.0e-4]
    macs = [res["macs"] for res in results]
    assert macs[0] > macs[1] > macs[2], macs


def test_bad_atomnas_config_is_one_line(tmp_path, run_entry):
    r = run_entry("nas.search", tmp_path, "method=atomnas", "budget=smoke", "method.penalty=l2")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1].startswith("error: method.penalty: expected one of")


def test_resume_dir_finishes_a_killed_atomnas_run(atomnas_smoke, tmp_path, run_entry):
    tmp, _ = atomnas_smoke
    run = tmp_path / "killed"
    shutil.copytree(tmp / "run", run)
    before = json.loads((run / "result.json").read_text())
    for name in ("result.json", "model.ckpt", "arch.yaml", "flops.csv"):
        (run / name).unlink()
    # The default method is moga: the saved run's method, data and budget must win.
    r = run_entry("nas.search", tmp_path, f"resume_dir={run}", run_dir="resumer")
    assert r.returncode == 0, r.stderr[-3000:]
    after = json.loads((run / "result.json").read_text())
    assert after["method"] == "atomnas" and after["macs"] == before["macs"]
    assert after["val_top1"] == pytest.approx(before["val_top1"], abs=1e-9)
    assert (run / "model.ckpt").is_file() and (run / "flops.csv").is_file()


def test_resume_refuses_a_checkpoint_of_another_search(atomnas_smoke, tmp_path):
    tmp, _ = atomnas_smoke
    last = tmp / "run" / "checkpoints" / "last.ckpt"
    ckpt = torch.load(last, map_location="cpu", weights_only=True)
    identity = ckpt["nas"]["search"]["identity"]   # the supernet the stage trained
    supernet = io.loads(identity)

    def check_resume(path, spec):
        check_stage_resume(path, "atomnas", io.dumps(spec), verify_shrunk_weights)

    check_resume(last, supernet)  # its own supernet: accepted
    other = dataclasses.replace(supernet, num_classes=supernet.num_classes + 1)
    with pytest.raises(CheckpointError, match="atomnas search stage over another network"):
        check_resume(last, other)

    def broken(edit, name):
        c = torch.load(last, map_location="cpu", weights_only=True)
        edit(c)
        torch.save(c, tmp_path / name)
        return tmp_path / name

    no_entry = broken(lambda c: c["nas"].pop("search"), "plain.ckpt")
    with pytest.raises(CheckpointError, match="not a checkpoint of the atomnas search stage"):
        check_resume(no_entry, supernet)
    key = next(k for k in ckpt["state_dict"] if k.startswith("model.ema.") and
               k.endswith(".weight"))
    cut = broken(lambda c: c["state_dict"].__setitem__(key, c["state_dict"][key][:1]), "cut.ckpt")
    with pytest.raises(CheckpointError, match="weight EMA weights do not fit"):
        check_resume(cut, supernet)


def test_bench_atomnas_runs_and_reports_the_ratio(capsys):
    bench = load_script("bench_atomnas")
    rc = bench.main(["--epochs", "2", "--train-batches", "2", "--lam-scale", "3000",
                     "--max-ratio", "100", "--repeats", "2"])
    out = capsys.readouterr().out
    assert rc == 0 and "step time by architecture" in out
    assert "repeat 2:" in out and "median of 2" in out
    assert "search " in out and "scratch " in out


def test_weights_of_another_architecture_is_one_line(atomnas_smoke, tmp_path, run_entry):
    tmp, _ = atomnas_smoke
    r = run_entry("nas.train", tmp_path, "arch=mobilenetv2_035",
                  f"weights={tmp / 'run' / 'model.ckpt'}",
             "evaluate_only=true", "export_onnx=false")
    assert r.returncode == 2
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "atomnas_searched" in last and "arch.yaml" in last


def _ddp_script(out: Path, *overrides: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, str(REPO / "tests" / "atomnas_ddp.py"), str(out),
                           *overrides], cwd=out, env=env, capture_output=True, text=True,
                          timeout=600)


def test_shrinking_under_ddp_keeps_every_rank_on_the_same_network(tmp_path):
    """Two CPU processes (gloo), per-device batch 16: every shrink re-wraps DDP, and both
    ranks end with the same architecture and the same weights, bit for bit. Against one
    process with the same global batch (32): the same steps, number of shrinks and EMA
    decay, and the final MACs within 25 %. Not closer, because per-rank BN normalises each half batch by its
    own statistics (SyncBatchNorm runs on CUDA only), which changes every gradient a little,
    and at the smoke scale's threshold (0.9999, just under the initial BN scale) whether an
    atom dies turns on the sign of its first small updates: two one-process runs that differ
    only in float rounding (one thread or two) already keep 237 k and 250 k MACs, and this
    DDP run 275 k (measured on epyc-2c)."""
    ddp, one = tmp_path / "ddp", tmp_path / "one"
    ddp.mkdir()
    one.mkdir()
    r = _ddp_script(ddp, "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2",
                    "trainer.sync_batchnorm=false")
    assert r.returncode == 0, r.stderr[-3000:]
    r = _ddp_script(one, "budget.batch_size=32")
    assert r.returncode == 0, r.stderr[-3000:]
    ranks = [torch.load(ddp / f"rank{k}.pt", weights_only=True) for k in (0, 1)]
    assert ranks[0]["arch_yaml"] == ranks[1]["arch_yaml"]
    assert ranks[0]["state_dict"].keys() == ranks[1]["state_dict"].keys()
    assert all(torch.equal(v, ranks[1]["state_dict"][k]) for k, v in ranks[0]["state_dict"].items())
    result = json.loads((ddp / "run" / "result.json").read_text())
    alone = json.loads((one / "run" / "result.json").read_text())
    assert result["shrinks"] == alone["shrinks"] >= 2
    assert result["global_step"] == alone["global_step"]
    # beta follows the global batch, as the lr does: 2 x 16 images per update, as one x 32
    assert result["ema_decay"] == alone["ema_decay"]
    assert result["macs"] < result["supernet_macs"] / 2
    assert abs(result["macs"] - alone["macs"]) <= 0.25 * alone["macs"]
    assert io.loads(ranks[0]["arch_yaml"]) == io.load(ddp / "run" / "arch.yaml")
    # the model.ckpt rank zero wrote holds the weights every rank handed back
    saved = torch.load(ddp / "run" / "model.ckpt", weights_only=True)["state_dict"]
    assert all(torch.equal(saved[f"model.{k}"], v) for k, v in ranks[0]["state_dict"].items())
