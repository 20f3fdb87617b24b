"""The zoo's registry: every published architecture by name, with the published figures."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Callable

from nas.arch.spec import ArchSpec
from nas.arch.validate import validate


@dataclass(frozen=True)
class ZooEntry:
    """A published architecture.

    make(num_classes, input_size) returns its spec; `official_params` is the exact
    count of the official code at the default classes (specs.md section 3; None where
    only rounded paper figures exist); `published` restates params / FLOPs / top-1.
    """

    name: str
    make: Callable[..., ArchSpec]
    paper: str
    published: str
    official_params: int | None = None
    num_classes: int = 1000
    input_size: int = 224


ZOO: dict[str, ZooEntry] = {}


def register(entry: ZooEntry) -> None:
    if entry.name in ZOO:
        raise ValueError(f"zoo name registered twice: {entry.name}")
    ZOO[entry.name] = entry


class UnknownArch(KeyError):
    def __str__(self) -> str:
        return self.args[0]


def entry(name: str) -> ZooEntry:
    if name not in ZOO:
        close = difflib.get_close_matches(name, ZOO, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UnknownArch(f"unknown architecture {name!r}{hint} "
                          f"(`python -m nas.zoo` lists all {len(ZOO)})")
    return ZOO[name]


def get_spec(name: str, num_classes: int | None = None, input_size: int | None = None) -> ArchSpec:
    """The published spec `name`, for any number of classes and input size (validated, so a
    size the network cannot take fails here with one line)."""
    e = entry(name)
    spec = e.make(num_classes=num_classes or e.num_classes, input_size=input_size or e.input_size)
    validate(spec)
    return spec
