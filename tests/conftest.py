import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)
# The entry points the tests start run on one thread too: two xdist workers each running a
# subprocess with two OpenMP threads would oversubscribe the 2-core machine, where OpenMP's
# spinning barriers make small-tensor runs (smoke searches) several times slower.
os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]


def load_script(name: str):
    """scripts/<name>.py as a module (the scripts are not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run_entry(module, tmp_path, *overrides, run_dir="run", logger="none", pythonpath=()):
    """`python -m <module> <overrides>` as a user runs it (quiet logging, run dir under tmp;
    `pythonpath`: more import roots, such as a method kept outside the repository)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), *map(str, pythonpath)]))
    cmd = [sys.executable, "-m", module, *overrides, f"logger={logger}",
           "trainer.enable_progress_bar=false", f"hydra.run.dir={tmp_path / run_dir}"]
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)


def search_context(run_dir):
    """A SearchContext of the smoke scale (embedded data at 16x16, batch 8, 2 epochs of 3
    batches) for calling a method's search in process."""
    from nas.data import data_config
    from nas.methods.base import SearchContext
    from nas.trainer import BudgetConfig, LoggerConfig, TrainerConfig

    data = data_config({"name": "embedded", "batch_size": 8, "input_size": 16})
    return SearchContext(run_dir=run_dir, data=data, data_choice="embedded",
                         budget=BudgetConfig(epochs=2, limit_train_batches=3,
                                             limit_val_batches=2),
                         trainer=TrainerConfig(enable_progress_bar=False),
                         logger=LoggerConfig(csv=False, wandb=False), seed=0)


def interrupt_in_second_epoch(monkeypatch, module_cls, run) -> None:
    """Run `run()` with `module_cls` stopping at the start of its second epoch (after the
    first epoch's checkpoint), as a killed search would."""
    class Stop(Exception):
        pass

    def stop_at_second_epoch(self):
        if self.current_epoch == 1:
            raise Stop

    with monkeypatch.context() as m:
        m.setattr(module_cls, "on_train_epoch_start", stop_at_second_epoch, raising=False)
        with pytest.raises(Stop):
            run()


@pytest.fixture(scope="session")
def run_entry():
    """Runs a Hydra entry point (nas.search, nas.train) in a subprocess."""
    return _run_entry


@pytest.fixture(scope="session")
def smoke_search(tmp_path_factory, run_entry):
    """`python -m nas.search method=<name> budget=smoke`, run once per method and session;
    returns (tmp dir holding run/, completed process)."""
    done = {}

    def run(method):
        if method not in done:
            tmp = tmp_path_factory.mktemp(method)
            r = run_entry("nas.search", tmp, f"method={method}", "budget=smoke")
            assert r.returncode == 0, r.stderr[-3000:]
            done[method] = (tmp, r)
        return done[method]

    return run


@pytest.fixture(scope="session")
def moga_smoke(smoke_search):
    return smoke_search("moga")


@pytest.fixture(scope="session")
def atomnas_smoke(smoke_search):
    return smoke_search("atomnas")

