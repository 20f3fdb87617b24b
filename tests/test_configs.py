"""Every `arch` config composes through Hydra and resolves to its zoo spec."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from nas.arch import create_model, io
from nas.arch.config import spec_from_config
from nas.arch.io import SpecError
from nas.arch.zoo import ZOO, get_spec

CONF = Path(__file__).resolve().parents[1] / "conf"


def test_one_arch_config_per_zoo_name():
    names = {p.stem for p in (CONF / "arch").glob("*.yaml")} - {"file"}
    assert names == set(ZOO)


def test_every_arch_config_composes():
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        for name in ZOO:
            cfg = compose(overrides=[f"+arch={name}"])
            assert spec_from_config(cfg.arch, num_classes=10) == get_spec(name, num_classes=10)


def test_arch_file_config(tmp_path):
    io.save(get_spec("moga_c"), tmp_path / "arch.yaml")
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(overrides=["+arch=file", f"arch.path={tmp_path / 'arch.yaml'}"])
        spec = spec_from_config(cfg.arch, num_classes=10, input_size=32)
        assert (spec.name, spec.num_classes, spec.input_size) == ("moga_c", 10, 32)
        with pytest.raises(SpecError, match="arch.path: expected the path"):
            spec_from_config(compose(overrides=["+arch=file"]).arch)


def test_unknown_name_suggests_close_names():
    with pytest.raises(KeyError, match="did you mean moga_a"):
        create_model("moga_aa")
    assert sum(p.numel() for p in create_model("moga_a", num_classes=10).parameters()) > 0
