"""uint8 batches (`data.normalize_on=device`, the default where CUDA is) reach every
consumer normalised: a training run and every search on an ImageFolder tree give on the
CPU exactly what float batches from the workers give."""

import json

import pytest
import torch

from nas.arch.zoo import get_spec
from nas.data import make_datamodule
from nas.optim import OptimConfig
from nas.trainer import BudgetConfig, LoggerConfig, TrainerConfig
from nas.training import train_arch
from test_data import write_imagefolder

SIZES = ((40, 30), (30, 44), (36, 36), (50, 34))


def test_training_on_raw_batches_equals_float_batches(tmp_path):
    """Training, validation, test and the BN recalibration before each evaluation see the
    same normalised images either way, so the runs end bit for bit alike."""
    write_imagefolder(tmp_path / "data", sizes=SIZES)
    found = {}
    for where in ("device", "workers"):
        data = make_datamodule({"name": "imagenet", "root": str(tmp_path / "data"),
                                "num_classes": 3, "input_size": 16, "batch_size": 4,
                                "eval_batch_size": 6, "num_workers": 0, "normalize_on": where})
        spec = get_spec("mobilenetv2_035", num_classes=3, input_size=16)
        metrics = train_arch(spec, data, optim=OptimConfig(), run_dir=tmp_path / where,
                             budget=BudgetConfig(epochs=2), bn_recalibration_steps=2,
                             trainer=TrainerConfig(enable_progress_bar=False),
                             logger=LoggerConfig(csv=False, wandb=False), export=False)
        state = torch.load(tmp_path / where / "checkpoints" / "last.ckpt",
                           weights_only=True)["state_dict"]
        found[where] = ({k: metrics[k] for k in ("best_val_top1", "final_val_top1",
                                                  "test_top1", "test_top5")}, state)
    (m_raw, raw), (m_float, cooked) = found["device"], found["workers"]
    assert m_raw == m_float and m_raw
    assert raw.keys() == cooked.keys()
    assert all(torch.equal(v, cooked[k]) for k, v in raw.items())


@pytest.mark.slow
@pytest.mark.parametrize("method", ["moga", "atomnas", "darts", "autonl", "rexnet"])
def test_every_search_on_raw_batches_equals_float_batches(method, run_entry, tmp_path):
    """Each search's smoke run on a tiny ImageFolder: its result the same either way (MoGA's
    second run reuses the first one's latency table; its fidelity report is timed anew)."""
    write_imagefolder(tmp_path / "data", sizes=SIZES * 6, val_per_class=4)
    results = []
    for where in ("device", "workers"):
        table = [f"method.lut.table={tmp_path / 'device' / 'lut.json'}"] \
            if method == "moga" and where == "workers" else []
        r = run_entry("nas.search", tmp_path, f"method={method}", "budget=smoke",
                      "data=imagenet", f"data.root={tmp_path / 'data'}", "data.num_classes=3",
                      "data.input_size=16", "data.num_workers=0",
                      f"data.normalize_on={where}", *table, run_dir=where)
        assert r.returncode == 0, r.stderr[-3000:]
        text = (tmp_path / where / "result.json").read_text().replace(str(tmp_path / where),
                                                                      "RUN")
        results.append({k: v for k, v in json.loads(text).items()
                        if "seconds" not in k and not k.startswith("lut_")})
    assert results[0] == results[1]


def test_every_lightning_module_normalises_raw_batches():
    """The hook that the runs above rely on, on every module a stage fits (a search's
    loaders bypass any datamodule hook, so the modules hold it)."""
    from nas.classifier import ClassifierModule
    from nas.data.imagefolder import prepare_batch
    from nas.methods.atomnas.search import AtomNASModule
    from nas.methods.autonl.search import AutoNLModule
    from nas.methods.darts.search import DartsModule
    from nas.methods.moga.fairnas import FairNASModule

    x = torch.randint(0, 256, (2, 3, 4, 4), dtype=torch.uint8)
    y = torch.tensor([0, 1])
    expected = prepare_batch(x)
    assert expected.dtype == torch.float32 and not torch.equal(expected, x.float())
    for cls in (ClassifierModule, AtomNASModule, AutoNLModule, DartsModule, FairNASModule):
        got = cls.on_after_batch_transfer(None, {"weights": (x, y), "arch": (x, y)}, 0)
        assert torch.equal(got["weights"][0], expected) and got["arch"][1] is y
