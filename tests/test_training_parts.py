"""Pieces of the training stage: BN recalibration, the TF-style EMA, checkpoint reading."""

import subprocess
import sys

import pytest
import torch
from torch import nn

from nas.checkpoints import CheckpointError, read_checkpoint
from nas.ema import TFEMA, tf_ema_decay
from nas.supernet.bn import recalibrate_bn


def test_bn_recalibration_is_a_cumulative_average_over_the_given_batches():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4, momentum=0.1), nn.Dropout(0.5))
    batches = [(torch.randn(8, 3, 5, 5) * (i + 1) + i, None) for i in range(6)]
    used = recalibrate_bn(model, batches, steps=4)
    assert used == 4 and model.training  # the mode it had before
    with torch.no_grad():
        feats = [model[0](x) for x, _ in batches[:4]]
    mean = torch.stack([f.mean((0, 2, 3)) for f in feats]).mean(0)
    assert torch.allclose(model[1].running_mean, mean, atol=1e-5)
    assert model[1].momentum == 0.1  # restored


def test_tf_ema_decay_rule():
    assert tf_ema_decay(0.9999, 0) == pytest.approx(0.1)
    assert tf_ema_decay(0.9999, 90) == pytest.approx(0.91)
    assert tf_ema_decay(0.9999, 10**7) == 0.9999


def test_tf_ema_averages_parameters():
    ema = TFEMA(0.5)
    current = torch.tensor([2.0])
    averaged = torch.tensor([0.0])
    avg_fn = ema._kwargs["avg_fn"]
    # n = 1: decay min(0.5, 2 / 11) = 2/11
    assert avg_fn(averaged, current, torch.tensor(1)).item() == pytest.approx(2.0 * 9 / 11)


def test_read_checkpoint_errors(tmp_path):
    empty = tmp_path / "empty.ckpt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty.ckpt: not a readable checkpoint"):
        read_checkpoint(empty)
    weird = tmp_path / "weird.ckpt"
    torch.save([1, 2, 3], weird)
    with pytest.raises(CheckpointError, match="not a nas training checkpoint"):
        read_checkpoint(weird)


def test_precision_auto_is_bf16_on_cuda_gpus_with_bf16_and_float32_elsewhere(monkeypatch):
    from nas.trainer import resolve_precision

    assert resolve_precision("auto", "cpu") == "32-true"
    assert resolve_precision("16-mixed", "cpu") == "16-mixed"   # named: as it is
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolve_precision("auto", "auto") == "bf16-mixed"
    assert resolve_precision("auto", "gpu") == "bf16-mixed"
    assert resolve_precision("auto", "cpu") == "32-true"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert resolve_precision("auto", "gpu") == "32-true"       # V100, T4: no bf16


def test_tensor_cores_are_allowed_on_cuda_only(monkeypatch, tmp_path):
    from nas.trainer import (BudgetConfig, LoggerConfig, TrainerConfig, make_trainer,
                             use_tensor_cores)

    calls = []
    monkeypatch.setattr(torch, "set_float32_matmul_precision", calls.append)
    use_tensor_cores("cpu")
    assert calls == []
    use_tensor_cores("gpu")
    assert calls == ["high"]
    trainer = make_trainer(tmp_path, TrainerConfig(accelerator="cpu"), BudgetConfig(),
                           LoggerConfig(csv=False, wandb=False), name="x", seed=0)
    assert trainer.precision == "32-true" and calls == ["high"]


HEAP_PROBE = """
import sys, torch
from nas.cost.timing import steady_malloc   # what keep_heap("heap") calls (tested below)

def heap_mb():
    with open("/proc/self/maps") as f:
        for line in f:
            if line.rstrip().endswith("[heap]"):
                start, end = (int(a, 16) for a in line.split()[0].split("-"))
                return (end - start) >> 20
    return 0

kept = sys.argv[1] == "heap" and steady_malloc(heap_only=True)
before = heap_mb()
held = torch.empty(100 << 20, dtype=torch.uint8)      # above glibc's 32 MB mmap ceiling
held.fill_(1)
print(kept, heap_mb() - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
@pytest.mark.parametrize("malloc, kept", [("heap", True), ("default", False)])
def test_trainer_malloc_keeps_large_buffers_in_the_heap(malloc, kept):
    """With the heap kept, a 100 MB buffer grows the heap; glibc's default maps it on its
    own and the heap stays as it was (fresh processes: the setting is process-wide)."""
    r = subprocess.run([sys.executable, "-c", HEAP_PROBE, malloc],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    got, grown_mb = r.stdout.split()
    assert got == str(kept)
    assert (int(grown_mb) >= 100) == kept and (int(grown_mb) < 10) == (not kept)


def test_trainer_malloc_is_opt_in_and_checked(monkeypatch, tmp_path):
    import nas.trainer
    from nas.config import ConfigError, check
    from nas.trainer import BudgetConfig, LoggerConfig, TrainerConfig, make_trainer

    calls = []
    monkeypatch.setattr(nas.trainer, "steady_malloc", lambda **kw: calls.append(kw) or True)
    assert TrainerConfig().malloc == "default"
    for malloc in ("default", "heap"):
        make_trainer(tmp_path, TrainerConfig(accelerator="cpu", malloc=malloc), BudgetConfig(),
                     LoggerConfig(csv=False, wandb=False), name="x", seed=0)
    assert calls == [{"heap_only": True}]
    with pytest.raises(ConfigError, match=r"trainer.malloc: expected one of default, heap, "
                       r"got 'tcmalloc'"):
        check(TrainerConfig, {"malloc": "tcmalloc"}, "trainer")
