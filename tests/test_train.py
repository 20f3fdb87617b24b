"""`python -m nas.train` end to end: configs, smoke training, resume, DDP, multirun, bad input."""

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from nas.arch.zoo import ZOO, get_spec
from nas.checkpoints import load_model
from nas.classifier import ClassifierModule, NonFiniteLoss
from nas.config import check
from nas.data import data_config, make_datamodule
from nas.memory_format import resolve
from nas.optim import OptimConfig
from nas.training import (BudgetConfig, LoggerConfig, TrainerConfig, train_arch,
                          with_budget_batch)

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
FAST = ["budget=smoke", "logger=none", "trainer.enable_progress_bar=false"]


def _train(tmp_path, *overrides, multirun=False, timeout=300):
    env = dict(os.environ, PYTHONPATH=str(REPO), WANDB_MODE="offline")
    cmd = [sys.executable, "-m", "nas.train", *(["-m"] if multirun else []), *overrides]
    if not multirun:
        cmd.append(f"hydra.run.dir={tmp_path / 'run'}")
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=timeout)


def _compose(*overrides):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("train", overrides=list(overrides))


# ------------------------------------------------------------------ configs


def test_every_group_option_composes_and_checks(tmp_path):
    for group, schema in [("trainer", TrainerConfig), ("logger", LoggerConfig),
                          ("budget", BudgetConfig), ("optim", OptimConfig)]:
        for option in sorted(p.stem for p in (CONF / group).glob("*.yaml")):
            cfg = _compose(f"{group}={option}")
            check(schema, cfg[group], group)
    for option in sorted(p.stem for p in (CONF / "data").glob("*.yaml")):
        root = [f"data.root={tmp_path}"] if option in ("cifar10", "cifar100", "imagenet") else []
        make_datamodule(_compose(f"data={option}", *root).data)


def test_paper_budget_picks_each_architectures_recipe():
    assert {p.stem for p in (CONF / "recipe" / "paper").glob("*.yaml")} == set(ZOO)
    expected = {"moga_a": ("rmsprop_tf", 0.1, 350), "atomnas_a_plus": ("rmsprop_tf", 0.016, 250),
                "rexnet_100": ("sgd", 0.5, 400), "darts_v2": ("sgd", 0.025, 600),
                "mobilenext_100": ("sgd", 0.05, 200)}
    for name in ZOO:
        cfg = _compose(f"arch={name}", "budget=paper")
        optim = check(OptimConfig, cfg.optim, "optim")
        budget = check(BudgetConfig, cfg.budget, "budget")
        if name in expected:
            assert (optim.name, optim.lr, budget.epochs) == expected[name]
    # An explicit value still wins over the recipe.
    assert _compose("arch=moga_a", "budget=paper", "optim.lr=0.2").optim.lr == 0.2
    assert _compose("arch=moga_a").optim.name == "sgd"  # demo keeps the default recipe


# ------------------------------------------------------------------ runs


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("smoke")
    r = _train(tmp, *FAST, "arch=mobilenetv2_035")
    assert r.returncode == 0, r.stderr[-3000:]
    return tmp / "run"


def test_smoke_run_writes_its_results(smoke_run):
    m = json.loads((smoke_run / "metrics.json").read_text())
    assert m["arch"] == "mobilenetv2_035" and m["global_step"] == 4 and m["epochs"] == 1
    assert m["onnx"]["parity"] and (smoke_run / "model.onnx").stat().st_size > 0
    assert (smoke_run / "arch.yaml").is_file() and (smoke_run / ".hydra" / "config.yaml").is_file()
    assert (smoke_run / "checkpoints" / "last.ckpt").is_file()
    assert (smoke_run / "checkpoints" / "best.ckpt").is_file()


