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


def _run_entry(module, tmp_path, *overrides, run_dir="run", logger="none", pythonpath=()):
    """`python -m <module> <overrides>` as a user runs it (quiet logging, run dir under tmp;
    `pythonpath`: more import roots, such as a method kept outside the repository)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), *map(str, pythonpath)]))
    cmd = [sys.executable, "-m", module, *overrides, f"logger={logger}",
           "trainer.enable_progress_bar=false", f"hydra.run.dir={tmp_path / run_dir}"]
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)


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

