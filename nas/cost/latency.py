"""Latency: measured on a module, and predicted from a per-block lookup table.

MoGA predicts a model's latency as the sum of per-layer lookup-table entries plus the
fixed parts (stem, head). `LatencyTable` is our substitute for its (unpublished) mobile
GPU table: every distinct (block, input channels, input resolution) is timed here, so a
search can score thousands of candidates without building any.

`build` times each part alone. `build_for_space` covers a whole ChainSearchSpace and by
default times each part inside whole-network forwards of reference paths (a part run
alone keeps its weights in cache and sums to 8-16 % less than the network takes on this
CPU), then fits one scale on those paths' whole-forward times; `lut_report` checks a
table against whole networks it was not fitted on.

A table holds one measurement setting (device, torch version, threads, batch, warmup,
repeats, clock); entries timed under another setting are refused, since mixing them would
make the sum meaningless.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import dataclasses
import datetime
import json
import logging
import math
import os
import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

import numpy as np
import torch
from torch import nn

from nas.arch.io import to_dict
from nas.arch.shapes import conv_out, iter_blocks, last_channels
from nas.arch.spec import ChainSpec
from nas.files import write_text_atomic
from nas.ops.layers import full_kernels

if TYPE_CHECKING:
    from nas.supernet.chain import ChainSearchSpace

FORMAT = "nas.latency_table"
VERSION = 1
# Measurement conditions every entry of one table shares.
SETTINGS = ("device", "torch_version", "threads", "batch", "warmup", "repeats")
_STAT_FIELDS = ("median_ms", "mean_ms", "std_ms", "p10_ms", "p90_ms", "min_ms")
# BN constants do not change eval-mode latency; blocks are built with these.
_EPS, _MOMENTUM = 1e-5, 0.1
# "steady" once steady_malloc() succeeded in this process; recorded in a table's meta.
_allocator = "default"
# How entries were timed: each part built and run alone, or inside whole-network forwards.
TIMINGS = ("isolated", "context")
# Correction of the summed entries fitted on reference networks: none, ms * scale,
# ms * scale + offset.
CALIBRATIONS = ("none", "scale", "linear")
# What a millisecond is read from: wall time (perf_counter), or the CPU time of the calling
# thread, which leaves out the slices the OS gives other processes on a shared machine
# (CPU and one intra-op thread only, where every op runs in the calling thread).
CLOCKS = ("wall", "thread")
log = logging.getLogger(__name__)


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
    clock: str = "wall"

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


@contextlib.contextmanager
def _as_deployed():
    """Timed forwards run as an exported network does: in inference mode with whole kernels
    (TrimmedConv2d's tap trimming is a training-time shortcut that ONNX graphs do not have)."""
    with torch.inference_mode(), full_kernels():
        yield


def measure_latency(module: nn.Module, input_shape: Iterable[int], *,
                    device: torch.device | str = "cpu", threads: int | None = None,
                    warmup: int = 10, repeats: int = 50, clock: str = "wall") -> LatencyStats:
    """Time `repeats` eval-mode forwards of `module` on one random input of `input_shape`.

    The module is moved to `device` and run under torch.inference_mode after `warmup`
    untimed forwards; CUDA is synchronised around each timed forward. `threads` sets
    torch's intra-op threads for the measurement only (restored afterwards); None keeps
    the current setting, which is recorded either way. The module's train/eval mode is
    restored on return. `clock`: see CLOCKS and clock_fn.
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
        now = clock_fn(clock, dev, used_threads)
        module.to(dev).eval()
        times = []
        with _as_deployed():
            x = torch.randn(shape, device=dev)
            for _ in range(warmup):
                module(x)
            sync()
            for _ in range(repeats):
                start = now()
                module(x)
                sync()
                times.append((now() - start) * 1e3)
    finally:
        module.train(was_training)
        if threads is not None:
            torch.set_num_threads(old_threads)
    return _summary(times, repeats=repeats, warmup=warmup, input_shape=shape,
                    device=device_name(dev), threads=used_threads, clock=clock)


def clock_fn(clock: str, device: torch.device, threads: int):
    """The seconds counter `clock` names: time.perf_counter for "wall", time.thread_time
    for "thread". The thread clock is refused off the CPU or with more than one intra-op
    thread, where it would miss work done outside the calling thread."""
    if clock == "wall":
        return time.perf_counter
    if clock != "thread":
        raise ValueError(f"clock: expected one of {CLOCKS}, got {clock!r}")
    if torch.device(device).type != "cpu" or threads != 1:
        raise ValueError(f"clock: 'thread' counts the calling thread's CPU time only; it needs "
                         f"device cpu and threads=1, got {torch.device(device).type} and "
                         f"threads={threads}")
    return time.thread_time


def _summary(times: Sequence[float], *, repeats: int, warmup: int, input_shape: tuple[int, ...],
             device: str, threads: int, clock: str = "wall") -> LatencyStats:
    """LatencyStats of a list of per-forward times (ms)."""
    s = sorted(times)
    return LatencyStats(
        median_ms=statistics.median(s), mean_ms=statistics.fmean(s),
        std_ms=statistics.stdev(s) if len(s) > 1 else 0.0,
        p10_ms=_percentile(s, 0.1), p90_ms=_percentile(s, 0.9), min_ms=s[0],
        repeats=repeats, warmup=warmup, batch=input_shape[0], input_shape=tuple(input_shape),
        device=device, torch_version=torch.__version__, threads=threads, clock=clock)


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
        # Set by build_for_space: the fitted correction of summed entries and the reference
        # networks it was fitted on (see fit_calibration); None: predict is the plain sum.
        self.calibration: dict[str, Any] | None = None

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, key: object) -> bool:
        return key in self.entries

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LatencyTable):
            return NotImplemented
        return (self.meta == other.meta and self.entries == other.entries
                and self.calibration == other.calibration)

    def add(self, key: str, stats: LatencyStats) -> None:
        """Store one entry; its settings must match the table's (the first entry sets them)."""
        if not isinstance(key, str):
            raise TypeError(f"key: expected a string, got {type(key).__name__}")
        if not isinstance(stats, LatencyStats):
            raise TypeError(f"stats: expected LatencyStats, got {type(stats).__name__}")
        for name in (*SETTINGS, "clock"):
            value = getattr(stats, name)
            if name in self.meta and self.meta[name] != value:
                raise ValueError(f"entry measured with {name}={value!r}, but this table holds "
                                 f"{name}={self.meta[name]!r}; use one table per setting")
        for name in (*SETTINGS, "clock"):
            self.meta.setdefault(name, getattr(stats, name))
        self.entries[key] = stats

    def build(self, specs_or_candidates: Iterable[object], *, batch: int = 1,
              device: torch.device | str = "cpu", threads: int | None = None,
              warmup: int = 10, repeats: int = 50, clock: str = "wall") -> LatencyTable:
        """Measure every distinct stem, (block, cin, hw) and head of the given chain specs
        (or candidates with a `.spec`) that the table lacks, each built alone; returns self.

        Identical blocks at identical input shapes are measured once and shared.
        """
        _check_settings(warmup, repeats, threads, batch)
        wanted = {"device": device_name(_check_device(device)), "torch_version": torch.__version__,
                  "threads": torch.get_num_threads() if threads is None else threads,
                  "batch": batch, "warmup": warmup, "repeats": repeats, "clock": clock}
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
        timing = self.meta.get("timing", "isolated")
        if todo and timing != "isolated":
            raise ValueError(f"build times parts alone, but this table holds timing={timing!r} "
                             f"entries; use one table per setting")
        for key, (part, spec) in todo.items():
            module = _part_module(part, spec)
            self.add(key, measure_latency(module, (batch, part.cin, part.hw, part.hw),
                                          device=device, threads=threads, warmup=warmup,
                                          repeats=repeats, clock=clock))
        self.meta.setdefault("created", _now())
        self.meta.setdefault("allocator", _allocator)
        self.meta.setdefault("timing", "isolated")
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

    def predict(self, spec: ChainSpec, size: int | None = None, *,
                calibrated: bool = True) -> float:
        """Predicted latency in ms: stem + sum of blocks + head, summed in that order; then
        the table's calibration (scale * sum + offset), if it has one and `calibrated`."""
        total = 0.0
        for _, ms in self.lookup(spec, size):
            total += ms
        if calibrated and self.calibration is not None:
            return self.calibration["scale"] * total + self.calibration["offset_ms"]
        return total

    def predict_vector(self, space: ChainSearchSpace, vector: Sequence[int], *,
                       calibrated: bool = True) -> float:
        """predict(space.to_spec(vector)): the latency of one decision vector of `space`."""
        return self.predict(space.to_spec(vector), calibrated=calibrated)

    # ----------------------------------------------------------------------- search spaces

    def build_for_space(self, space: ChainSearchSpace, *, batch: int = 1,
                        device: torch.device | str = "cpu", threads: int | None = None,
                        warmup: int = 10, repeats: int = 50, timing: str = "context",
                        contexts: int = 4, calibration: str = "scale",
                        clock: str = "wall", seed: int = 0,
                        interleave: Callable[[int, int], None] | None = None
                        ) -> LatencyTable:
        """Fill this (empty) table with every candidate of every position of `space` at its
        input shape, plus the stem and head (fixed blocks are positions with one candidate).

        timing="context" (default) times each part inside whole-network forwards of
        reference paths: `contexts` sweeps of max-choices paths each, in which every
        candidate of every position runs once, paired at random with the others; each path
        runs `warmup` untimed and `repeats` timed forwards, with boundaries read between
        consecutive parts. An entry pools its part's times over all the paths it ran in.
        The reason: a part timed alone keeps its weights and input in cache from one
        forward to the next, which it never does inside the network, so isolated entries
        sum to less than the network takes (about 8 % at 32x32 and 16 % at 224x224 on a
        2-core EPYC here). timing="isolated" times each part alone (as `build` does).

        calibration: "scale" or "linear" fits measured ~ scale * sum (+ offset) over the
        reference paths, each also timed as one whole forward (read at its ends only, as
        a network is measured), and stores it with the paths' vectors so reports can
        leave them out (see fit_calibration); it corrects what summing per-part medians
        misses (a median is not additive; the boundary readings cost a little). "none"
        keeps the plain sum. With timing="isolated" a calibration times the reference
        paths only for the fit.

        clock="thread" times with the thread's CPU time (CPU, threads=1; see CLOCKS),
        which keeps other processes on a shared machine out of the entries. `interleave`,
        if given, is called as interleave(done, total) after each timed unit (a part
        alone, a reference path), e.g. to time other networks in alternation.
        """
        _check_settings(warmup, repeats, threads, batch)
        if timing not in TIMINGS:
            raise ValueError(f"timing: expected one of {TIMINGS}, got {timing!r}")
        if calibration not in CALIBRATIONS:
            raise ValueError(f"calibration: expected one of {CALIBRATIONS}, got {calibration!r}")
        if isinstance(contexts, bool) or not isinstance(contexts, int) or contexts < 1:
            raise ValueError(f"contexts: expected an integer >= 1, got {contexts!r}")
        if self.entries:
            raise ValueError("build_for_space fills an empty table; use load_or_build to "
                             "reuse a saved one")
        dev = _check_device(device)
        clock_fn(clock, dev, torch.get_num_threads() if threads is None else threads)
        layout = space_layout(space)
        start = time.perf_counter()
        with_paths = timing == "context" or calibration != "none"
        n_paths = contexts * max(len(pos) for pos in layout.positions) if with_paths else 0
        n_alone = len(layout.distinct_parts()) if timing == "isolated" else 0
        done, elsewhere = 0, 0.0  # units timed; seconds spent in `interleave`

        def step() -> None:
            nonlocal done, elsewhere
            done += 1
            if interleave is not None:
                t0 = time.perf_counter()
                interleave(done, n_alone + n_paths)
                elsewhere += time.perf_counter() - t0

        with _intra_op_threads(threads) as used_threads:
            name = device_name(dev)
            if timing == "isolated":
                for part in layout.distinct_parts():
                    module = _part_module_for(part, space.template)
                    self.add(part.key, measure_latency(
                        module, (batch, part.cin, part.hw, part.hw), device=dev,
                        threads=threads, warmup=warmup, repeats=repeats, clock=clock))
                    step()
            paths: list[list[int]] = []
            totals: list[float] = []
            if with_paths:
                gen = torch.Generator().manual_seed(seed)
                paths = reference_paths(layout, contexts, gen)
                samples, totals = _time_reference_paths(
                    layout, space.template, paths, batch, dev, warmup, repeats, clock,
                    per_part=timing == "context", whole=calibration != "none", step=step)
                if timing == "context":
                    for part in layout.distinct_parts():
                        self.add(part.key, _summary(
                            samples[part.key], repeats=repeats, warmup=warmup,
                            input_shape=(batch, part.cin, part.hw, part.hw), device=name,
                            threads=used_threads, clock=clock))
        self.meta.update(timing=timing, clock=clock, resolution=space.template.input_size,
                         contexts=contexts, seed=seed, calibration=calibration,
                         torch_device=str(dev), allocator=_allocator, created=_now(),
                         positions=[len(c) for c in space.positions])
        if calibration != "none":
            raw = [self._sum(layout.path_parts(p)) for p in paths]
            scale, offset = fit_calibration(raw, totals, calibration)
            self.calibration = {
                "fit": calibration, "scale": scale, "offset_ms": offset,
                "vectors": [[p[i] for i in space.searchable] for p in paths],
                "raw_ms": raw, "measured_ms": totals}
        self.meta["build_seconds"] = round(time.perf_counter() - start - elsewhere, 3)
        return self

    def _sum(self, path_parts: Iterable[Part]) -> float:
        total = 0.0
        for part in path_parts:
            total += self.entries[part.key].median_ms
        return total

    def matches(self, settings: dict[str, Any]) -> bool:
        """Whether this table was measured as `settings` asks: each given setting equals the
        table's (device as a torch device or its recorded name, threads None = torch's
        current setting), and "keys", if given, are all in the table."""
        for name, value in settings.items():
            if name == "keys":
                if not set(value) <= self.entries.keys():
                    return False
                continue
            if name == "device":
                recorded = self.meta.get("device")
                if value != recorded:
                    try:
                        value = device_name(value)
                    except (RuntimeError, TypeError, AssertionError):
                        return False
            elif name == "threads" and value is None:
                value = torch.get_num_threads()
            if self.meta.get(name) != value:
                return False
        return True

    @classmethod
    def load_or_build(cls, path: str | os.PathLike, space: ChainSearchSpace, *,
                      batch: int = 1, device: torch.device | str = "cpu",
                      threads: int | None = None, warmup: int = 10, repeats: int = 50,
                      timing: str = "context", contexts: int = 4, calibration: str = "scale",
                      clock: str = "wall", seed: int = 0) -> LatencyTable:
        """The table saved at `path` when it matches this machine and these settings (device,
        torch version, threads, batch, warmup, repeats, timing, clock, calibration,
        contexts, resolution) and holds every key `space` needs; otherwise a fresh
        build_for_space, saved to `path`. An unreadable file is rebuilt (with a warning)
        rather than trusted."""
        path = Path(path)
        wanted = {"device": device_name(_check_device(device)),
                  "torch_version": torch.__version__,
                  "threads": torch.get_num_threads() if threads is None else threads,
                  "batch": batch, "warmup": warmup, "repeats": repeats, "timing": timing,
                  "clock": clock, "calibration": calibration,
                  "resolution": space.template.input_size, "keys": space_layout(space).keys()}
        if timing == "context" or calibration != "none":
            wanted["contexts"] = contexts
        if path.exists():
            try:
                table = cls.load(path)
            except LatencyTableError as e:
                log.warning("%s; measuring a new table", e)
            else:
                if table.matches(wanted):
                    log.info("%s: reusing the latency table (same device and settings)", path)
                    return table
                log.info("%s: settings differ; measuring a new table", path)
        table = cls().build_for_space(space, batch=batch, device=device, threads=threads,
                                      warmup=warmup, repeats=repeats, timing=timing,
                                      contexts=contexts, calibration=calibration, clock=clock,
                                      seed=seed)
        table.save(path)
        return table

    # ----------------------------------------------------------------------- files

    def to_dict(self) -> dict[str, Any]:
        meta = dict(self.meta)
        meta.setdefault("created", _now())
        entries = {}
        for key, s in sorted(self.entries.items()):
            entries[key] = {f: getattr(s, f) for f in _STAT_FIELDS}
            entries[key]["input_shape"] = list(s.input_shape)
        out = {"format": FORMAT, "version": VERSION, "meta": meta, "entries": entries}
        if self.calibration is not None:
            out["calibration"] = self.calibration
        return out

    def save(self, path: str | os.PathLike) -> None:
        """Write JSON atomically (temp file + os.replace): a crash never leaves half a table."""
        write_text_atomic(path, json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> LatencyTable:
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
    def _from_dict(cls, data: Any) -> LatencyTable:
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
                                              input_shape=tuple(shape),
                                              clock=meta.get("clock", "wall"), **settings)
        cal = data.get("calibration")
        if cal is not None:
            if not isinstance(cal, dict):
                raise ValueError(f"calibration: expected a mapping, got {cal!r}")
            for f in ("scale", "offset_ms"):
                v = cal.get(f)
                if isinstance(v, bool) or not isinstance(v, (int, float)):
                    raise ValueError(f"calibration: {f} expected a number, got {v!r}")
            table.calibration = cal
        return table


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


load_or_build = LatencyTable.load_or_build


# --------------------------------------------------------------------------- search spaces


@dataclass(frozen=True)
class SpaceLayout:
    """The parts a chain search space can use: the stem, every candidate at every position
    (candidates of a position share input width and resolution), and the head."""

    stem: Part
    positions: tuple[tuple[Part, ...], ...]
    head: Part

    def path_parts(self, choice: Sequence[int]) -> list[Part]:
        """Stem, the chosen candidate of every position (`choice` has one index per
        position, fixed ones included), head."""
        return [self.stem, *(self.positions[i][c] for i, c in enumerate(choice)), self.head]

    def distinct_parts(self) -> list[Part]:
        """Every part once per key (equal candidates at equal shapes share an entry)."""
        seen: dict[str, Part] = {}
        for part in (self.stem, *(p for pos in self.positions for p in pos), self.head):
            seen.setdefault(part.key, part)
        return list(seen.values())

    def keys(self) -> set[str]:
        return {p.key for p in self.distinct_parts()}


def space_layout(space: ChainSearchSpace) -> SpaceLayout:
    """Parts of every candidate of `space` at the template's input size."""
    base = parts(space.to_spec([0] * len(space)))
    positions = []
    for i, cands in enumerate(space.positions):
        at = base[i + 1]
        positions.append(tuple(Part(at.label, block_key(c, at.cin, at.hw), at.cin, at.hw, c)
                               for c in cands))
    return SpaceLayout(base[0], tuple(positions), base[-1])


def reference_paths(layout: SpaceLayout, contexts: int,
                    generator: torch.Generator) -> list[list[int]]:
    """`contexts` sweeps of (most candidates at a position) paths; within a sweep, every
    candidate of every position is on at least one path, each position's candidates
    shuffled independently so every candidate meets varied neighbours."""
    width = max(len(pos) for pos in layout.positions)
    out = []
    for _ in range(contexts):
        perms = [torch.randperm(len(pos), generator=generator).tolist()
                 for pos in layout.positions]
        out.extend([perm[j % len(perm)] for perm in perms] for j in range(width))
    return out


def _part_module_for(part: Part, template: ChainSpec) -> nn.Module:
    from nas.ops.layers import init_weights

    module = _part_module(part, template)
    init_weights(module, template.init)  # the network's own init, as in build(spec)
    return module


@contextlib.contextmanager
def _intra_op_threads(threads: int | None):
    """torch's intra-op threads set to `threads` (None: unchanged) inside; yields the count."""
    old = torch.get_num_threads()
    try:
        if threads is not None:
            torch.set_num_threads(threads)
        yield torch.get_num_threads()
    finally:
        if threads is not None:
            torch.set_num_threads(old)


def _time_chain(modules: Sequence[nn.Module], x: torch.Tensor, *, warmup: int,
                repeats: int, now=time.perf_counter) -> list[list[float]]:
    """Per-module ms of `repeats` forwards through `modules` in sequence, after `warmup`.

    Boundaries are read between consecutive modules of one uninterrupted forward, so a
    forward's times sum to its wall time and each module runs with the cache state the
    rest of the network leaves it. On CUDA the boundaries are events on the stream, with
    one synchronisation per forward, so launches still overlap kernels as in a whole
    forward.
    """
    cuda = x.device.type == "cuda"
    out = []
    with _as_deployed(), (torch.cuda.device(x.device) if cuda
                          else contextlib.nullcontext()):
        for r in range(warmup + repeats):
            y = x
            if cuda:
                marks = [torch.cuda.Event(enable_timing=True) for _ in range(len(modules) + 1)]
                marks[0].record()
                for m, mark in zip(modules, marks[1:]):
                    y = m(y)
                    mark.record()
                torch.cuda.synchronize(x.device)
                ms = [a.elapsed_time(b) for a, b in zip(marks, marks[1:])]
            else:
                ticks = [now()]
                for m in modules:
                    y = m(y)
                    ticks.append(now())
                ms = [(b - a) * 1e3 for a, b in zip(ticks, ticks[1:])]
            if r >= warmup:
                out.append(ms)
    return out


def _time_reference_paths(layout: SpaceLayout, template: ChainSpec, paths: list[list[int]],
                          batch: int, device: torch.device, warmup: int, repeats: int,
                          clock: str = "wall", *, per_part: bool = True, whole: bool = True,
                          step: Callable[[], None] | None = None
                          ) -> tuple[dict[str, list[float]], list[float]]:
    """Time every path part by part (_time_chain: the per-key pooled times) and/or whole
    (the parts as one nn.Sequential, read only at its ends: each path's median forward
    time, measured as a network's is, for the calibration).

    Every (position, candidate) gets its own module, as in a network, so a candidate used
    at two positions does not find its weights cached."""
    modules: dict[tuple[int, int], nn.Module] = {}

    def module(i: int, part: Part) -> nn.Module:
        if (i, id(part)) not in modules:
            modules[(i, id(part))] = _part_module_for(part, template).to(device).eval()
        return modules[(i, id(part))]

    size = layout.stem.hw
    x = torch.randn(batch, layout.stem.cin, size, size, device=device)
    now = clock_fn(clock, device, torch.get_num_threads())
    samples: dict[str, list[float]] = {}
    totals = []
    for choice in paths:
        chain = layout.path_parts(choice)
        path = [module(i, p) for i, p in enumerate(chain)]
        warm = warmup
        if per_part:
            rows = _time_chain(path, x, warmup=warm, repeats=repeats, now=now)
            for j, part in enumerate(chain):
                samples.setdefault(part.key, []).extend(row[j] for row in rows)
            warm = min(warmup, 1)  # this path has just run
        if whole:
            rows = _time_chain([nn.Sequential(*path)], x, warmup=warm, repeats=repeats, now=now)
            totals.append(statistics.median(row[0] for row in rows))
        if step is not None:
            step()
    return samples, totals


def fit_calibration(raw_ms: Sequence[float], measured_ms: Sequence[float],
                    fit: str = "scale") -> tuple[float, float]:
    """(scale, offset_ms) so that measured ~ scale * raw + offset, by least squares over
    reference networks. "scale" goes through the origin: one parameter, stable on the
    narrow latency range random paths span, and it extrapolates to the extremes of a space
    by proportion. "linear" also fits an offset; "none" is (1, 0)."""
    if fit not in CALIBRATIONS:
        raise ValueError(f"calibration: expected one of {CALIBRATIONS}, got {fit!r}")
    raw, meas = np.asarray(raw_ms, dtype=float), np.asarray(measured_ms, dtype=float)
    if raw.shape != meas.shape or raw.ndim != 1 or len(raw) == 0:
        raise ValueError(f"calibration: expected two equal-length lists of latencies, got "
                         f"{len(raw)} and {len(meas)} values")
    if fit == "none":
        return 1.0, 0.0
    if fit == "linear" and len(np.unique(raw)) >= 2:
        scale, offset = np.polyfit(raw, meas, 1)
        return float(scale), float(offset)
    return float(raw @ meas / (raw @ raw)), 0.0


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b: (concordant - discordant) / sqrt(pairs untied in x * pairs untied
    in y); nan when either side is constant."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"kendall_tau: expected two equal-length sequences, got shapes "
                         f"{x.shape} and {y.shape}")
    i, j = np.triu_indices(len(x), 1)
    sx, sy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
    den = math.sqrt(float(np.count_nonzero(sx)) * float(np.count_nonzero(sy)))
    return float((sx * sy).sum() / den) if den else math.nan


