"""The one search stage: seed, build, fit with an every-epoch `last.ckpt`, resume, and hand
back the supernet's own pick.

Every method that trains a network while it searches (AtomNAS, AutoNL, DARTS, MoGA's
supernet) runs that training through `SearchContext.fit`, which calls `fit_stage` here. A
stage's checkpoint carries the stage's name and an identity string (the network it trains,
as the method spells it), so a killed search resumes only from its own checkpoint, and a
foreign one is refused with one `CheckpointError` line of one form. A stage that searches
(`hand_back_as=`) exports its module's `supernet` through the Supernet protocol
(nas.supernet.base.hand_back).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback

from nas.checkpoints import CheckpointError, last_checkpoint, read_checkpoint
from nas.classifier import CHECKPOINT_FORMAT
from nas.supernet.base import Exported, Supernet, hand_back

Verify = Callable[[dict, Path], None]   # more checks of a checkpoint (CheckpointError)


@dataclass
class Fitted:
    """What a stage hands back on rank zero."""

    module: pl.LightningModule
    trainer: pl.Trainer
    seconds: float
    exported: Optional[Exported] = None   # the supernet's own pick (with hand_back_as=)
    after: Any = None                     # what `after_fit` returned


class StageIdentity(Callback):
    """Writes the stage's name and identity into every checkpoint, as nas.search."""

    def __init__(self, name: str, identity: str):
        self.name, self.identity = name, identity

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        nas = checkpoint.setdefault("nas", {})
        nas.setdefault("format", CHECKPOINT_FORMAT)
        nas["search"] = {"stage": self.name, "identity": self.identity}


def check_stage_resume(path: Path, name: str, identity: str,
                       verify: Optional[Verify] = None) -> None:
    """Refuse, before Lightning loads it, a checkpoint that is not this stage's: another
    method's or a training run's, or this stage's over another network (other method settings
    or data)."""
    ckpt = read_checkpoint(path)
    entry = ckpt["nas"].get("search")
    if not isinstance(entry, dict) or entry.get("stage") != name:
        got = entry.get("stage") if isinstance(entry, dict) else None
        raise CheckpointError(f"{path}: not a checkpoint of the {name} search stage "
                              f"({'of ' + repr(got) if got else 'no search entry'}); expected "
                              f"checkpoints/last.ckpt of a run of this search")
    if entry.get("identity") != identity:
        raise CheckpointError(f"{path}: a checkpoint of the {name} search stage over another "
                              f"network (other method settings or data); resume with the run's "
                              f"own settings (resume_dir=<run dir>)")
    if verify is not None:
        verify(ckpt, path)


def fit_stage(ctx: Any, build: Callable[[], pl.LightningModule], *, name: str, identity: str,
              verify: Optional[Verify] = None, datamodule: Any = None,
              train_dataloaders: Any = None, val_dataloaders: Any = None,
              callbacks: Sequence[Callback] = (), hand_back_as: Optional[str] = None,
              recalibration_steps: int = 0,
              after_fit: Optional[Callable[[Any, pl.Trainer], Any]] = None,
              **trainer_overrides: Any) -> Optional[Fitted]:
    """Reseed, `build()` the module, fit it (continuing from `run_dir/checkpoints/last.ckpt`
    when there is one of this stage), time it; the result on rank zero, None elsewhere.
    With `hand_back_as`, the module's `supernet` exports its own pick under that name, its
    BN statistics first re-estimated on `recalibration_steps` training batches of
    `datamodule` (reseeded, so that a resumed run draws the same batches). `after_fit(module,
    trainer)` is work every rank does after that (an evaluation under DDP, whose collectives
    need all ranks); its value is `Fitted.after`."""
    ctx.reseed()
    module = build()
    if ctx.estimate is not None:
        estimate_stage(ctx, module, name=name, datamodule=datamodule,
                       train_dataloaders=train_dataloaders, val_dataloaders=val_dataloaders,
                       overrides=trainer_overrides)
        return None
    ckpt_dir = ctx.run_dir / "checkpoints"
    resume = ckpt_dir / "last.ckpt"
    trainer = ctx.make_trainer(name=name, callbacks=[last_checkpoint(ckpt_dir),
                                                     StageIdentity(name, identity), *callbacks],
                               **trainer_overrides)
    if resume.is_file():
        check_stage_resume(resume, name, identity, verify)
    start = time.time()
    trainer.fit(module, datamodule=datamodule, train_dataloaders=train_dataloaders,
                val_dataloaders=val_dataloaders,
                ckpt_path=str(resume) if resume.is_file() else None)
    seconds = time.time() - start
    exported = None
    if hand_back_as is not None:   # on every rank: they hold the same weights and batches
        ctx.reseed()
        supernet: Supernet = module.supernet
        batches = datamodule.train_dataloader() if recalibration_steps > 0 else None
        exported = hand_back(supernet, hand_back_as, batches=batches,
                             steps=recalibration_steps, device=module.device)
    after = after_fit(module, trainer) if after_fit is not None else None
    if not trainer.is_global_zero:
        return None
    return Fitted(module, trainer, seconds, exported, after)


def estimate_stage(ctx: Any, module: pl.LightningModule, *, name: str, datamodule: Any,
                   train_dataloaders: Any, val_dataloaders: Any, overrides: dict) -> None:
    """`estimate=true`: a few steps of the stage's own fit, timed, and the stage's phases
    added to `ctx.estimate` (nas.estimate); nothing is written or handed back."""
    from nas.estimate import timed_fit
    from nas.trainer import make_trainer
    from nas.training import NO_LOGS

    def make(**args: Any) -> pl.Trainer:
        return make_trainer(ctx.run_dir, ctx.trainer, ctx.budget, NO_LOGS, name=name,
                            seed=ctx.seed, **args)

    ctx.estimate.phases += timed_fit(make, module, budget=ctx.budget, name=name,
                                     overrides=overrides, datamodule=datamodule,
                                     train_dataloaders=train_dataloaders,
                                     val_dataloaders=val_dataloaders)
