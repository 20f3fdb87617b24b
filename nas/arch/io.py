"""ArchSpec <-> plain dicts and YAML, with field-level validation.

Loading checks types field by field and then the semantics of the whole network
(channels, strides, residual feasibility) so that a bad spec fails with one line that
names the file, the block index and field, and what was expected.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from nas.arch.spec import BLOCK_TYPES, FAMILIES, ArchSpec, SpecError
from nas.arch.validate import validate
from nas.files import write_text_atomic


# --------------------------------------------------------------------------- to dict


def to_dict(spec: Any) -> Any:
    """Dataclasses to plain dicts/lists in field order (tuples become lists)."""
    if dataclasses.is_dataclass(spec):
        return {f.name: to_dict(getattr(spec, f.name)) for f in dataclasses.fields(spec)}
    if isinstance(spec, (list, tuple)):
        return [to_dict(v) for v in spec]
    return spec


class _Dumper(yaml.SafeDumper):
    """Block style for containers that hold lists of mappings (the spec, its head);
    flow style, one line each, for everything else (a block, a conv layer, a genotype)."""


def _holds_mapping_list(data: object) -> bool:
    values = data.values() if isinstance(data, dict) else data
    return any(isinstance(v, list) and any(isinstance(x, dict) for x in v) or
               isinstance(v, dict) and _holds_mapping_list(v) for v in values)


def _represent_dict(dumper: yaml.SafeDumper, data: dict) -> yaml.Node:
    return dumper.represent_mapping("tag:yaml.org,2002:map", data.items(),
                                    flow_style=not _holds_mapping_list(data))


def _represent_list(dumper: yaml.SafeDumper, data: list) -> yaml.Node:
    flow = not any(isinstance(v, dict) for v in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_Dumper.add_representer(dict, _represent_dict)
_Dumper.add_representer(list, _represent_list)


def dumps(spec: ArchSpec) -> str:
    return yaml.dump(to_dict(spec), Dumper=_Dumper, sort_keys=False, width=120)


def save(spec: ArchSpec, path: str | os.PathLike) -> None:
    """Write atomically: a crash never leaves a half-written arch file."""
    write_text_atomic(path, dumps(spec))


# --------------------------------------------------------------------------- from dict


def _type_name(tp: Any) -> str:
    if tp is type(None):
        return "null"
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is typing.Literal:
        return repr(typing.get_args(tp)[0])
    if origin in (list, tuple):
        return "list"
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is typing.Any:
        return value
    if origin is typing.Literal:
        if value not in args:
            raise SpecError(f"{where}: expected {args[0]!r}, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None:
            if type(None) in args:
                return None
            raise SpecError(f"{where}: expected {_type_name(tp)}, got null")
        if all(isinstance(a, type) and dataclasses.is_dataclass(a) for a in args) and args:
            return _convert_block(value, where)
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return _convert(value, inner[0], where)
        for a in inner:
            try:
                return _convert(value, a, where)
            except SpecError:
                continue
        raise SpecError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise SpecError(f"{where}: expected a list, got {value!r}")
        return [_convert(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise SpecError(f"{where}: expected a list of {len(args)} items, got {value!r}")
        return tuple(_convert(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if dataclasses.is_dataclass(tp):
        return _convert_dataclass(value, tp, where)
    if tp is bool:
        if not isinstance(value, bool):
            raise SpecError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise SpecError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SpecError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise SpecError(f"{where}: expected a string, got {value!r}")
        return value
    raise TypeError(f"unsupported spec field type {tp!r} at {where}")


def _convert_dataclass(value: Any, cls: type, where: str) -> Any:
    if not isinstance(value, dict):
        raise SpecError(f"{where}: expected a mapping of {cls.__name__} fields, got {value!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(value) - set(fields))
    if unknown:
        raise SpecError(f"{where}: unknown field {unknown[0]!r}; expected one of {sorted(fields)}")
    kwargs = {}
    for name, f in fields.items():
        sub = f"{where}.{name}" if where else name
        if name not in value:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise SpecError(f"{sub}: missing field (expected {_type_name(hints[name])})")
            continue
        kwargs[name] = _convert(value[name], hints[name], sub)
    return cls(**kwargs)


def _convert_block(value: Any, where: str) -> Any:
    if not isinstance(value, dict) or "type" not in value:
        raise SpecError(f"{where}: expected a block mapping with a 'type' field, got {value!r}")
    cls = BLOCK_TYPES.get(value["type"])
    if cls is None:
        raise SpecError(f"{where}.type: unknown block type {value['type']!r}; "
                        f"expected one of {sorted(BLOCK_TYPES)}")
    return _convert_dataclass(value, cls, where)


def from_dict(data: Any) -> ArchSpec:
    """Typed and validated spec from a plain dict; raises SpecError with one line."""
    if not isinstance(data, dict):
        raise SpecError(f"expected a mapping with a 'family' field, got {type(data).__name__}")
    family = data.get("family")
    cls = FAMILIES.get(family)
    if cls is None:
        raise SpecError(f"family: expected one of {sorted(FAMILIES)}, got {family!r}")
    spec = _convert_dataclass(data, cls, "")
    validate(spec)
    return spec


def loads(text: str) -> ArchSpec:
    try:
        data = yaml.safe_load(text)
        return from_dict(data)
    except yaml.YAMLError as e:
        raise SpecError(f"not valid YAML: {str(e).splitlines()[0]}") from None
    except RecursionError:
        raise SpecError("YAML nested too deeply to read; expected an arch spec (a few "
                        "levels of mappings and lists)") from None


def load(path: str | os.PathLike) -> ArchSpec:
    """Load an arch YAML file; every error message starts with the file name."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise SpecError(f"{path}: cannot read arch file ({e.strerror})") from None
    except UnicodeDecodeError as e:
        raise SpecError(f"{path}: not a UTF-8 text file (byte {e.start}); expected an arch "
                        f"YAML file") from None
    try:
        return loads(text)
    except SpecError as e:
        raise SpecError(f"{path}: {e}") from None
