"""Typed config groups: a dataclass schema per group, checked before any work starts.

`check(schema, cfg, "data")` merges a Hydra/OmegaConf node onto the schema (types are
checked by OmegaConf) and instantiates it (ranges are checked in __post_init__); any
failure becomes one ConfigError line naming the key and what was expected.

`CONF_DIR` is where every entry point finds the Hydra configs.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping, TypeVar

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

T = TypeVar("T")

# The configs inside the package, so that a clone, an editable install and an installed wheel
# all find them here: in a checkout nas/conf links to the repository's conf/ (whose
# experiment/ links to experiments/); a wheel holds copies (pyproject's package-data).
CONF_DIR = Path(__file__).resolve().parent / "conf"


class ConfigError(ValueError):
    """An invalid config value; the message is one line."""


def check(schema: type[T], cfg: Mapping[str, Any] | DictConfig, prefix: str) -> T:
    """Validate `cfg` against the dataclass `schema`; return the schema instance."""
    try:
        # Interpolations (${...}) are resolved against the whole config first.
        node = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True)) \
            if isinstance(cfg, DictConfig) else OmegaConf.create(dict(cfg))
        merged = OmegaConf.merge(OmegaConf.structured(schema), node)
        return OmegaConf.to_object(merged)
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None) or ""
        first = str(e).splitlines()[0]
        if first.startswith("Key '") and " not in " in first:
            fields = ", ".join(f.name for f in dataclasses.fields(schema))
            raise ConfigError(f"{prefix}.{key}: not a {prefix} option; expected one of: "
                              f"{fields}") from None
        where = f"{prefix}.{key}" if key else prefix
        raise ConfigError(f"{where}: {first}") from None
    except ConfigError as e:
        raise ConfigError(f"{prefix}.{e}") from None


def require(condition: bool, key: str, expected: str, got: Any) -> None:
    """Range check for __post_init__: raises ConfigError('key: expected ..., got ...')."""
    if not condition:
        raise ConfigError(f"{key}: expected {expected}, got {got!r}")
