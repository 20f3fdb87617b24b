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
import math
import platform
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Optional, Sequence

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
# What a latency estimate is: this percentile of the timed forwards. Noise on a shared
# machine only adds time (other processes' slices, their cache and memory traffic), so a low
# percentile of many visits finds the undisturbed time where the median moves with the
# load: MoGA's demo space on the 2-core EPYC beside two busy processes, 30 visits, table
# against 30 whole networks: median 3.4 % relative RMSE and Kendall tau 0.61, 5th
# percentile 0.6 % and 0.92 (quiet: 0.8 % / 0.93 and 0.6 % / 0.92).
LOW_PERCENTILE = 5


@dataclass(frozen=True)
class LatencyStats:
    """Per-forward time in milliseconds over `repeats` timed runs, and the conditions."""

    median_ms: float
    mean_ms: float
    std_ms: float
    p10_ms: float
    p90_ms: float
    min_ms: float
    low_ms: float       # the LOW_PERCENTILE-th percentile: what a table predicts with
    repeats: int
    warmup: int
    batch: int
    input_shape: tuple[int, ...]
    device: str
    torch_version: str
    threads: int
    clock: str
    visits: int = 1      # interleaved visits the times were taken in (time_visits)
    spread: float = 0.0  # split_half_spread over those visits: how far the estimate can move

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["input_shape"] = list(self.input_shape)
        return d


def low(times: Iterable[float]) -> float:
    """The LOW_PERCENTILE-th percentile of per-forward times (linear interpolation)."""
    return float(np.percentile(np.fromiter(times, dtype=float), LOW_PERCENTILE))


def split_half_spread(per_visit: Sequence[Sequence[float]]) -> float:
    """|low(even visits) - low(odd visits)| / low(all): how much the estimate moves between
    two halves of the visits, an estimate of its own noise (0 from a single visit)."""
    if len(per_visit) < 2:
        return 0.0
    even = [t for v in per_visit[0::2] for t in v]
    odd = [t for v in per_visit[1::2] for t in v]
    return abs(low(even) - low(odd)) / low(even + odd)


def summary(times: Sequence[float], *, repeats: int, warmup: int, input_shape: tuple[int, ...],
            device: str, threads: int, clock: str,
            per_visit: Optional[Sequence[Sequence[float]]] = None) -> LatencyStats:
    """LatencyStats of per-forward times (ms), pooled over runs of `repeats` timed forwards
    each; percentiles interpolate linearly. `per_visit` (the same times split by visit)
    gives the visits and their spread."""
    a = np.asarray(times, dtype=float)
    p10, p90 = np.percentile(a, [10, 90])
    per_visit = per_visit or [times]
    return LatencyStats(
        median_ms=float(np.median(a)), mean_ms=float(a.mean()),
        std_ms=float(a.std(ddof=1)) if len(a) > 1 else 0.0,
        p10_ms=float(p10), p90_ms=float(p90), min_ms=float(a.min()), low_ms=low(a),
        repeats=repeats, warmup=warmup, batch=input_shape[0], input_shape=tuple(input_shape),
        device=device, torch_version=torch.__version__, threads=threads, clock=clock,
        visits=len(per_visit), spread=split_half_spread(per_visit))


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


def clocks(device: torch.device | str) -> dict[str, Any]:
    """The clock a latency was measured at, where it can be read: a GPU's SM clock in MHz
    (torch.cuda.clock_rate, through pynvml), or the CPU's fastest core's current MHz
    (/proc/cpuinfo); None where it cannot. A throttled GPU or a CPU in a low-power state
    times slower."""
    device = torch.device(device)
    if device.type == "cuda":
        try:
            return {"sm_mhz": int(torch.cuda.clock_rate(device))}
        except Exception:   # no pynvml, or a driver that does not say
            return {"sm_mhz": None}
    try:
        with open("/proc/cpuinfo") as f:
            mhz = [float(ln.split(":", 1)[1]) for ln in f if ln.startswith("cpu MHz")]
    except (OSError, ValueError):
        mhz = []
    return {"cpu_mhz": round(max(mhz)) if mhz else None}


def steady_malloc(mmap_threshold: int = 32 << 20, trim_threshold: int = 1 << 30,
                  heap_only: bool = False) -> bool:
    """Keep freed activation buffers in glibc's heap instead of returning them to the OS.

    By default glibc serves large allocations with mmap and trims the heap top, so each
    CPU forward can pay page faults on its activations; measured here, a 112x112 MoGA
    block took 7.3 ms that way and 1.7 ms without, and which case a measurement hits
    depends on the process's allocation history. glibc caps `mmap_threshold` at 32 MB;
    `heap_only` also serves the larger buffers of training at ImageNet sizes from the heap
    (trainer.malloc=heap). Process-wide, so opt-in (the scripts and that setting call it).
    Returns False where glibc's mallopt is unavailable.
    """
    global _allocator
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold, m_mmap_max = -1, -3, -4  # glibc's malloc.h
    ok = bool(mallopt(m_mmap_threshold, mmap_threshold)) and bool(
        mallopt(m_trim_threshold, trim_threshold))
    if ok and heap_only:
        ok = bool(mallopt(m_mmap_max, 0))
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


@dataclass(frozen=True)
class Visits:
    """How often time_visits visits every item: at least `least` rounds, then more until
    the items' median split-half spread is at most `max_spread`, at most `most` rounds.
    Many short visits spread a slow spell of a shared machine over every item instead of
    landing on a few; the spread rule takes more of them where the machine is noisy (the
    demo space beside two busy processes: median spread 3.4 % after 10 visits, 0.75 %
    after 30; quiet: 1.3 % and 0.6 %)."""

    least: int = 10
    most: int = 40
    max_spread: float = 0.01

    def __post_init__(self) -> None:
        for name, value in (("visits", self.least), ("max_visits", self.most)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected an integer >= 1, got {value!r}")
        if self.most < self.least:
            raise ValueError(f"max_visits: expected at least visits ({self.least}), got "
                             f"{self.most}")
        if not 0 <= self.max_spread < 1:
            raise ValueError(f"max_spread: expected a number in [0, 1), got "
                             f"{self.max_spread!r}")

    def as_meta(self) -> dict[str, Any]:
        """The settings as a table's meta records them (the config's key names)."""
        return {"visits": self.least, "max_visits": self.most, "max_spread": self.max_spread}

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> "Visits":
        """The settings a table's meta records; a table from before visits had one visit."""
        return cls(meta.get("visits", 1), meta.get("max_visits", 1), meta.get("max_spread", 0.0))


def time_visits(items: Sequence[Sequence[nn.Module]], x: torch.Tensor, *, warmup: int,
                repeats: int, visits: Visits,
                now: Callable[[], float] = time.perf_counter
                ) -> tuple[list[list[list[list[float]]]], float]:
    """Every item (modules run in sequence, as time_forwards) timed in rounds: each round
    visits every item once (`warmup` untimed forwards, then `repeats` timed ones), and
    rounds go on as `visits` says, judged on each item's whole forward. Returns
    out[item][visit] = time_forwards' rows, and the final median spread."""
    out: list[list[list[list[float]]]] = [[] for _ in items]
    spread = math.inf
    for k in range(visits.most):
        for item, mine in zip(items, out):
            mine.append(time_forwards(item, x, warmup=warmup, repeats=repeats, now=now))
        if k + 1 >= visits.least:
            spread = float(np.median([split_half_spread([[sum(r) for r in rows] for rows in v])
                                      for v in out]))
            if spread <= visits.max_spread:
                break
    return out, spread


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
