"""An installed wheel runs without the checkout: the package carries conf/ and experiments/.

The wheel is built from a copy of what it is made of (pyproject, README, nas/, conf/,
experiments/), so the build writes nothing into the checkout, and installed with
`pip install --target` into a directory that is the only place `nas` can be imported from.
Every command runs from an empty directory.
"""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TOY = REPO / "tests" / "toy_method"


def _pip(*args, cwd):
    r = subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
                       cwd=cwd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """(the built wheel, the directory it is installed into)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    for name in ("nas", "conf", "experiments"):   # the links nas/conf, conf/experiment kept
        shutil.copytree(REPO / name, src / name, symlinks=True,
                        ignore=shutil.ignore_patterns("__pycache__"))
    _pip("wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp / "dist"), ".",
         cwd=src)
    (built,) = (tmp / "dist").glob("nas-*.whl")
    _pip("install", "--no-deps", "-q", "--target", str(tmp / "site"), str(built), cwd=tmp)
    return built, tmp / "site"


def _yaml_files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*.yaml")}


def test_the_wheel_holds_every_config_and_overlay(wheel):
    built, _ = wheel
    with zipfile.ZipFile(built) as z:
        inside = {n.removeprefix("nas/conf/") for n in z.namelist()
                  if n.startswith("nas/conf/")}
    expected = {p for p in _yaml_files(REPO / "conf") if not p.startswith("experiment/")}
    expected |= {f"experiment/{p}" for p in _yaml_files(REPO / "experiments")}
    assert "method/darts/smoke.yaml" in expected and "experiment/moga_demo.yaml" in expected
    assert inside == expected


def test_the_installed_wheel_runs_from_an_empty_directory(wheel, tmp_path):
    _, site = wheel
    work = tmp_path / "empty"
    work.mkdir()

    def run(*args, pythonpath=()):
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), *map(str, pythonpath)]))
        r = subprocess.run([sys.executable, *args], cwd=work, env=env, capture_output=True,
                           text=True, timeout=600)
        assert r.returncode == 0, f"{args}:\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
        return r.stdout

    where = run("-c", "import nas.config; print(nas.config.__file__, nas.config.CONF_DIR)")
    assert where.split() == [str(site / "nas" / "config.py"), str(site / "nas" / "conf")]

    assert "moga_a" in run("-m", "nas.zoo")
    quiet = ["logger=none", "trainer.enable_progress_bar=false"]
    run("-m", "nas.train", "budget=smoke", *quiet, "hydra.run.dir=train")
    assert (work / "train" / "metrics.json").is_file()
    out = run("-m", "nas.search", "method=darts", "budget=smoke", *quiet, "hydra.run.dir=search")
    assert f"arch.path={work / 'search' / 'arch.yaml'}" in out

    # What composes only with the configs in place: an overlay of experiments/, a searched
    # architecture with its search's recipe, a method kept outside the package.
    assert "name: moga" in run("-m", "nas.search", "+experiment=moga_demo", "--cfg", "job")
    assert "arch.yaml" in run("-m", "nas.train", "arch=file",
                              f"arch.path={work / 'search' / 'arch.yaml'}", "budget=paper",
                              "--cfg", "job")
    assert "name: toy" in run("-m", "nas.search", "method=toy",
                              f"hydra.searchpath=[file://{TOY / 'conf'}]", "--cfg", "job",
                              pythonpath=[TOY])
