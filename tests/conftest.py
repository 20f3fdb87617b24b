import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]


def _run_entry(module, tmp_path, *overrides, run_dir="run"):
    """`python -m <module> <overrides>` as a user runs it (quiet logging, run dir under tmp)."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", module, *overrides, "logger=none",
           "trainer.enable_progress_bar=false", f"hydra.run.dir={tmp_path / run_dir}"]
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="session")
def run_entry():
    """Runs a Hydra entry point (nas.search, nas.train) in a subprocess."""
    return _run_entry