def test_train_arch_with_a_seed_is_the_command_line_run_with_that_seed(tmp_path):
    """One route for the seed: `train_arch(..., seed=5)` from Python trains bit for bit what
    `python -m nas.train seed=5` trains (same machine, one thread each), batch order
    included; another seed trains something else."""
    r = _train(tmp_path, *FAST, "seed=5", "export_onnx=false")
    assert r.returncode == 0, r.stderr[-3000:]
    cli = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)

    def python_run(seed):
        budget = check(BudgetConfig, _compose("budget=smoke").budget, "budget")
        dm = make_datamodule(with_budget_batch(data_config({"name": "embedded"}), budget))
        spec = dataclasses.replace(get_spec("mobilenetv2_035", num_classes=dm.num_classes,
                                            input_size=dm.input_size),
                                   in_channels=dm.in_channels)
        run_dir = tmp_path / f"python_{seed}"
        train_arch(spec, dm, optim=OptimConfig(), budget=budget, run_dir=run_dir, seed=seed,
                   trainer=TrainerConfig(enable_progress_bar=False),
                   logger=LoggerConfig(csv=False, wandb=False), export=False)
        first_labels = next(iter(dm.train_dataloader()))[1]
        return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True), first_labels

    (same, labels), (other, other_labels) = python_run(5), python_run(6)
    same, other = same["state_dict"], other["state_dict"]
    assert not torch.equal(labels, other_labels)   # the seed reaches the batch order
    assert same.keys() == cli["state_dict"].keys()
    assert all(torch.equal(v, cli["state_dict"][k]) for k, v in same.items())
    assert not all(torch.equal(v, other[k]) for k, v in same.items())


def test_checkpoint_alone_rebuilds_and_evaluates_with_the_same_accuracy(smoke_run):
    m = json.loads((smoke_run / "metrics.json").read_text())
    model, spec = load_model(smoke_run / "checkpoints" / "last.ckpt")
    # Evaluated as the run's validation was (trainer.memory_format=auto: channels-last weights
    # on the CPU; batches of 16, one thread): the same computation, so the same logits and
    # argmax bit for bit. In NCHW the logits differ in the last float32 bits, and a sample
    # whose top two logits nearly tie could flip on some CPUs.
    model.to(memory_format=resolve(TrainerConfig().memory_format, torch.device("cpu")))
    dm = make_datamodule({"name": "embedded", "batch_size": 16, "eval_batch_size": 16})
    correct = total = 0
    with torch.no_grad():
        for i, (x, y) in enumerate(dm.val_dataloader()):
            if i == 2:  # the smoke budget evaluates two batches
                break
            correct += (model(x).argmax(1) == y).sum().item()
            total += len(y)
    assert spec.name == "mobilenetv2_035"
    assert correct / total == pytest.approx(m["final_val_top1"], abs=1e-6)


def test_resume_continues_from_the_saved_step(smoke_run, tmp_path):
    last = smoke_run / "checkpoints" / "last.ckpt"
    r = _train(tmp_path, *FAST, "arch=mobilenetv2_035", f"ckpt_path={last}", "budget.epochs=2")
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert (m["epochs"], m["global_step"]) == (2, 8)


def test_ddp_with_two_cpu_processes(tmp_path):
    r = _train(tmp_path, *FAST, "arch=mobilenetv2_035", "trainer=ddp", "trainer.accelerator=cpu",
               "trainer.devices=2", "trainer.sync_batchnorm=false", "export_onnx=false")
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["global_step"] == 4  # 4 batches per process, in step
    assert m["world_size"] == 2


def test_multirun_trains_each_architecture(tmp_path):
    r = _train(tmp_path, *FAST, "data=synthetic", "export_onnx=false", "arch=moga_a,moga_b",
               "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
               f"hydra.sweep.dir={tmp_path / 'sweep'}", multirun=True)
    assert r.returncode == 0, r.stderr[-3000:]
    runs = sorted((tmp_path / "sweep").glob("*/metrics.json"))
    assert [json.loads(p.read_text())["arch"] for p in runs] == ["moga_a", "moga_b"]


