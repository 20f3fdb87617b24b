"""One source of truth for configuration: every default is defined once.

A group's base option (the one the entry points choose by default, each data set's file,
each method's file) states its schema's defaults: every value it holds must equal the
schema's. Every other option of a group builds on a base through Hydra's defaults list and
holds only what it changes. Interpolations (`seed: ${seed}`) are references, not values.
"""

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from nas.data import DATA_CONFIGS
from nas.optim import OptimConfig
from nas.search.runner import method_class
from nas.trainer import BudgetConfig, LoggerConfig, TrainerConfig

CONF = Path(__file__).resolve().parents[1] / "conf"
SCHEMAS = {"trainer": TrainerConfig, "logger": LoggerConfig, "budget": BudgetConfig,
           "optim": OptimConfig}
# The option each entry point chooses by default; the group's only base.
DEFAULT_OPTIONS = {"trainer": "default", "logger": "default", "budget": "demo",
                   "optim": "sgd_cosine"}


def _values(node) -> dict:
    """A YAML node's own values: no defaults list or `_target_`, no interpolations."""
    out = {}
    for key in node:
        if key in ("defaults", "_target_") or OmegaConf.is_interpolation(node, key):
            continue
        if OmegaConf.is_missing(node, key):
            out[key] = "???"
        elif OmegaConf.is_dict(node[key]):
            out[key] = _values(node[key])
        else:
            out[key] = OmegaConf.to_container(node[key]) if OmegaConf.is_list(node[key]) \
                else node[key]
    return out


def _mismatches(values: dict, defaults: dict, where: str) -> list[str]:
    out = []
    for key, value in values.items():
        if key not in defaults:
            out.append(f"{where}.{key}: not a field of the schema")
        elif isinstance(value, dict) and isinstance(defaults[key], dict):
            out += _mismatches(value, defaults[key], f"{where}.{key}")
        elif value != defaults[key]:
            out.append(f"{where}.{key}: {value!r} in YAML, {defaults[key]!r} in the schema")
    return out


def _schema_defaults(schema) -> dict:
    return OmegaConf.to_container(OmegaConf.structured(schema))


def _group_files():
    """(file, schema) for every option of the schema-checked groups and every method."""
    for group, schema in SCHEMAS.items():
        for path in sorted((CONF / group).glob("*.yaml")):
            yield path, schema
    for path in sorted((CONF / "data").glob("*.yaml")):
        cfg = OmegaConf.load(path)
        base = cfg if "defaults" not in cfg else OmegaConf.load(path.parent /
                                                                 f"{cfg.defaults[0]}.yaml")
        yield path, DATA_CONFIGS[cfg.get("name", base.get("name"))]
    for path in sorted((CONF / "method").glob("*.yaml")):
        yield path, method_class(OmegaConf.load(path)).Config


def _placed_groups(cfg) -> dict:
    """The defaults entries that compose another group into a field of this config
    (`- /optim@optim: sgd_cosine`), as {field: (group, option)}."""
    out = {}
    for entry in cfg.get("defaults", []):
        if OmegaConf.is_dict(entry):
            (key, option), = entry.items()
            if key.startswith("/") and "@" in key:
                group, field = key[1:].split("@")
                out[field] = (group, option)
    return out


def _id(value):
    return value.relative_to(CONF).as_posix() if isinstance(value, Path) else ""


@pytest.mark.parametrize("path, schema", list(_group_files()), ids=_id)
def test_every_value_is_defined_once(path, schema):
    cfg = OmegaConf.load(path)
    values = _values(cfg)
    placed = _placed_groups(cfg)
    for key, (group, option) in placed.items():
        # A group option composed into a field (`- /optim@optim: sgd_cosine`): that field's
        # schema default is the option's values.
        option_values = _values(OmegaConf.load(CONF / group / f"{option}.yaml"))
        assert _mismatches(option_values, _schema_defaults(schema)[key], f"{path.stem}.{key}") \
            == []
    if "defaults" not in cfg or len(placed) == len(cfg.defaults) - 1:
        # a base: it states the schema's defaults
        assert path.parent.name not in DEFAULT_OPTIONS or \
            DEFAULT_OPTIONS[path.parent.name] == path.stem, f"{path}: a second base"
        assert _mismatches(values, _schema_defaults(schema), path.stem) == []
        return
    # A derived option: one base of its group, and only what it changes.
    assert list(cfg.defaults) == [cfg.defaults[0], "_self_"], path
    base = _values(OmegaConf.load(path.parent / f"{cfg.defaults[0]}.yaml"))
    assert "defaults" not in OmegaConf.load(path.parent / f"{cfg.defaults[0]}.yaml")
    assert set(values) <= set(_schema_defaults(schema)), f"{path}: not a field of the schema"
    repeated = sorted(k for k, v in values.items() if base.get(k) == v)
    assert repeated == [], f"{path}: repeats {repeated} of {cfg.defaults[0]}.yaml"


def test_a_mismatch_is_found():
    """The check itself: a YAML value that differs from its schema default is reported."""
    assert _mismatches({"epochs": 14}, _schema_defaults(BudgetConfig), "demo") == \
        ["demo.epochs: 14 in YAML, 15 in the schema"]