def _errors(predicted: Sequence[float], measured: Sequence[float]) -> dict[str, float]:
    p, m = np.asarray(predicted, dtype=float), np.asarray(measured, dtype=float)
    rmse = float(np.sqrt(np.mean((p - m) ** 2)))
    rel = (p - m) / m
    return {"rmse_ms": rmse, "rel_rmse": rmse / float(m.mean()), "kendall_tau": kendall_tau(p, m),
            "mean_rel_error": float(rel.mean()), "max_abs_rel_error": float(np.abs(rel).max())}


def _time_models(models: Sequence[nn.Module], x: torch.Tensor, *, warmup: int, repeats: int,
                 rounds: int, now=time.perf_counter) -> list[list[float]]:
    """Whole-forward ms of each model, `repeats` in all, taken round-robin in `rounds`
    visits (each after `warmup` untimed forwards): a slow spell of a shared machine then
    spreads over all models instead of landing on a few and reordering them."""
    cuda = x.device.type == "cuda"
    counts = [repeats // rounds + (r < repeats % rounds) for r in range(rounds)]
    times: list[list[float]] = [[] for _ in models]
    with _as_deployed():
        for count in counts:
            for k, model in enumerate(models):
                for r in range(warmup + count):
                    start = now()
                    model(x)
                    if cuda:
                        torch.cuda.synchronize(x.device)
                    if r >= warmup:
                        times[k].append((now() - start) * 1e3)
    return times


def sample_vectors(space: ChainSearchSpace, n: int, seed: int,
                   exclude: Iterable[Sequence[int]] = ()) -> tuple[list[list[int]], int]:
    """`n` distinct random decision vectors of `space` drawn with `seed`, none in `exclude`
    (a table's calibration paths); also how many draws were left out for that."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ValueError(f"n: expected an integer >= 2, got {n!r}")
    excluded = {tuple(v) for v in exclude}
    gen = torch.Generator().manual_seed(seed)
    vectors: list[list[int]] = []
    skipped = 0
    for _ in range(100 * n):
        v = space.sample(gen)
        if tuple(v) in excluded:
            skipped += 1
        elif v not in vectors:
            vectors.append(v)
        if len(vectors) == n:
            return vectors, skipped
    raise ValueError(f"n: the space has too few architectures outside the calibration paths "
                     f"for {n} distinct ones")


class NetworkTimer:
    """Whole networks of `space` (build(spec) of each vector), timed in rounds that can be
    spread out: a benchmark calls `round` between a table's reference paths
    (build_for_space's `interleave`), so a change of load on a shared machine reaches the
    table and the networks it is checked against alike."""

    def __init__(self, space: ChainSearchSpace, vectors: Sequence[Sequence[int]], *,
                 device: torch.device | str = "cpu", threads: int | None = None,
                 batch: int = 1, warmup: int = 10, clock: str = "wall"):
        from nas.arch.builder import build

        _check_settings(warmup, 1, threads, batch)
        self.device = _check_device(device)
        self.threads = torch.get_num_threads() if threads is None else threads
        self.batch, self.warmup, self.clock = batch, warmup, clock
        self.now = clock_fn(clock, self.device, self.threads)
        self.vectors = [space.check(v) for v in vectors]
        size = space.template.input_size
        self.x = torch.randn(batch, space.template.in_channels, size, size, device=self.device)
        self.models = [build(space.to_spec(v)).to(self.device).eval() for v in self.vectors]
        self.times: list[list[float]] = [[] for _ in self.vectors]
        self.rounds = 0
        self.seconds = 0.0

    def round(self, repeats: int) -> None:
        """One visit to every network: `warmup` untimed and `repeats` timed forwards."""
        start = time.perf_counter()
        with _intra_op_threads(self.threads):
            times = _time_models(self.models, self.x, warmup=self.warmup, repeats=repeats,
                                 rounds=1, now=self.now)
        for mine, new in zip(self.times, times):
            mine.extend(new)
        self.rounds += 1
        self.seconds += time.perf_counter() - start


def lut_report(table: LatencyTable, space: ChainSearchSpace, n: int = 30, seed: int = 0, *,
               device: torch.device | str | None = None, threads: int | None = None,
               batch: int | None = None, warmup: int | None = None,
               repeats: int | None = None, rounds: int | None = None,
               clock: str | None = None, timer: NetworkTimer | None = None) -> dict[str, Any]:
    """Predicted against measured whole-network latency for `n` random architectures of
    `space` (drawn with `seed`, leaving out the table's calibration paths): RMSE, RMSE
    relative to the mean measured latency, Kendall tau-b, per-architecture rows, settings.

    Settings default to the table's; device, threads, batch and clock must match it,
    since a table predicts nothing about other conditions. Each network is built whole
    (build(spec)) and timed round-robin in `rounds` visits (default min(5, repeats); see
    _time_models) until it has `repeats` times; measured = median. A `timer` brings its
    own architectures, settings and the times it already took (see NetworkTimer).
    """
    meta = table.meta
    if timer is not None:
        device, threads, batch, clock = timer.device, timer.threads, timer.batch, timer.clock
        warmup = timer.warmup
    device = meta.get("torch_device", "cpu") if device is None else device
    threads = meta.get("threads") if threads is None else threads
    batch = meta.get("batch", 1) if batch is None else batch
    warmup = meta.get("warmup", 10) if warmup is None else warmup
    repeats = meta.get("repeats", 50) if repeats is None else repeats
    _check_settings(warmup, repeats, threads, batch)
    rounds = min(5, repeats) if rounds is None else rounds
    if isinstance(rounds, bool) or not isinstance(rounds, int) or not 1 <= rounds <= repeats:
        raise ValueError(f"rounds: expected an integer in [1, repeats], got {rounds!r}")
    dev = _check_device(device)
    asked = {"device": device_name(dev), "threads": threads, "batch": batch,
             "clock": meta.get("clock", "wall") if clock is None else clock}
    recorded = {"clock": "wall", **meta}  # tables from before clocks were wall-timed
    for name, value in asked.items():
        if recorded.get(name) != value:
            raise ValueError(f"report with {name}={value!r}, but the table was measured with "
                             f"{name}={recorded.get(name)!r}")

    calibration = table.calibration or {}
    excluded = {tuple(v) for v in calibration.get("vectors", [])}
    if timer is None:
        vectors, skipped = sample_vectors(space, n, seed, excluded)
        timer = NetworkTimer(space, vectors, device=dev, threads=threads, batch=batch,
                             warmup=warmup, clock=asked["clock"])
    else:
        vectors, skipped, n, seed = timer.vectors, 0, len(timer.vectors), None
        if excluded & {tuple(v) for v in vectors}:
            raise ValueError("timer: some of its architectures are calibration paths of the "
                             "table; a report must leave them out")
    predicted = [table.predict_vector(space, v) for v in vectors]
    raw = [table.predict_vector(space, v, calibrated=False) for v in vectors]
    # Top up to `repeats` times per network, in at most `rounds` visits.
    missing = repeats - min(len(t) for t in timer.times)
    for k in range(rounds):
        count = missing // rounds + (k < missing % rounds)
        if count > 0:
            timer.round(count)
    measured = [statistics.median(t) for t in timer.times]

    rows = []
    for v, p, r, t in zip(vectors, predicted, raw, timer.times):
        s = sorted(t)
        rows.append({"vector": v, "predicted_ms": p, "predicted_uncalibrated_ms": r,
                     "measured_ms": statistics.median(s), "measured_p10_ms": _percentile(s, 0.1),
                     "measured_p90_ms": _percentile(s, 0.9), "measured_n": len(s)})
    return {
        **_errors(predicted, measured),
        "n": n, "seed": seed,
        "mean_measured_ms": statistics.fmean(measured),
        "mean_predicted_ms": statistics.fmean(predicted),
        "uncalibrated": _errors(raw, measured),
        "calibration": ({k: calibration[k] for k in ("fit", "scale", "offset_ms")}
                        | {"paths": len(excluded)} if calibration else None),
        "skipped_calibration_paths": skipped,
        "measure_seconds": round(timer.seconds, 3),
        "settings": {"device": asked["device"], "torch_device": str(dev),
                     "torch_version": torch.__version__, "threads": threads, "batch": batch,
                     "warmup": warmup, "repeats": repeats, "rounds": timer.rounds,
                     "clock": asked["clock"],
                     "resolution": space.template.input_size,
                     "timing": meta.get("timing", "isolated"),
                     "contexts": meta.get("contexts"), "allocator": _allocator},
        "rows": rows,
    }
