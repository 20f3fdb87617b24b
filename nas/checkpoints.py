"""Reading training checkpoints safely (weights_only) and rebuilding models from them."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch
from torch import nn

from nas.arch import io
from nas.arch.builder import build
from nas.arch.spec import ArchSpec, SpecError
from nas.classifier import CHECKPOINT_FORMAT


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message is one line naming the file."""


def read_checkpoint(path: str | Path) -> dict:
    """torch.load with weights_only=True, plus the checks that it is one of ours."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile, EOFError, ValueError,
            OSError, KeyError, IndexError, TypeError, AttributeError, MemoryError) as e:
        # A file that is not a torch checkpoint (a text file, a truncated download) fails
        # inside the unpickler with whichever of these its bytes happen to provoke.
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if isinstance(e, (KeyError, IndexError, TypeError, AttributeError)):
            first = f"not a torch checkpoint file; the unpickler stopped at {type(e).__name__}"
        raise CheckpointError(f"{path}: not a readable checkpoint ({first[:160]})") from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("nas"), dict):
        raise CheckpointError(f"{path}: not a nas training checkpoint (expected the 'nas' "
                              f"entry that `python -m nas.train` writes)")
    if ckpt["nas"].get("format") != CHECKPOINT_FORMAT or "state_dict" not in ckpt:
        raise CheckpointError(f"{path}: unsupported checkpoint format "
                              f"{ckpt['nas'].get('format')!r}; expected {CHECKPOINT_FORMAT!r}")
    return ckpt


def checkpoint_spec(ckpt: dict, path: str | Path = "checkpoint") -> ArchSpec:
    try:
        return io.loads(ckpt["nas"]["arch_yaml"])
    except SpecError as e:
        raise CheckpointError(f"{path}: stored architecture is invalid ({e})") from None


def check_resume(path: str | Path, spec: ArchSpec) -> None:
    """Refuse to resume a run of one architecture from another's checkpoint."""
    stored = checkpoint_spec(read_checkpoint(path), path)
    if stored != spec:
        raise CheckpointError(
            f"{path}: checkpoint is of architecture {stored.name!r} "
            f"({stored.num_classes} classes, input {stored.input_size}), but this run builds "
            f"{spec.name!r} ({spec.num_classes} classes, input {spec.input_size}); "
            f"resume with the same arch and data")


def module_state(ckpt: dict, prefix: str = "model.") -> dict:
    """The entries of one submodule in a Lightning checkpoint's state_dict, prefix removed
    ("model." is the network, "ema_model." AtomNAS's weight EMA)."""
    return {k[len(prefix):]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}


def load_weights(path: str | Path, spec: ArchSpec) -> dict:
    """The model weights of a checkpoint of architecture `spec` (for `weights=`: fine-tuning
    or evaluating a searched network, e.g. AtomNAS's model.ckpt)."""
    ckpt = read_checkpoint(path)
    stored = checkpoint_spec(ckpt, path)
    if stored != spec:
        raise CheckpointError(f"{path}: checkpoint holds architecture {stored.name!r}, but this "
                              f"run builds {spec.name!r}; pass the arch.yaml saved beside it")
    return module_state(ckpt)


def load_model(path: str | Path) -> tuple[nn.Module, ArchSpec]:
    """Rebuild the network from a checkpoint alone (its stored spec and weights; the EMA
    weights where the run used an EMA)."""
    ckpt = read_checkpoint(path)
    spec = checkpoint_spec(ckpt, path)
    model = build(spec)
    try:
        model.load_state_dict(module_state(ckpt))
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not fit the stored architecture "
                              f"({str(e).splitlines()[0][:160]})") from None
    return model.eval(), spec


def last_checkpoint(dirpath: Path):
    """A callback that writes `dirpath/last.ckpt` at the end of every epoch, the file a
    search resumes from. (`save_top_k=0, save_last=True` would not do: Lightning then writes
    last.ckpt only when fit ends, leaving a killed search nothing to resume.)"""
    from pytorch_lightning.callbacks import ModelCheckpoint

    return ModelCheckpoint(dirpath=dirpath, filename="last", save_top_k=1, monitor=None,
                           enable_version_counter=False)
