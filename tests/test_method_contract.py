"""The shared pieces the searches stand on: a method defined outside `nas/` runs through
`python -m nas.search` from its config alone, the training library works without Hydra,
the run's `seed` reaches NSGA-II, a searched architecture trains with its search's paper
recipe, and every supernet implements the one protocol."""

import json
import shlex
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from nas.arch.builder import build
from nas.config import ConfigError
from nas.data import make_datamodule
from nas.methods.atomnas.search import AtomNASConfig, supernet_spec
from nas.optim import OptimConfig
from nas.search.runner import method_class
from nas.supernet.base import Supernet
from nas.methods.atomnas.prunable import PrunableChain
from nas.trainer import BudgetConfig, LoggerConfig, TrainerConfig
from nas.training import train_arch

TOY = Path(__file__).resolve().parent / "toy_method"


def test_a_method_outside_nas_is_one_module_plus_its_config(tmp_path, run_entry):
    r = run_entry("nas.search", tmp_path, "method=toy", "budget=smoke",
                  f"hydra.searchpath=[file://{TOY / 'conf'}]", pythonpath=[TOY])
    assert r.returncode == 0, r.stderr[-3000:]
    run = tmp_path / "run"
    result = json.loads((run / "result.json").read_text())
    assert result["method"] == "toy" and result["candidates"] == 2  # its smoke budget
    assert result["recipe"] == "moga_a" and (run / "arch.yaml").is_file()
    assert sorted(p.name for p in (run / "candidates").iterdir()) == ["0", "1"]
    line = next(ln.strip() for ln in r.stdout.splitlines() if ln.strip().startswith("python -m"))
    t = run_entry("nas.train", tmp_path, *shlex.split(line)[3:], "budget=smoke",
                  "export_onnx=false", run_dir="trained")
    assert t.returncode == 0, t.stderr[-3000:]
    assert json.loads((tmp_path / "trained" / "metrics.json").read_text())["arch"] == \
        "toy_searched"


def test_a_bad_method_target_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match=r"^method._target_: cannot import nas.methods.nope"):
        method_class({"_target_": "nas.methods.nope.Nope"})
    with pytest.raises(ConfigError, match=r"is not a nas.methods.base.Method subclass"):
        method_class({"_target_": "nas.optim.OptimConfig"})


def test_training_library_runs_without_hydra(tmp_path):
    from hydra.core.hydra_config import HydraConfig

    assert not HydraConfig.initialized()
    data = make_datamodule({"name": "synthetic", "batch_size": 16, "eval_batch_size": 16,
                            "train_size": 64, "val_size": 32, "test_size": 32})
    from nas.arch.zoo import get_spec

    spec = get_spec("mobilenetv2_035", num_classes=data.num_classes, input_size=data.input_size)
    metrics = train_arch(spec, data, optim=OptimConfig(), run_dir=tmp_path / "run",
                         budget=BudgetConfig(epochs=1, limit_train_batches=2),
                         trainer=TrainerConfig(accelerator="cpu", enable_progress_bar=False),
                         logger=LoggerConfig(wandb=False), export=False)
    assert metrics["global_step"] == 2 and metrics["arch"] == "mobilenetv2_035"
    assert json.loads((tmp_path / "run" / "metrics.json").read_text()) == metrics
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()
    assert (tmp_path / "run" / "csv" / "metrics.csv").is_file()


def test_a_trainer_option_a_stage_cannot_honour_stops_it(tmp_path):
    from nas.trainer import make_trainer

    with pytest.raises(ConfigError, match=r"^trainer.sync_batchnorm: SyncBatchNorm runs on CUDA"):
        make_trainer(tmp_path, TrainerConfig(accelerator="cpu", sync_batchnorm=True),
                     BudgetConfig(), LoggerConfig(csv=False, wandb=False), name="x", seed=0)


def test_the_run_seed_reaches_nsga(moga_smoke, tmp_path, run_entry):
    """The same supernet and latency table searched with seed=7 instead of 0: NSGA-II draws
    another stream (before, method.nsga.seed stayed 0 whatever the run's seed)."""
    tmp, _ = moga_smoke
    run = tmp_path / "seed7"
    shutil.copytree(tmp / "run", run)
    for name in ("nsga_state.json", "result.json", "arch.yaml", "pareto.csv"):
        (run / name).unlink()
    saved = run / ".hydra" / "config.yaml"
    cfg = yaml.safe_load(saved.read_text())
    cfg["seed"] = 7
    saved.write_text(yaml.safe_dump(cfg))
    r = run_entry("nas.search", tmp_path, f"resume_dir={run}", run_dir="resumer")
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads((run / "nsga_state.json").read_text())["fingerprint"]["seed"] == 7
    assert (run / "pareto.csv").read_text() != (tmp / "run" / "pareto.csv").read_text()


