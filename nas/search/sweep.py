"""Train many architectures as one `python -m nas.train` multirun through a Hydra launcher,
so the same sweep runs one job after another (`basic`), in parallel on this machine
(`joblib`) or as one cluster job per training (`slurm`, submitit), and skips what an
earlier, killed attempt finished.

Each training is a job named by the caller (`c003_r1`): its config is a file
`<sweep>/.jobs/sweep_job/<name>.yaml` (arch path and seed), selected with
`+sweep_job=<name>`, and its run directory is `<sweep>/<name>`. A job is finished when its
`metrics.json` exists (nas.training writes it last, atomically); the directory of a job
that did not finish is moved to `<sweep>/.interrupted/` before the job runs again.
The multirun's output goes to `<sweep>/sweep.log`.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from nas.config import ConfigError
from nas.files import write_text_atomic
from nas.run_dirs import FINISHED


class SweepFailed(ConfigError):
    """The multirun stopped before every job finished; the message names the job log."""


@dataclass(frozen=True)
class TrainJob:
    name: str         # the job's directory under the sweep directory
    arch: Path        # arch YAML
    seed: int


def hydra_value(value: Any) -> str:
    """`value` in Hydra's override grammar (strings quoted, so paths and '~' stay text)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value).replace("\\", "\\\\").replace("'", "\\'")
    return f"'{text}'"


def group_overrides(group: str, cfg: Any, skip: Sequence[str] = ()) -> list[str]:
    """`group.field=value` for every field of the checked dataclass `cfg`."""
    return [f"{group}.{f.name}={hydra_value(getattr(cfg, f.name))}" for f in fields(cfg)
            if f.name not in skip]


def finished(sweep_dir: Path, name: str) -> Optional[dict]:
    """The metrics of a finished job, or None."""
    path = sweep_dir / name / FINISHED["train"]
    return json.loads(path.read_text()) if path.is_file() else None


def _set_aside(sweep_dir: Path, name: str) -> None:
    """Moves an unfinished job's directory out of its way (kept, not deleted)."""
    path = sweep_dir / name
    if not path.exists():
        return
    aside = sweep_dir / ".interrupted"
    aside.mkdir(exist_ok=True)
    k = 0
    while (aside / f"{name}.{k}").exists():
        k += 1
    path.rename(aside / f"{name}.{k}")


def command(sweep_dir: Path, names: Sequence[str], launcher: str,
            overrides: Sequence[str]) -> list[str]:
    """The `nas.train` multirun of the jobs `names` (their configs already written)."""
    job_conf = (sweep_dir / ".jobs").resolve()
    return [sys.executable, "-m", "nas.train", "--multirun", "arch=file",
            "+sweep_job=" + ",".join(names),
            f"hydra.searchpath=[{hydra_value('file://' + str(job_conf))}]",
            f"hydra.sweep.dir={hydra_value(str(sweep_dir.resolve()))}",
            "hydra.sweep.subdir=${sweep_job}",
            # The sweep directory is this search's own: every job directory is new (an
            # unfinished one is set aside first), so the guard of fresh runs stays off.
            "~hydra.callbacks.run_dir_guard",
            f"hydra/launcher={launcher}", *overrides]


def _last_error(log: Path) -> str:
    lines = log.read_text(errors="replace").splitlines() if log.is_file() else []
    errors = [ln for ln in lines if ln.startswith("error:") or "Error" in ln]
    return (errors or lines or ["(no output)"])[-1].strip()[:300]


def run_sweep(sweep_dir: Path, jobs: Sequence[TrainJob], *, launcher: str,
              overrides: Sequence[str], env: Optional[dict] = None,
              report: Callable[[str, dict, int, int], None] = lambda *a: None,
              poll_seconds: float = 2.0) -> dict[str, dict]:
    """Run the unfinished `jobs`; returns every job's metrics by name. `report(name,
    metrics, done, total)` is called as jobs finish. Raises SweepFailed when the multirun
    exits before all jobs finished (the finished ones stay and are skipped next time)."""
    sweep_dir.mkdir(parents=True, exist_ok=True)
    done = {j.name: m for j in jobs if (m := finished(sweep_dir, j.name)) is not None}
    pending = [j for j in jobs if j.name not in done]
    if pending:
        job_dir = sweep_dir / ".jobs" / "sweep_job"
        job_dir.mkdir(parents=True, exist_ok=True)
        for job in pending:
            _set_aside(sweep_dir, job.name)
            write_text_atomic(job_dir / f"{job.name}.yaml",
                              "# @package _global_\n" + json.dumps(
                                  {"sweep_job": job.name, "seed": job.seed,
                                   "arch": {"path": str(job.arch.resolve())}}) + "\n")
        cmd = command(sweep_dir, [j.name for j in pending], launcher, overrides)
        log = sweep_dir / "sweep.log"
        with open(log, "a") as out:
            out.write(f"\n$ {shlex.join(cmd)}\n")
            out.flush()
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                    env={**os.environ, **(env or {})})
            try:
                while True:
                    exited = proc.poll() is not None
                    for job in list(pending):
                        metrics = finished(sweep_dir, job.name)
                        if metrics is not None:
                            done[job.name] = metrics
                            pending.remove(job)
                            report(job.name, metrics, len(done), len(jobs))
                    if exited or not pending:
                        break
                    time.sleep(poll_seconds)
                rc = proc.wait()
            except BaseException:
                proc.terminate()
                proc.wait()
                raise
        if pending:
            raise SweepFailed(
                f"the candidate trainings stopped (exit status {rc}) with {len(pending)} of "
                f"{len(jobs)} unfinished: {_last_error(log)} (log: {log})")
    return {j.name: done[j.name] for j in jobs}
