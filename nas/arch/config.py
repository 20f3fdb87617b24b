"""The `arch` config group -> ArchSpec: a zoo name, or a searched architecture file."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from nas.arch import io
from nas.arch.spec import ArchSpec
from nas.arch.zoo import get_spec


def spec_from_config(cfg: Mapping[str, Any], num_classes: int | None = None,
                     input_size: int | None = None) -> ArchSpec:
    """`{source: zoo, name: moga_a}` or `{source: file, path: runs/.../arch.yaml}`.

    num_classes and input_size, when given (from the data), override the spec's own.
    """
    source = cfg.get("source")
    if source == "zoo":
        return get_spec(cfg["name"], num_classes, input_size)
    if source == "file":
        path = cfg.get("path")
        if not path or path == "???":
            raise io.SpecError("arch.path: expected the path of an arch YAML file "
                               "(arch=file arch.path=runs/.../arch.yaml)")
        spec = io.load(path)
        changes = {k: v for k, v in (("num_classes", num_classes), ("input_size", input_size))
                   if v is not None}
        return dataclasses.replace(spec, **changes) if changes else spec
    raise io.SpecError(f"arch.source: expected 'zoo' or 'file', got {source!r}")
