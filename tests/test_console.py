"""The entry points print our progress, log lines and summaries, not third-party notices
(nas/console.py); warnings about the user's run still show."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# What nas.train / nas.search (CSV + wandb, DDP on the CPU, a fresh $HOME) printed before
# nas/console.py, one sample of each notice.
NOISE = [
    "GPU available:", "TPU available:", "LOCAL_RANK:",        # Lightning device report
    "💡 Tip", "litlogger", "litmodels",                       # Lightning product tips
    "Loading `train_dataloader` to estimate",                 # Lightning, every scheduler
    "`Trainer.fit` stopped: `max_epochs",                     # Lightning, normal end
    "LeafSpec",                                               # torch deprecation via Lightning
    "anonymous setting has no effect",                        # wandb, via WandbLogger
    "Tracking run with wandb", "W&B syncing is set to",       # wandb banner
    "distributed_backend=", "Initializing distributed",       # DDP start-up
    "Grad strides do not match bucket view strides",          # DDP, channels-last depthwise
    "generated new fontManager",                              # matplotlib cache, fresh $HOME
]


def _env():
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("WANDB_SILENT", None)  # what a user's shell has: nas.console sets the default
    return env


def _popen(tmp_path, *args):
    return subprocess.Popen([sys.executable, *args], cwd=tmp_path, env=_env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _output(proc):
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-3000:]
    return out


def _assert_quiet(out):
    shown = [n for n in NOISE if n in out]
    assert not shown, f"third-party notices in the output: {shown}\n{out[-3000:]}"


# A stand-in for each notice, from its real source (logger or warning module), next to look-
# alikes from elsewhere that must still show.
FILTERS = textwrap.dedent("""
    import logging, sys, warnings
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(name)s: %(message)s")
    warnings.simplefilter("always")  # no once-per-location dedup: every warn below counts
    from nas.console import quiet_third_party
    quiet_third_party()
    quiet_third_party()  # twice (multirun jobs in one process): nothing doubles or breaks

    def warn(message, category, module):
        warnings.warn_explicit(message, category, module.replace(".", "/") + ".py", 1,
                               module=module)

    pytree = "`isinstance(treespec, LeafSpec)` is deprecated, use ..."
    strides = "Grad strides do not match bucket view strides. This may ..."
    warn(pytree, FutureWarning, "pytorch_lightning.utilities._pytree")      # hidden
    warn(strides, UserWarning, "torch.autograd.graph")                      # hidden
    warn("KEEP-1 " + pytree, FutureWarning, "nas.training")                 # not Lightning's
    warn(strides + " KEEP-2", UserWarning, "nas.training")                  # not the reducer's
    warnings.warn("KEEP-3 loss is NaN at step 7: something about your run", UserWarning)
    warnings.warn("KEEP-4 checkpoint does not fit", RuntimeWarning)
    from pytorch_lightning.utilities.warnings import PossibleUserWarning
    warn("KEEP-5 The number of training batches (4) is smaller than the logging interval",
         PossibleUserWarning, "pytorch_lightning.loops.fit_loop")

    rank_zero = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    for hidden in ["GPU available: False, used: False",
                   "TPU available: False, using: 0 TPU cores",
                   "💡 Tip: For seamless cloud logging, try installing [litlogger](https://...)",
                   "💡 Tip: For seamless cloud uploads, try installing [litmodels](https://...)",
                   "Loading `train_dataloader` to estimate number of stepping batches.",
                   "`Trainer.fit` stopped: `max_epochs=1` reached.",
                   "-" * 100 + "\\ndistributed_backend=gloo\\nAll distributed processes ..."]:
        rank_zero.info(hidden)
    logging.getLogger("lightning_fabric.utilities.rank_zero").info("GPU available: True")
    logging.getLogger("lightning_fabric.utilities.distributed").info(
        "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2")
    logging.getLogger("pytorch_lightning.accelerators.cuda").info(
        "LOCAL_RANK: 0 - CUDA_VISIBLE_DEVICES: [0]")
    logging.getLogger("matplotlib.font_manager").info("generated new fontManager")
    rank_zero.info("KEEP-6 `Trainer.fit` stopped: No training batches.")
    rank_zero.info("KEEP-7 Restoring states from the checkpoint path at last.ckpt")
    logging.getLogger("nas.training").info("KEEP-8 GPU available: our own line")

    import wandb
    wandb.termwarn("KEEP-9 a wandb warning about the run")
    import os
    print("WANDB_SILENT=" + os.environ.get("WANDB_SILENT", "unset"))  # wandb's run banner off
    print("done")
""")


def test_entry_points_print_no_third_party_notices(tmp_path):
    zoo = _popen(tmp_path, "-m", "nas.zoo")
    filters = _popen(tmp_path, "-c", FILTERS)
    # The default logger: CSV and wandb (offline), whose start-up notices are tested too.
    train = _popen(tmp_path, "-m", "nas.train", "budget=smoke", "export_onnx=false",
                   "trainer.enable_progress_bar=false", f"hydra.run.dir={tmp_path / 'run'}")

    out = _output(zoo)
    _assert_quiet(out)
    assert "nas zoo: analytic counts" in out and "moga_a" in out

    out = _output(train)
    _assert_quiet(out)
    for ours in ("mobilenetv2_035", "best val top-1", "run directory", str(tmp_path / "run")):
        assert ours in out, out[-3000:]

    out = _output(filters)
    _assert_quiet("\n".join(line for line in out.splitlines() if "KEEP-" not in line))
    kept = [f"KEEP-{i}" for i in range(1, 10)]
    assert [k for k in kept if k not in out] == [], out
    assert "WANDB_SILENT=true" in out and out.rstrip().endswith("done")


def test_a_budget_of_every_batch_is_not_announced(tmp_path, caplog):
    """Lightning explains an explicit limit of 1.0 on every run; the budget's default "all
    batches" reaches it as its own default instead."""
    import logging

    from nas.trainer import BudgetConfig, LoggerConfig, TrainerConfig, make_trainer

    with caplog.at_level(logging.INFO):
        trainer = make_trainer(tmp_path, TrainerConfig(accelerator="cpu"), BudgetConfig(),
                               LoggerConfig(csv=False, wandb=False), name="x", seed=0)
    assert trainer.limit_train_batches == trainer.limit_val_batches == 1.0
    assert not [r for r in caplog.records if "was configured so" in r.getMessage()]
    trainer = make_trainer(tmp_path, TrainerConfig(accelerator="cpu"),
                           BudgetConfig(limit_train_batches=3, limit_val_batches=0.5),
                           LoggerConfig(csv=False, wandb=False), name="x", seed=0)
    assert (trainer.limit_train_batches, trainer.limit_val_batches) == (3, 0.5)
