"""A quiet console: the entry points (`nas.train`, `nas.search`, `nas.zoo`) show our progress
bars, log lines and summaries, not the tips, banners and deprecation notices of the libraries
under them.

`quiet_third_party()` hides each known notice by its own source (logger or warning module) and
its own message, nothing wider: any other warning, including Lightning's PossibleUserWarnings
about the user's run, still shows. It is called at the start of each entry point's main(),
which DDP ranks (Lightning re-runs the command line), multirun jobs and SLURM jobs all run
again; warnings filters and logging filters do not cross processes, so nothing relies on that.

Kept on purpose (they concern the run): Lightning's "number of training batches is smaller
than the logging interval" (shown only when a CSV/wandb logger is on, and then true: that
logger gets no train/loss rows), "Using `DistributedSampler` ... during `trainer.validate()`
/ `trainer.test()`" (DDP evaluation may count padded samples twice, so the printed accuracy
can be off), "GPU available but not used", "`Trainer.fit` stopped: No training batches",
Hydra's multirun lines, and every wandb warning or error after
wandb.init (WANDB_SILENT sends those to the run's wandb/*/logs/debug.log, see below).
"""

from __future__ import annotations

import logging
import os
import re
import warnings

# (logger name, message pattern) of third-party INFO lines that say nothing about the run.
_LOG_NOISE: list[tuple[str, str]] = [
    # Lightning's device report, printed by every Trainer: our summary and the progress bar
    # already say where the run went; "GPU available but not used" is a warning and stays.
    ("rank_zero", r"(GPU|TPU|HPU) available: "),
    # Advertisements for Lightning's cloud products (litlogger, litmodels).
    ("rank_zero", r"💡 Tip: .*\[lit(logger|models)\]"),
    # Said whenever a scheduler needs the step count (every cosine schedule).
    ("rank_zero", r"Loading `train_dataloader` to estimate number of stepping batches"),
    # The normal end of training; our summary reports the epochs and steps run. "No training
    # batches" (an empty dataset) is not matched and still shows.
    ("rank_zero", r"`Trainer\.fit` stopped: `max_(epochs|steps)=\d+` reached"),
    # DDP start-up banner (a 100-dash box around "distributed_backend=gloo / All distributed
    # processes registered") and the per-rank line before it.
    ("rank_zero", r"-+\ndistributed_backend="),
    ("lightning_fabric.utilities.distributed", r"Initializing distributed: GLOBAL_RANK"),
    # Lightning's CUDA accelerator on each rank's setup (GPU runs only).
    ("pytorch_lightning.accelerators.cuda", r"LOCAL_RANK: \d+ - CUDA_VISIBLE_DEVICES"),
    # matplotlib (imported by torchmetrics) building its font cache, once per fresh $HOME.
    ("matplotlib.font_manager", r"generated new fontManager"),
]

# Lightning's rank_zero_info() logs under whichever of these modules rebound it last.
_RANK_ZERO_LOGGERS = ("pytorch_lightning.utilities.rank_zero",
                      "lightning_fabric.utilities.rank_zero",
                      "lightning_utilities.core.rank_zero")

class _DropMessages(logging.Filter):
    """Drops records whose message matches one of the patterns (re.match, from the start)."""

    def __init__(self, patterns: list[str]):
        super().__init__()
        self.patterns = [re.compile(p) for p in patterns]

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a malformed record (bad %-args): not ours to judge
            return True
        return not any(p.match(message) for p in self.patterns)


_filters: dict[str, _DropMessages] = {}


def quiet_third_party() -> None:
    """Hide the third-party notices listed in this module; safe to call more than once."""
    # torch deprecated `LeafSpec`; Lightning's own pytree helper still uses it on every
    # fit/validate/test. Only Lightning can change that, so it is noise to our users.
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
                            category=FutureWarning, module=r"pytorch_lightning")
    # DDP's reducer compares stride tuples literally: a channels-last depthwise weight
    # (C_in/groups = 1, nas/memory_format.py on the CPU) has the same memory order as its
    # contiguous gradient but other strides, so every CPU DDP run is told "may impair
    # performance" about a layout that is in fact the same.
    warnings.filterwarnings("ignore", message=r"Grad strides do not match bucket view strides",
                            category=UserWarning, module=r"torch\.autograd")
    # Our Lightning modules normalise uint8 batches in `on_after_batch_transfer`
    # (nas.data.imagefolder.prepare_batch), for loaders and datamodules alike; Lightning
    # notes that the module's hook is used beside a datamodule, which is the intent.
    warnings.filterwarnings("ignore", message=r"You have overridden `on_after_batch_transfer` "
                            r"in `LightningModule` but have passed in a `LightningDataModule`",
                            category=UserWarning)

    by_logger: dict[str, list[str]] = {}
    for name, pattern in _LOG_NOISE:
        for logger in (_RANK_ZERO_LOGGERS if name == "rank_zero" else (name,)):
            by_logger.setdefault(logger, []).append(pattern)
    for logger, patterns in by_logger.items():
        if logger not in _filters:
            _filters[logger] = _DropMessages(patterns)
        logging.getLogger(logger).addFilter(_filters[logger])  # no-op when already there

    # wandb's run banner ("Tracking run with wandb version", "W&B syncing is set to
    # `offline`", "Run data is saved locally in", "View this run ... `wandb leet`") and the
    # closing "You can sync this run ... / Find logs at": the run directory in our summary
    # holds wandb/ already. Inherited by DDP ranks; WANDB_SILENT=false brings them back.
    os.environ.setdefault("WANDB_SILENT", "true")