# ------------------------------------------------------------------ bad input


def _fails(tmp_path, *overrides):
    r = _train(tmp_path, *FAST, *overrides)
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert not (tmp_path / "run" / "checkpoints").exists()
    return lines[0]


def test_unknown_arch_lists_close_names(tmp_path):
    assert "did you mean moga_a" in _fails(tmp_path, "arch=moga_aa")
    msg = _fails(tmp_path, "+arch.name=x", "arch=file", f"arch.path={tmp_path / 'nope.yaml'}")
    assert "nope.yaml: cannot read arch file" in msg


def test_unknown_zoo_name_in_arch_config(tmp_path):
    msg = _fails(tmp_path, "arch=moga_a", "arch.name=moga_x")
    assert "unknown architecture 'moga_x'" in msg and "moga_a" in msg


def test_missing_data_root_names_path_and_layout(tmp_path):
    msg = _fails(tmp_path, "data=cifar10", f"data.root={tmp_path / 'nowhere'}")
    assert str(tmp_path / "nowhere") in msg and "cifar-10-batches-py" in msg


@pytest.mark.parametrize("override,needle", [
    ("budget.epochs=0", "budget.epochs"), ("optim.lr=-1", "optim.lr"),
    ("data.batch_size=abc", "data.batch_size"), ("trainer.precision=8", "trainer.precision"),
    ("trainer.memory_format=nhwc", "trainer.memory_format"),
    ("+optim.bogus=1", "optim.bogus"),
])
def test_invalid_config_values_rejected_before_work(tmp_path, override, needle):
    assert needle in _fails(tmp_path, override)


def test_bad_checkpoints(tmp_path, smoke_run):
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a checkpoint at all")
    assert "not a readable checkpoint" in _fails(tmp_path, f"ckpt_path={junk}")
    plain = tmp_path / "plain.ckpt"
    torch.save({"state_dict": {}}, plain)
    assert "not a nas training checkpoint" in _fails(tmp_path, f"ckpt_path={plain}")
    other = smoke_run / "checkpoints" / "last.ckpt"
    before = sorted(p.name for p in smoke_run.rglob("*"))
    msg = _fails(tmp_path, "arch=moga_a", f"ckpt_path={other}")
    assert "mobilenetv2_035" in msg and "moga_a" in msg
    assert sorted(p.name for p in smoke_run.rglob("*")) == before
    assert "no such checkpoint" in _fails(tmp_path, f"ckpt_path={tmp_path / 'missing.ckpt'}")


def test_non_finite_loss_stops_with_a_message():
    from nas.arch.zoo import get_spec

    module = ClassifierModule(get_spec("mobilenetv2_035", num_classes=10, input_size=32),
                              OptimConfig(), batch_size=2)
    x = torch.full((2, 3, 32, 32), float("nan"))
    with pytest.raises(NonFiniteLoss, match="non-finite training loss"):
        module.training_step((x, torch.tensor([0, 1])), 0)


def test_slurm_launcher_config_composes():
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=["hydra/launcher=slurm", "trainer=ddp", "trainer.devices=4"],
                      return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.gpus_per_node, launcher.tasks_per_node) == (4, 4)


# The smallest network of each family (every block type, LightNL, the cell network): the
# default run; all 40 zoo networks take about 4 CPU-minutes (slow).
ONE_PER_FAMILY = ["mobilenetv2_035", "moga_c", "autonl_s", "atomnas_a", "rexnet_090",
                  "rexnet_lite_100", "mobilenext_035", "mobilenext_effnet_b0", "darts_v1"]


@pytest.mark.parametrize("archs", [pytest.param(ONE_PER_FAMILY, id="one_per_family"),
                                   pytest.param(list(ZOO), id="every", marks=pytest.mark.slow)])
