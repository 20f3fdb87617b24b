"""Latency: measured on a module, and predicted from a per-block lookup table.

MoGA predicts a model's latency as the sum of per-layer lookup-table entries plus the
fixed parts (stem, head). `LatencyTable` is our substitute for its (unpublished) mobile
GPU table: every distinct (block, input channels, input resolution) is built alone and
timed here, so a search can score thousands of candidates without building any.

A table holds one measurement setting (device, torch version, threads, batch, warmup,
repeats); entries timed under another setting are refused, since mixing them would
make the sum meaningless.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
import datetime
import json
import math
import os
import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import torch
from torch import nn

from nas.arch.io import to_dict
from nas.arch.shapes import conv_out, iter_blocks, last_channels
from nas.arch.spec import ChainSpec
from nas.files import write_text_atomic

FORMAT = "nas.latency_table"
VERSION = 1
# Measurement conditions every entry of one table shares.
SETTINGS = ("device", "torch_version", "threads", "batch", "warmup", "repeats")
_STAT_FIELDS = ("median_ms", "mean_ms", "std_ms", "p10_ms", "p90_ms", "min_ms")
# BN constants do not change eval-mode latency; blocks are built with these.
_EPS, _MOMENTUM = 1e-5, 0.1
# "steady" once steady_malloc() succeeded in this process; recorded in a table's meta.
_allocator = "default"


# --------------------------------------------------------------------------- measurement


@dataclass(frozen=True)
class LatencyStats:
    """Per-forward wall time in milliseconds over `repeats` timed runs, and the conditions."""

    median_ms: float
    mean_ms: float
    std_ms: float
    p10_ms: float
    p90_ms: float
    min_ms: float
    repeats: int
    warmup: int
    batch: int
    input_shape: tuple[int, ...]
    device: str
    torch_version: str
    threads: int

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["input_shape"] = list(self.input_shape)
        return d


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def device_name(device: torch.device | str) -> str:
    """'cpu: <processor>' or the CUDA device name: what a latency number was measured on."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{device.type}: {_cpu_name()}"


def steady_malloc(mmap_threshold: int = 32 << 20, trim_threshold: int = 1 << 30) -> bool:
    """Keep freed activation buffers in glibc's heap instead of returning them to the OS.

    By default glibc serves large allocations with mmap and trims the heap top, so each
    CPU forward can pay page faults on its activations; measured here, a 112x112 MoGA
    block took 7.3 ms that way and 1.7 ms without, and which case a measurement hits
    depends on the process's allocation history. Process-wide, so opt-in (the CLI calls
    it). Returns False where glibc's mallopt is unavailable.
    """
    global _allocator
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's malloc.h
    ok = bool(mallopt(m_mmap_threshold, mmap_threshold)) and bool(
        mallopt(m_trim_threshold, trim_threshold))
    if ok:
        _allocator = "steady"
    return ok


def _percentile(sorted_values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    pos = q * (len(sorted_values) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def _check_settings(warmup: int, repeats: int, threads: int | None, batch: int = 1) -> None:
    for name, value, low in (("repeats", repeats, 1), ("warmup", warmup, 0), ("batch", batch, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name}: expected an integer >= {low}, got {value!r}")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int)
                                or threads < 1):
        raise ValueError(f"threads: expected an integer >= 1 or None, got {threads!r}")


def _check_device(device: torch.device | str) -> torch.device:
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device: expected a torch device such as 'cpu' or 'cuda', "
                         f"got {device!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {device!r} requested but CUDA is not available")
    return dev


def measure_latency(module: nn.Module, input_shape: Iterable[int], *,
                    device: torch.device | str = "cpu", threads: int | None = None,
                    warmup: int = 10, repeats: int = 50) -> LatencyStats:
    """Time `repeats` eval-mode forwards of `module` on one random input of `input_shape`.

    The module is moved to `device` and run under torch.inference_mode after `warmup`
    untimed forwards; CUDA is synchronised around each timed forward. `threads` sets
    torch's intra-op threads for the measurement only (restored afterwards); None keeps
    the current setting, which is recorded either way. The module's train/eval mode is
    restored on return.
    """
    _check_settings(warmup, repeats, threads)
    shape = tuple(input_shape)
    if not shape or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in shape):
        raise ValueError(f"input_shape: expected a tuple of positive integers, got {shape!r}")
    dev = _check_device(device)
    cuda = dev.type == "cuda"

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(dev)

    old_threads = torch.get_num_threads()
    was_training = module.training
    try:
        if threads is not None:
            torch.set_num_threads(threads)
        used_threads = torch.get_num_threads()
        module.to(dev).eval()
        times = []
        with torch.inference_mode():
            x = torch.randn(shape, device=dev)
            for _ in range(warmup):
                module(x)
            sync()
            for _ in range(repeats):
                start = time.perf_counter()
                module(x)
                sync()
                times.append((time.perf_counter() - start) * 1e3)
    finally:
        module.train(was_training)
        if threads is not None:
            torch.set_num_threads(old_threads)
    s = sorted(times)
    return LatencyStats(
        median_ms=statistics.median(s), mean_ms=statistics.fmean(s),
        std_ms=statistics.stdev(s) if len(s) > 1 else 0.0,
        p10_ms=_percentile(s, 0.1), p90_ms=_percentile(s, 0.9), min_ms=s[0],
        repeats=repeats, warmup=warmup, batch=shape[0], input_shape=shape,
        device=device_name(dev), torch_version=torch.__version__, threads=used_threads)


