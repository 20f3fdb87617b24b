"""One run per directory: `nas.train` and `nas.search` refuse to start in a directory that
already holds a run's output, before Hydra writes its own config and log there. A directory
holding only Hydra's record (.hydra/, the log) of a run that wrote nothing else, such as one
stopped by bad input, is free: rerunning the corrected command in it loses nothing.

A Hydra callback (conf/train.yaml, conf/search.yaml: hydra.callbacks.run_dir_guard) runs
after the config is composed and before the job starts; Hydra's `${now:...}` resolver is
cached per config, so the directory checked is the directory the job then uses. The way to
continue a run is each command's own resume: `nas.train ckpt_path=<run>/checkpoints/
last.ckpt` trains on in a new directory, `nas.search resume_dir=<run>` finishes the search
in place (nas.search.runner checks that directory).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

# What a finished run of each command leaves, and how its unfinished runs continue.
FINISHED = {"train": "metrics.json", "search": "result.json", "compare": "compare.csv"}
CONTINUE = {"train": "train on from its last checkpoint, in a new directory, with "
                     "ckpt_path={dir}/checkpoints/last.ckpt",
            "search": "finish it in place with resume_dir={dir}",
            "compare": "finish it in place with resume_dir={dir}"}


def _is_launched_rank() -> bool:
    """A DDP process started for a rank other than 0: Lightning starts those with the first
    process's run directory (and writes nothing of Hydra's there)."""
    return any(os.environ.get(k, "0") not in ("", "0") for k in ("LOCAL_RANK", "RANK"))


def run_kind(path: Path) -> str | None:
    """"train", "search" or "compare" for a directory a `nas.train`, `nas.search` or
    `nas.compare` run wrote (from the config Hydra saved there), else None."""
    try:
        saved = OmegaConf.load(path / ".hydra" / "config.yaml")
    except Exception:  # missing, unreadable or not YAML: not a run we can name
        return None
    if not isinstance(saved, DictConfig):
        return None
    return "search" if "method" in saved else "train" if "arch" in saved else \
        "compare" if "compare" in saved else None


def occupied_message(path: Path, key: str, command: str) -> str | None:
    """None when `path` is free (missing, empty or only Hydra's record); else the one-line
    refusal, with how to continue when it is an unfinished run of the same command."""
    if not path.exists():
        return None
    if not path.is_dir():
        return f"{key}: {path} is a file, not a run directory; choose another directory"
    entries = sorted(p.name for p in path.iterdir())
    if all(e == ".hydra" or e.endswith(".log") for e in entries):
        return None     # empty, or only Hydra's record of a run that wrote nothing else
    shown = ", ".join(entries[:4]) + (", ..." if len(entries) > 4 else "")
    kind = run_kind(path)
    finished = kind is not None and (path / FINISHED[kind]).is_file()
    what = (f"a finished {kind} run" if finished else
            f"an unfinished {kind} run" if kind else "files of another run")
    how = f"start in a new directory (leave {key} unset, or name one that does not exist)"
    if kind == command and not finished and key == "hydra.run.dir":
        how += ", or " + CONTINUE[command].format(dir=path)
    return f"{key}: {path} already holds {what} ({shown}); nothing was written; {how}"


class RunDirGuard(Callback):
    """Stops the command with one line and exit status 2 when its run (or sweep) directory
    already holds files."""

    def __init__(self, command: str):
        if command not in FINISHED:
            raise ValueError(f"command: expected one of {', '.join(FINISHED)}, got {command!r}")
        self.command = command

    def _check(self, config: DictConfig, key: str) -> None:
        if _is_launched_rank():
            return
        path = Path(str(OmegaConf.select(config, key)))
        message = occupied_message(path, key, self.command)
        if message:
            print(f"error: {message}", file=sys.stderr)
            sys.exit(2)

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        self._check(config, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        self._check(config, "hydra.sweep.dir")


def set_aside(path: Path) -> None:
    """Move an unfinished run directory out of the way, into `.interrupted/` beside it, so
    that its job can run again from the start; kept, never deleted."""
    if not path.exists():
        return
    aside = path.parent / ".interrupted"
    aside.mkdir(exist_ok=True)
    k = 0
    while (aside / f"{path.name}.{k}").exists():
        k += 1
    path.rename(aside / f"{path.name}.{k}")