def test_smoke_budget_trains_every_zoo_architecture(tmp_path, archs):
    assert set(archs) <= set(ZOO)
    # Two jobs at a time: the test subprocesses run one thread each (conftest).
    r = _train(tmp_path, *FAST, f"arch={','.join(archs)}",
               f"hydra.sweep.dir={tmp_path / 'sweep'}", "hydra/launcher=joblib",
               "hydra.launcher.n_jobs=2", multirun=True, timeout=1800)
    assert r.returncode == 0, r.stderr[-3000:]
    runs = [json.loads(p.read_text()) for p in (tmp_path / "sweep").glob("*/metrics.json")]
    assert sorted(m["arch"] for m in runs) == sorted(archs)
    assert all(m["onnx"]["parity"] for m in runs)


def test_default_logger_writes_wandb_offline_and_csv(tmp_path):
    r = _train(tmp_path, "budget=smoke", "trainer.enable_progress_bar=false", "export_onnx=false",
               "data=synthetic", "arch=moga_c")
    assert r.returncode == 0, r.stderr[-3000:]
    run = tmp_path / "run"
    assert list((run / "wandb").glob("offline-run-*")), "wandb wrote no offline run"
    assert (run / "csv" / "metrics.csv").is_file()


def test_each_job_of_a_multirun_gets_its_own_wandb_run(tmp_path):
    """Hydra's basic launcher and joblib's workers run several jobs in one process; the
    second job's WandbLogger reused the first job's open run, logging into its directory."""
    import wandb

    from nas.trainer import LoggerConfig, make_loggers

    ids = []
    for job in ("a", "b"):
        (logger,) = make_loggers(LoggerConfig(csv=False), tmp_path / job, job)
        logger.experiment.log({"x": 1.0})
        ids.append(logger.experiment.id)
    wandb.finish()
    assert ids[0] != ids[1]
    assert list((tmp_path / "b" / "wandb").glob("offline-run-*"))


@pytest.mark.slow
def test_demo_budget_reaches_95_percent_on_embedded_mnist(tmp_path):
    r = _train(tmp_path, "logger=none", "trainer.enable_progress_bar=false", timeout=1200)
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["arch"] == "mobilenetv2_035" and m["best_val_top1"] >= 0.95


def test_a_text_file_given_as_a_checkpoint_is_one_line(tmp_path):
    """It failed inside torch's unpickler with a bare KeyError (IndexError for other text)."""
    from nas.checkpoints import CheckpointError, read_checkpoint

    for i, text in enumerate(["hello world\nthis is text\n", "x" * 64, "PK\x03\x04 broken"]):
        path = tmp_path / f"text{i}.ckpt"
        path.write_text(text)
        with pytest.raises(CheckpointError, match=rf"text{i}.ckpt: not a readable checkpoint") as e:
            read_checkpoint(path)
        assert "\n" not in str(e.value)


def test_an_architecture_too_large_for_memory_is_refused_with_its_size(tmp_path):
    """It failed with a 96 GB allocation inside the builder; now nothing is allocated."""
    import dataclasses

    from nas.arch import io
    from nas.arch.zoo import get_spec
    from nas.cost import count
    from nas.cost.memory import check_fits

    small = get_spec("mobilenetv2_035", num_classes=10, input_size=32)
    check_fits(small, 128, "cpu")                         # a real network fits
    blocks = list(small.blocks)
    blocks[-1] = dataclasses.replace(blocks[-1], out=20_000_000)  # about 300 GB of weights
    huge = dataclasses.replace(small, blocks=blocks, name="huge")
    path = tmp_path / "huge.yaml"
    io.save(huge, path)
    r = _train(tmp_path, "arch=file", f"arch.path={path}", *FAST)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, r.stderr[-2000:]
    assert lines[0].startswith("error: arch: huge cannot be trained here: at batch 16 it needs "
                               "at least ")
    assert f"({count(huge).params:,} params, " in lines[0]
    assert not (tmp_path / "run" / "arch.yaml").exists()