# --------------------------------------------------------------------------- keys


def _key(obj: dict[str, Any]) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def block_key(block: object, cin: int, hw: int) -> str:
    """Canonical key of a block at input width `cin` and input resolution `hw`."""
    return _key({"part": "block", "block": to_dict(block), "cin": cin, "hw": hw})


def stem_key(spec: ChainSpec, size: int | None = None) -> str:
    size = spec.input_size if size is None else size
    return _key({"part": "stem", "conv": to_dict(spec.stem), "cin": spec.in_channels, "hw": size})


def head_key(spec: ChainSpec, cin: int, hw: int) -> str:
    return _key({"part": "head", "head": to_dict(spec.head), "cin": cin, "hw": hw,
                 "num_classes": spec.num_classes})


@dataclass(frozen=True)
class Part:
    """One lookup of a prediction: 'stem', 'block 3' or 'head', its key, and how to build it."""

    label: str
    key: str
    cin: int
    hw: int
    spec: object  # the ConvSpec, block spec or HeadSpec


def parts(spec: ChainSpec, size: int | None = None) -> list[Part]:
    """The entries a prediction of `spec` sums, in order: stem, blocks, head."""
    if not isinstance(spec, ChainSpec):
        raise TypeError(f"latency tables cover chain specs, got {type(spec).__name__}")
    size = spec.input_size if size is None else size
    out = [Part("stem", stem_key(spec, size), spec.in_channels, size, spec.stem)]
    head_hw = conv_out(size, spec.stem.stride)
    for i, block, cin, hw in iter_blocks(spec, size):
        out.append(Part(f"block {i}", block_key(block, cin, hw), cin, hw, block))
        head_hw = conv_out(hw, block.stride)
    cin = last_channels(spec)
    out.append(Part("head", head_key(spec, cin, head_hw), cin, head_hw, spec.head))
    return out


def _part_module(part: Part, spec: ChainSpec) -> nn.Module:
    """The part built alone, exactly as ChainNet builds it."""
    from nas.arch.builder import Head, conv_layer
    from nas.ops.blocks import BLOCKS
    from nas.ops.layers import make_norm

    norm = make_norm(_EPS, _MOMENTUM)
    if part.label == "stem":
        return conv_layer(part.cin, part.spec, norm)
    if part.label == "head":
        return Head(part.spec, part.cin, spec.num_classes, norm)
    return BLOCKS[type(part.spec)](part.spec, part.cin, norm=norm)


# --------------------------------------------------------------------------- table


class MissingEntry(KeyError):
    """A prediction needs an entry the table does not hold; the message is one line."""

    def __str__(self) -> str:
        return self.args[0]


class LatencyTableError(ValueError):
    """A latency table file that cannot be read; the message is one line naming the file."""


def _as_spec(item: object) -> ChainSpec:
    spec = item if isinstance(item, ChainSpec) else getattr(item, "spec", None)
    if not isinstance(spec, ChainSpec):
        raise TypeError(f"expected a ChainSpec or a candidate with a .spec ChainSpec, "
                        f"got {type(item).__name__}")
    return spec


