"""The evaluator: train these architectures with this recipe and return their metrics. What
a search that scores candidates by training them (ReXNet) and a comparison of searches use.

    metrics = evaluate([EvalJob("c000_r0", spec, seed=0), ...], recipe, Path("runs/x"),
                       EvaluatorConfig(backend="hydra", launcher="joblib", jobs=2))

Two backends run the same trainings (`Recipe.train`, as `python -m nas.train` does):

- `inprocess`: one after another in this process;
- `hydra`: one Hydra multirun of `python -m nas.evaluation`, one job per training, through
  the launcher `launcher`: `basic` (one after another), `joblib` (side by side on this
  machine), `slurm` (one cluster job each, submitit; conf/hydra/launcher/slurm.yaml).
  The multirun's whole config is one structured file, `.jobs/evaluate.yaml`: the recipe's
  groups as they are, each job's arch file and seed, and the launcher's settings.

The directory holds one run directory per job (`<dir>/<name>`, what nas.train writes) and
`recipe.yaml`. It resumes: a job is finished when its metrics.json exists (written last,
atomically), and is not trained again; an unfinished job's directory is moved to
`.interrupted/` and the job trained from its start. A finished job of another architecture
or seed, or a directory trained with another recipe, is refused with one line.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch
from omegaconf import OmegaConf

from nas.arch import io
from nas.arch.spec import ArchSpec
from nas.config import CONF_DIR, ConfigError, require
from nas.estimate import Estimate
from nas.files import write_text_atomic
from nas.run_dirs import FINISHED, set_aside
from nas.training import USER_ERRORS, Recipe, estimate_training, read_config

BACKENDS = ("inprocess", "hydra")
# The recipe's parts that decide a training's result: a resumed evaluation must match them
# (the trainer and logger groups may differ: another machine, another progress bar).
RESULT_KEYS = ("data", "optim", "budget", "bn_recalibration_steps")
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")

Report = Callable[[str, dict, int, int], None]


@dataclass(frozen=True)
class EvalJob:
    name: str          # its run directory under the evaluation directory
    spec: ArchSpec
    seed: int


@dataclass
class EvaluatorConfig:
    """How the trainings run (the `evaluator` part of a method's config)."""

    backend: str = "inprocess"      # inprocess | hydra
    launcher: str = "basic"         # hydra: a hydra/launcher option (basic, joblib, slurm)
    jobs: Optional[int] = None      # joblib: trainings side by side (null: one per CPU core)
    # More hydra.launcher settings (slurm: partition, timeout_min, ...).
    launcher_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        require(self.backend in BACKENDS, "backend", f"one of {', '.join(BACKENDS)}",
                self.backend)
        require(bool(self.launcher) and "/" not in self.launcher, "launcher",
                "a hydra/launcher option (basic, joblib, slurm)", self.launcher)
        require(self.jobs is None or (self.backend == "hydra" and self.launcher == "joblib"
                                      and self.jobs >= 1), "jobs",
                "null, or an integer >= 1 with backend hydra and launcher joblib", self.jobs)


def job_env(launcher: str, jobs: Optional[int]) -> dict[str, str]:
    """The environment of a multirun's jobs. With joblib, the jobs side by side share the
    CPU cores: each job's torch gets cores / jobs threads (OMP_NUM_THREADS, unless already
    set), where each would otherwise start one per core and the jobs would contend. On the
    2-core EPYC, two AutoNL demo searches at one thread each took 385 s side by side, one at
    two threads 270 s: 1.4x the throughput."""
    env = dict(os.environ)
    if launcher == "joblib" and "OMP_NUM_THREADS" not in env:
        cores = os.cpu_count() or 1
        env["OMP_NUM_THREADS"] = str(max(1, cores // (jobs or cores)))
    return env


class EvaluationFailed(ConfigError):
    """A training stopped before it finished; the message names the job (and the log)."""


def evaluate(jobs: Sequence[EvalJob], recipe: Recipe, directory: Path,
             config: Optional[EvaluatorConfig] = None,
             report: Report = lambda *a: None) -> dict[str, dict]:
    """Train every unfinished job of `jobs` in `directory`; returns each job's metrics
    (metrics.json) by name. `report(name, metrics, done, total)` is called as jobs finish."""
    config = config or EvaluatorConfig()
    names = [j.name for j in jobs]
    for name in names:
        require(bool(_NAME.match(name)), "job name", "letters, digits, '_', '.' or '-'", name)
    require(len(set(names)) == len(names), "job names", "distinct names", names)
    trainer = recipe.trainer
    several = trainer.num_nodes > 1 or (trainer.devices != 1 and not (
        trainer.devices == "auto" and torch.cuda.device_count() <= 1))
    if several and config.backend != "hydra":
        raise ConfigError(f"evaluator.backend: {config.backend} trains in this process, where "
                          f"a second training on several devices (trainer.devices="
                          f"{trainer.devices}, trainer.num_nodes={trainer.num_nodes}) would "
                          f"start its processes again; expected backend hydra, whose jobs "
                          f"each start their own")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    _check_recipe(directory, recipe)
    done = {j.name: m for j in jobs if (m := _finished(directory, j)) is not None}
    pending = [j for j in jobs if j.name not in done]

    def finished(name: str, metrics: dict) -> None:
        done[name] = metrics
        report(name, metrics, len(done), len(jobs))

    if pending:
        for job in pending:
            set_aside(directory / job.name)
        run = _run_inprocess if config.backend == "inprocess" else _run_hydra
        run(pending, recipe, directory, config, finished)
    return {name: done[name] for name in names}


def estimate_evaluation(jobs: Sequence[EvalJob], recipe: Recipe, run_dir: Path,
                        config: EvaluatorConfig, estimate: Estimate) -> None:
    """`estimate=true`: the first job's training timed as `nas.train estimate=true` times
    it, counted once per job, into `estimate` (nothing is trained or written)."""
    first = Estimate(estimate.device)
    estimate_training(recipe, jobs[0].spec, run_dir, seed=jobs[0].seed, estimate=first)
    estimate.phases += [replace(p, name=f"{len(jobs)} trainings, each: {p.name}",
                                count=p.count * len(jobs)) for p in first.phases]
    estimate.left_out += first.left_out + [
        "the jobs' own start-up; each job counted at the first one's step time"]
    if config.backend == "hydra" and config.launcher != "basic":
        estimate.left_out.append(f"running jobs side by side ({config.launcher}): the wall "
                                 f"time is this sum divided by how many run at once, where "
                                 f"the device has the room")


def _check_recipe(directory: Path, recipe: Recipe) -> None:
    """recipe.yaml: written by the first evaluation here, and matched by every later one."""
    path = directory / "recipe.yaml"
    now = recipe.to_dict()
    if not path.is_file():
        write_text_atomic(path, OmegaConf.to_yaml(OmegaConf.create(now)))
        return
    try:
        before = OmegaConf.to_container(OmegaConf.load(path))
    except Exception as e:  # YAML errors, a python tag
        raise ConfigError(f"{path}: not a recipe file ({type(e).__name__}); expected the "
                          f"recipe.yaml an evaluation wrote") from None
    for key in RESULT_KEYS:
        old, new = (before or {}).get(key), now[key]
        if old != new:
            diff = [k for k in new if old.get(k) != new[k]] if isinstance(old, dict) and \
                isinstance(new, dict) else []
            where = f"{key}.{diff[0]}" if diff else key
            raise ConfigError(f"{path}: the trainings in {directory} used another recipe "
                              f"({where} differs); expected the same recipe to resume them, "
                              f"or a new directory")


def _finished(directory: Path, job: EvalJob) -> Optional[dict]:
    """The metrics of a finished job, or None; refuses one of another architecture or seed."""
    path = directory / job.name / FINISHED["train"]
    if not path.is_file():
        return None
    metrics = json.loads(path.read_text())
    trained = io.load(directory / job.name / "arch.yaml")
    same_arch = replace(trained, in_channels=job.spec.in_channels) == job.spec
    if not same_arch or metrics.get("seed") != job.seed:
        raise ConfigError(f"{path.parent}: a finished training of another "
                          f"{'architecture' if not same_arch else 'seed'} than job "
                          f"{job.name}; expected the evaluation of the same jobs, or a new "
                          f"directory")
    return metrics


def _train(recipe: Recipe, spec: ArchSpec, seed: int, run_dir: Path) -> Optional[dict]:
    """One job's training, the same in both backends."""
    return recipe.train(spec, run_dir, seed=seed,
                        hparams={"config": {**recipe.to_dict(), "seed": seed}})


def _run_inprocess(jobs: Sequence[EvalJob], recipe: Recipe, directory: Path,
                   config: EvaluatorConfig, finished: Callable[[str, dict], None]) -> None:
    for job in jobs:
        try:
            metrics = _train(recipe, job.spec, job.seed, directory / job.name)
        except USER_ERRORS as e:
            raise EvaluationFailed(f"training {job.name} stopped: {e}") from None
        if metrics is not None:   # rank zero
            finished(job.name, metrics)


def multirun_config(jobs: Sequence[EvalJob], recipe: Recipe, directory: Path,
                    config: EvaluatorConfig) -> Path:
    """`.jobs/evaluate.yaml`, the whole config of the multirun of `jobs` (their specs written
    beside it); returns its path."""
    job_dir = (directory / ".jobs").resolve()
    entries = {}
    for job in jobs:
        arch = job_dir / "arch" / f"{job.name}.yaml"
        io.save(job.spec, arch)
        entries[job.name] = {"arch": str(arch), "seed": job.seed}
    launcher = dict(config.launcher_options)
    if config.jobs is not None:
        launcher["n_jobs"] = config.jobs
    cfg = {
        "defaults": [{"override hydra/launcher": config.launcher}, "_self_"],
        **recipe.to_dict(),
        "job": "???",        # one sweep value per job
        "jobs": entries,
        "hydra": {
            "searchpath": [f"file://{CONF_DIR}"],
            "sweep": {"dir": str(directory.resolve()), "subdir": "${job}"},
            "run": {"dir": str(directory.resolve() / "${job}")},
            "sweeper": {"params": {"job": ",".join(entries)}},
            "job": {"chdir": False},
            **({"launcher": launcher} if launcher else {}),
        },
    }
    path = job_dir / "evaluate.yaml"
    write_text_atomic(path, "# Written by nas.evaluation: the multirun of the unfinished "
                            "jobs.\n" + OmegaConf.to_yaml(OmegaConf.create(cfg)))
    return path


def _last_error(log: Path) -> str:
    lines = log.read_text(errors="replace").splitlines() if log.is_file() else []
    errors = [ln for ln in lines if ln.startswith("error:") or "Error" in ln]
    return (errors or lines or ["(no output)"])[-1].strip()[:300]


def _run_hydra(jobs: Sequence[EvalJob], recipe: Recipe, directory: Path,
               config: EvaluatorConfig, finished: Callable[[str, dict], None],
               poll_seconds: float = 2.0) -> None:
    path = multirun_config(jobs, recipe, directory, config)
    cmd = [sys.executable, "-m", "nas.evaluation", "--multirun", "--config-path",
           str(path.parent), "--config-name", path.stem]
    log = directory / "evaluate.log"
    pending = list(jobs)
    with open(log, "a") as out:
        out.write(f"\n$ {shlex.join(cmd)}\n")
        out.flush()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                env=job_env(config.launcher, config.jobs))
        try:
            while True:
                exited = proc.poll() is not None
                for job in list(pending):
                    metrics = _finished(directory, job)
                    if metrics is not None:
                        pending.remove(job)
                        finished(job.name, metrics)
                if exited or not pending:
                    break
                time.sleep(poll_seconds)
            rc = proc.wait()
        except BaseException:
            proc.terminate()
            proc.wait()
            raise
    if pending:
        raise EvaluationFailed(
            f"the trainings stopped (exit status {rc}) with {len(pending)} of {len(jobs)} "
            f"unfinished: {_last_error(log)} (log: {log})")


def _main() -> None:
    """One job of the hydra backend's multirun (`python -m nas.evaluation`)."""
    import hydra
    from hydra.core.hydra_config import HydraConfig

    @hydra.main(config_path=None, config_name=None, version_base="1.3")
    def job(cfg) -> None:
        from nas.console import quiet_third_party
        quiet_third_party()
        entry = cfg.jobs[cfg.job]
        try:
            recipe, _ = read_config(cfg)
            _train(recipe, io.load(entry.arch), int(entry.seed),
                   Path(HydraConfig.get().runtime.output_dir))
        except USER_ERRORS as e:
            print(f"error: {cfg.job}: {e}", file=sys.stderr)
            sys.exit(2)

    job()


if __name__ == "__main__":
    _main()
