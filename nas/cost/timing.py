"""Timing forwards: the one timing loop every latency number comes from, its clocks and
settings, and `measure_latency` for one module.

Latency is always timed as an exported network runs: in inference mode with whole kernels
(TrimmedConv2d's tap trimming is a training-time shortcut that ONNX graphs do not have).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import dataclasses
import platform
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
from torch import nn

from nas.ops.layers import full_kernels

# What a millisecond is read from: wall time (perf_counter), or the CPU time of the calling
# thread, which leaves out the slices the OS gives other processes on a shared machine
# (CPU and one intra-op thread only, where every op runs in the calling thread).
CLOCKS = ("wall", "thread")
# "steady" once steady_malloc() succeeded in this process; tables record it.
_allocator = "default"


@dataclass(frozen=True)
class LatencyStats:
    """Per-forward time in milliseconds over `repeats` timed runs, and the conditions."""

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
    clock: str

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["input_shape"] = list(self.input_shape)
        return d


def summary(times: Sequence[float], *, repeats: int, warmup: int, input_shape: tuple[int, ...],
            device: str, threads: int, clock: str) -> LatencyStats:
    """LatencyStats of per-forward times (ms), pooled over runs of `repeats` timed forwards
    each; percentiles interpolate linearly."""
    a = np.asarray(times, dtype=float)
    p10, p90 = np.percentile(a, [10, 90])
    return LatencyStats(
        median_ms=float(np.median(a)), mean_ms=float(a.mean()),
        std_ms=float(a.std(ddof=1)) if len(a) > 1 else 0.0,
        p10_ms=float(p10), p90_ms=float(p90), min_ms=float(a.min()),
        repeats=repeats, warmup=warmup, batch=input_shape[0], input_shape=tuple(input_shape),
        device=device, torch_version=torch.__version__, threads=threads, clock=clock)


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
    depends on the process's allocation history. Process-wide, so opt-in (the scripts call
    it). Returns False where glibc's mallopt is unavailable.
    """
    global _allocator
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's malloc.h
    ok = bool(mallopt(m_mmap_threshold, mmap_threshold)) and bool(
        mallopt(m_trim_threshold, trim_threshold))
    if ok:
        _allocator = "steady"
    return ok


def allocator() -> str:
    """'steady' after a successful steady_malloc() in this process, else 'default'."""
    return _allocator


def check_settings(warmup: int, repeats: int, threads: int | None, batch: int = 1) -> None:
    """One-line ValueErrors for measurement settings that cannot be right."""
    for name, value, low in (("repeats", repeats, 1), ("warmup", warmup, 0), ("batch", batch, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name}: expected an integer >= {low}, got {value!r}")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int)
                                or threads < 1):
        raise ValueError(f"threads: expected an integer >= 1 or None, got {threads!r}")


def check_device(device: torch.device | str) -> torch.device:
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device: expected a torch device such as 'cpu' or 'cuda', "
                         f"got {device!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {device!r} requested but CUDA is not available")
    return dev


def clock_fn(clock: str, device: torch.device | str, threads: int) -> Callable[[], float]:
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


@contextlib.contextmanager
def intra_op_threads(threads: int | None):
    """torch's intra-op threads set to `threads` (None: unchanged) inside; yields the count."""
    old = torch.get_num_threads()
    try:
        if threads is not None:
            torch.set_num_threads(threads)
        yield torch.get_num_threads()
    finally:
        if threads is not None:
            torch.set_num_threads(old)


def time_forwards(modules: Sequence[nn.Module], x: torch.Tensor, *, warmup: int, repeats: int,
                  now: Callable[[], float] = time.perf_counter) -> list[list[float]]:
    """Per-module ms of `repeats` forwards of `x` through `modules` in sequence, after
    `warmup` untimed ones: one row per timed forward.

    Boundaries are read between consecutive modules of one uninterrupted forward, so a
    row sums to the forward's time and each module runs with the cache state the modules
    before it leave. On CUDA the boundaries are events on the stream with one
    synchronisation per forward, so launches still overlap kernels as in a whole forward
    (`now` is not used there).
    """
    cuda = x.device.type == "cuda"
    rows = []
    with torch.inference_mode(), full_kernels(), (
            torch.cuda.device(x.device) if cuda else contextlib.nullcontext()):
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
                rows.append(ms)
    return rows


def measure_latency(module: nn.Module, input_shape: Iterable[int], *,
                    device: torch.device | str = "cpu", threads: int | None = None,
                    warmup: int = 10, repeats: int = 50, clock: str = "wall") -> LatencyStats:
    """Time `repeats` eval-mode forwards of `module` on one random input of `input_shape`,
    after `warmup` untimed ones (time_forwards).

    `threads` sets torch's intra-op threads for the measurement only; None keeps the
    current setting, which is recorded either way. The module is moved to `device`; its
    train/eval mode is restored on return. `clock`: see CLOCKS.
    """
    check_settings(warmup, repeats, threads)
    shape = tuple(input_shape)
    if not shape or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in shape):
        raise ValueError(f"input_shape: expected a tuple of positive integers, got {shape!r}")
    dev = check_device(device)
    was_training = module.training
    try:
        with intra_op_threads(threads) as used:
            now = clock_fn(clock, dev, used)
            x = torch.randn(shape, device=dev)
            rows = time_forwards([module.to(dev).eval()], x, warmup=warmup, repeats=repeats,
                                 now=now)
    finally:
        module.train(was_training)
    return summary([row[0] for row in rows], repeats=repeats, warmup=warmup, input_shape=shape,
                   device=device_name(dev), threads=used, clock=clock)