class LatencyTable:
    """Per-part latency lookup table: key -> LatencyStats, plus the shared settings (meta)."""

    def __init__(self) -> None:
        self.meta: dict[str, Any] = {}
        self.entries: dict[str, LatencyStats] = {}

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, key: object) -> bool:
        return key in self.entries

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LatencyTable):
            return NotImplemented
        return self.meta == other.meta and self.entries == other.entries

    def add(self, key: str, stats: LatencyStats) -> None:
        """Store one entry; its settings must match the table's (the first entry sets them)."""
        if not isinstance(key, str):
            raise TypeError(f"key: expected a string, got {type(key).__name__}")
        if not isinstance(stats, LatencyStats):
            raise TypeError(f"stats: expected LatencyStats, got {type(stats).__name__}")
        for name in SETTINGS:
            value = getattr(stats, name)
            if name in self.meta and self.meta[name] != value:
                raise ValueError(f"entry measured with {name}={value!r}, but this table holds "
                                 f"{name}={self.meta[name]!r}; use one table per setting")
        for name in SETTINGS:
            self.meta.setdefault(name, getattr(stats, name))
        self.entries[key] = stats

    def build(self, specs_or_candidates: Iterable[object], *, batch: int = 1,
              device: torch.device | str = "cpu", threads: int | None = None,
              warmup: int = 10, repeats: int = 50) -> "LatencyTable":
        """Measure every distinct stem, (block, cin, hw) and head of the given chain specs
        (or candidates with a `.spec`) that the table lacks, each built alone; returns self.

        Identical blocks at identical input shapes are measured once and shared.
        """
        _check_settings(warmup, repeats, threads, batch)
        wanted = {"device": device_name(_check_device(device)), "torch_version": torch.__version__,
                  "threads": torch.get_num_threads() if threads is None else threads,
                  "batch": batch, "warmup": warmup, "repeats": repeats}
        for name, value in wanted.items():  # refuse before spending time on measurements
            if name in self.meta and self.meta[name] != value:
                raise ValueError(f"build with {name}={value!r}, but this table holds "
                                 f"{name}={self.meta[name]!r}; use one table per setting")
        todo: dict[str, tuple[Part, ChainSpec]] = {}
        for item in specs_or_candidates:
            spec = _as_spec(item)
            for part in parts(spec):
                if part.key not in self.entries and part.key not in todo:
                    todo[part.key] = (part, spec)
        for key, (part, spec) in todo.items():
            module = _part_module(part, spec)
            self.add(key, measure_latency(module, (batch, part.cin, part.hw, part.hw),
                                          device=device, threads=threads, warmup=warmup,
                                          repeats=repeats))
        self.meta.setdefault("created", _now())
        self.meta.setdefault("allocator", _allocator)
        return self

    def lookup(self, spec: ChainSpec, size: int | None = None) -> list[tuple[Part, float]]:
        """(part, median ms) for every part of `spec`, in prediction order."""
        spec = _as_spec(spec)
        out = []
        for part in parts(spec, size):
            stats = self.entries.get(part.key)
            if stats is None:
                raise MissingEntry(f"{spec.name}: no latency entry for {part.label} "
                                   f"(key {part.key})")
            out.append((part, stats.median_ms))
        return out

    def predict(self, spec: ChainSpec, size: int | None = None) -> float:
        """Predicted latency in ms: stem + sum of blocks + head, summed in that order."""
        total = 0.0
        for _, ms in self.lookup(spec, size):
            total += ms
        return total

    # ----------------------------------------------------------------------- files

    def to_dict(self) -> dict[str, Any]:
        meta = dict(self.meta)
        meta.setdefault("created", _now())
        entries = {}
        for key, s in sorted(self.entries.items()):
            entries[key] = {f: getattr(s, f) for f in _STAT_FIELDS}
            entries[key]["input_shape"] = list(s.input_shape)
        return {"format": FORMAT, "version": VERSION, "meta": meta, "entries": entries}

    def save(self, path: str | os.PathLike) -> None:
        """Write JSON atomically (temp file + os.replace): a crash never leaves half a table."""
        write_text_atomic(path, json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> "LatencyTable":
        """Read a table written by `save`; every error is one line starting with the path."""
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as e:
            raise LatencyTableError(f"{path}: cannot read latency table ({e.strerror})") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise LatencyTableError(f"{path}: not valid JSON ({e.msg} at line {e.lineno} "
                                    f"column {e.colno})") from None
        try:
            return cls._from_dict(data)
        except (TypeError, ValueError, KeyError) as e:
            msg = e.args[0] if e.args else str(e)
            raise LatencyTableError(f"{path}: {msg}") from None

    @classmethod
    def _from_dict(cls, data: Any) -> "LatencyTable":
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            got = (repr(data.get("format")) if isinstance(data, dict)
                   else f"a JSON {type(data).__name__}")
            raise ValueError(f"not a latency table: expected format {FORMAT!r}, got {got}")
        if data.get("version") != VERSION:
            raise ValueError(f"unsupported latency table version {data.get('version')!r}; "
                             f"expected {VERSION}")
        meta, entries = data.get("meta"), data.get("entries")
        if not isinstance(meta, dict) or not isinstance(entries, dict):
            raise ValueError("expected 'meta' and 'entries' mappings")
        missing = [n for n in SETTINGS if n not in meta]
        if missing:
            raise ValueError(f"meta: missing field {missing[0]!r}")
        table = cls()
        table.meta = dict(meta)
        settings = {n: meta[n] for n in SETTINGS}
        for key, e in entries.items():
            if not isinstance(e, dict):
                raise ValueError(f"entry {key}: expected a mapping, got {e!r}")
            for f in _STAT_FIELDS:
                v = e.get(f)
                if isinstance(v, bool) or not isinstance(v, (int, float)):
                    raise ValueError(f"entry {key}: {f} expected a number, got {v!r}")
            shape = e.get("input_shape")
            if not isinstance(shape, list) or not all(isinstance(s, int) for s in shape):
                raise ValueError(f"entry {key}: input_shape expected a list of integers, "
                                 f"got {shape!r}")
            table.entries[key] = LatencyStats(**{f: float(e[f]) for f in _STAT_FIELDS},
                                              input_shape=tuple(shape), **settings)
        return table


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
