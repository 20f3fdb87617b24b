"""`python -m nas.zoo` as a user runs it."""

import json
import subprocess
import sys

import yaml

from nas.arch import io
from nas.arch.zoo import ZOO, get_spec


def _run(*args):
    return subprocess.run([sys.executable, "-m", "nas.zoo", *args], capture_output=True, text=True,
                          timeout=300)


def test_json_lists_every_name_with_counts():
    r = _run("--json")
    assert r.returncode == 0, r.stderr
    rows = {row["name"]: row for row in json.loads(r.stdout)}
    assert set(rows) == set(ZOO)
    assert rows["moga_a"]["params"] == 5_159_802 and rows["moga_a"]["extra_macs"] == 0
    assert rows["autonl_l"]["extra_macs"] > 0
    for row in rows.values():
        assert {"name", "params", "macs", "extra_macs"} <= set(row)


def test_table_shows_published_figures():
    r = _run()
    assert r.returncode == 0, r.stderr
    assert "rexnet_lite_200" in r.stdout and "12,966,200" in r.stdout and "80.2 %" in r.stdout


def test_show_prints_a_loadable_spec():
    r = _run("show", "atomnas_b", "--num-classes", "10")
    assert r.returncode == 0, r.stderr
    assert io.from_dict(yaml.safe_load(r.stdout)) == get_spec("atomnas_b", num_classes=10)


def test_unknown_name_is_one_line_and_nonzero():
    r = _run("show", "moga-a")
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and "did you mean moga_a" in r.stderr
    r = _run("show", "moga_a", "--num-classes", "0")
    assert r.returncode == 2 and "--num-classes: expected a positive integer" in r.stderr
