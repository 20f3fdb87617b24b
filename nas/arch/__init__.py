"""Architecture specs: dataclasses, YAML io and validation, the builder, and the zoo."""

from __future__ import annotations

from torch import nn


def create_model(name: str, num_classes: int | None = None, input_size: int | None = None) -> nn.Module:
    """Build a published architecture by zoo name, e.g. create_model("moga_a", num_classes=10)."""
    from nas.arch.builder import build
    from nas.arch.zoo import get_spec

    return build(get_spec(name, num_classes, input_size))
