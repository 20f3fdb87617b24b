"""An unknown option of a config group is one line naming the closest options, exit
status 2 (Hydra printed every option, its search path and a hint, and exited 1)."""

import os
import subprocess
import sys
from pathlib import Path

from nas.cli import unknown_choice

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"


def test_every_group_choice_is_checked():
    assert unknown_choice(["arch=moga_a", "data=cifar10", "method=atomnas", "optim=rmsprop_tf",
                           "trainer=ddp", "logger=none", "budget=smoke",
                           "recipe=paper/moga_a", "+experiment=moga_demo"], CONF) is None
    assert unknown_choice(["arch=moga_aa"], CONF).startswith(
        "arch=moga_aa: no such option; did you mean moga_a")
    assert unknown_choice(["data=cifar"], CONF).startswith("data=cifar: no such option; did "
                                                          "you mean cifar10")
    assert unknown_choice(["method=moga/demo"], CONF).startswith("method=moga/demo: no such")
    assert unknown_choice(["-m", "arch=moga_a,nope"], CONF).startswith("arch=nope: no such")
    # Left to Hydra: its sweep functions, interpolations, other groups and values.
    assert unknown_choice(["arch=choice(moga_a,moga_b)", "hydra/launcher=joblib",
                           "arch.path=x", "seed=3"], CONF) is None
    # Options on Hydra's search path count (a method kept outside the repository).
    toy = REPO / "tests" / "toy_method" / "conf"
    assert unknown_choice(["method=toy"], CONF) is not None
    assert unknown_choice(["method=toy", f"hydra.searchpath=[file://{toy}]"], CONF) is None


def test_the_entry_points_answer_in_one_line(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    for module, arg in (("nas.train", "arch=no_such_arch"), ("nas.search", "method=mogaa")):
        r = subprocess.run([sys.executable, "-m", module, arg, f"hydra.run.dir={tmp_path}/r"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 2 and r.stdout == ""
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert r.stderr.startswith(f"error: {arg}: no such option")
        assert not (tmp_path / "r").exists()
