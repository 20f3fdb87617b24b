"""`python tests/kill_train.py RUN_DIR EPOCH BATCH OVERRIDE...`: `python -m nas.train
OVERRIDE...` in RUN_DIR, killed with SIGKILL (no cleanup, as a node failure) when training
reaches batch BATCH of epoch EPOCH; BATCH 0 kills right at that epoch's start, after the
previous epoch's checkpoint was written."""

import os
import signal
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir
from pytorch_lightning.callbacks import Callback

from nas.config import CONF_DIR
from nas.training import train_from_config


class KillAt(Callback):
    def __init__(self, epoch: int, batch: int):
        self.epoch, self.batch = epoch, batch

    def _maybe_kill(self, trainer, batch_idx: int) -> None:
        if (trainer.current_epoch, batch_idx) == (self.epoch, self.batch):
            os.kill(os.getpid(), signal.SIGKILL)

    def on_train_epoch_start(self, trainer, pl_module):
        self._maybe_kill(trainer, 0)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self._maybe_kill(trainer, batch_idx + 1)


if __name__ == "__main__":
    run_dir, epoch, batch, *overrides = sys.argv[1:]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    train_from_config(cfg, Path(run_dir), callbacks=[KillAt(int(epoch), int(batch))])
    sys.exit("not killed: the run ended first")