def test_paper_budget_of_a_searched_arch_uses_its_search_recipe(moga_smoke, tmp_path,
                                                                 run_entry):
    tmp, _ = moga_smoke
    arch = tmp / "run" / "arch.yaml"
    small = ["budget.epochs=1", "budget.limit_train_batches=1", "budget.limit_val_batches=1",
             "budget.limit_test_batches=1", "budget.batch_size=8", "export_onnx=false"]
    r = run_entry("nas.train", tmp_path, "arch=file", f"arch.path={arch}", "budget=paper",
                  *small, logger="csv")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "training with recipe=paper/moga_a" in r.stdout
    hparams = yaml.safe_load((tmp_path / "run" / "csv" / "hparams.yaml").read_text())
    optim = hparams["config"]["optim"]
    assert (optim["name"], optim["lr"], optim["lr_reference_batch"]) == ("rmsprop_tf", 0.1, 4096)
    assert hparams["config"]["budget"]["epochs"] == 1  # the command line still wins

    alone = tmp_path / "alone" / "arch.yaml"  # no result.json beside it
    alone.parent.mkdir()
    shutil.copy(arch, alone)
    r = run_entry("nas.train", tmp_path, "arch=file", f"arch.path={alone}", "budget=paper",
                  *small, run_dir="refused")
    assert r.returncode == 2 and not (tmp_path / "refused" / "metrics.json").exists()
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("error: budget=paper:") and "recipe=paper/<zoo name>" in last


def _supernets() -> dict:
    """One small instance of each implementation, the input size it takes, and whether it
    runs a choice other than its own pick: (export, recalibrate)."""
    from nas.arch.zoo import get_spec
    from nas.methods.autonl.superkernel import SuperkernelNet, autonl_space
    from nas.methods.darts.cells import CellSearchSpace, CellSupernet
    from nas.methods.moga.search import moga_space
    from nas.methods.moga.supernet import ChainSupernet

    atomnas = supernet_spec(AtomNASConfig(width=0.25, stem_stride=2), num_classes=10,
                            input_size=32, in_channels=3)
    darts = CellSearchSpace(("none", "skip_connect", "sep_conv_3x3", "max_pool_3x3"),
                            get_spec("darts_v2", num_classes=10, input_size=16))
    return {
        "chain (MoGA)": (ChainSupernet(moga_space(width=0.25, num_classes=10, input_size=32)),
                         32, (True, True)),
        "prunable (AtomNAS)": (PrunableChain(atomnas), 32, (False, False)),
        "superkernel (AutoNL)": (SuperkernelNet(autonl_space(width=0.25, stem_stride=1,
                                                             num_classes=10, input_size=16)),
                                 16, (True, False)),
        "cells (DARTS)": (CellSupernet(darts, channels=4, layers=3), 16, (True, False)),
    }


@pytest.mark.parametrize("kind", ["chain (MoGA)", "prunable (AtomNAS)", "superkernel (AutoNL)",
                                  "cells (DARTS)"])
def test_every_supernet_answers_the_protocol_with_one_meaning_of_choice(kind):
    """Called only through `Supernet` and `hand_back` (the search stage's consumer): a
    vector is that architecture, None the supernet's own pick; a choice it cannot run is
    one ChoiceError of one form."""
    from nas.supernet.base import ChoiceError, hand_back

    net, size, (exports_any, recalibrates_any) = _supernets()[kind]
    assert isinstance(net, Supernet)
    supernet: Supernet = net
    batches = [(torch.randn(4, 3, size, size), None) for _ in range(2)]
    own = supernet.choice()
    samples = (supernet.space.sample(torch.Generator().manual_seed(s)) for s in range(50))
    other = next(v for v in samples if v != own)
    if own is not None:
        assert supernet.space.check(own) == own
        handed = hand_back(supernet, "found", batches=batches, steps=2)
        assert handed.spec.name == "found"
        assert handed.spec == supernet.export(own, name="found").spec
        assert supernet.recalibrate(batches, 2) == 2
        assert supernet.recalibrate(batches, 2, own) == 2
        model = build(handed.spec)
        if handed.state_dict is not None:
            model.load_state_dict(handed.state_dict)
        assert model(batches[0][0]).shape == (4, 10)
    else:
        with pytest.raises(ChoiceError, match="has no pick of its own; expected a decision"):
            hand_back(supernet, "found")
    only_own = "runs only its own pick; decision '"
    if exports_any:
        assert supernet.export(other, name="x").spec == supernet.space.to_spec(other, "x")
    else:
        with pytest.raises(ChoiceError, match=only_own):
            supernet.export(other)
    if recalibrates_any:
        assert supernet.recalibrate(batches, 2, other) == 2
    else:
        with pytest.raises(ChoiceError, match=only_own):
            supernet.recalibrate(batches, 2, other)
    with pytest.raises(ValueError, match="expected .* decisions"):
        supernet.export([0])


def test_the_atomnas_hand_back_is_its_ema_network():
    """The prunable network hands back the atoms alive with the EMA weights it evaluates."""
    from nas.supernet.base import hand_back

    prunable = PrunableChain(supernet_spec(AtomNASConfig(width=0.25, stem_stride=2),
                                           num_classes=10, input_size=32, in_channels=3))
    assert prunable.choice() == [len(d.candidates) - 1 for d in prunable.space.decisions]
    batches = [(torch.randn(8, 3, 32, 32), None) for _ in range(2)]
    exported = hand_back(prunable, "found", batches=batches, steps=2)
    model = build(exported.spec)
    model.load_state_dict(exported.state_dict)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model.eval()(x), prunable.ema.eval()(x), atol=1e-5)
