"""Timing forwards: the one timing loop, measure_latency on one module, clocks."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from nas.cost.timing import measure_latency, time_forwards


def test_time_forwards_reads_boundaries_between_modules():
    ticks = iter(range(100))
    seen = []

    class Double(nn.Module):
        def forward(self, x):
            seen.append(x.item())
            return 2 * x

    rows = time_forwards([Double(), Double(), Double()], torch.ones(()), warmup=2, repeats=3,
                         now=lambda: next(ticks) / 1e3)  # one ms a reading
    assert len(rows) == 3 and all(row == pytest.approx([1.0] * 3) for row in rows)
    assert next(ticks) == 4 * (2 + 3)  # 4 readings a forward, warm-up ones untimed
    assert seen == [1.0, 2.0, 4.0] * 5  # each module gets the previous one's output


# --------------------------------------------------------------------------- measure_latency


def test_measure_latency_stats_and_conditions():
    module = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
    module.train()
    before = torch.get_num_threads()
    s = measure_latency(module, (2, 3, 16, 16), threads=1, warmup=2, repeats=7)
    assert 0 < s.min_ms <= s.p10_ms <= s.median_ms <= s.p90_ms
    assert s.min_ms <= s.mean_ms and s.std_ms >= 0
    assert (s.repeats, s.warmup, s.batch, s.input_shape) == (7, 2, 2, (2, 3, 16, 16))
    assert s.threads == 1 and s.torch_version == torch.__version__
    assert s.device.startswith("cpu: ")
    assert torch.get_num_threads() == before and module.training  # both restored
    d = s.to_dict()
    assert d["input_shape"] == [2, 3, 16, 16] and json.loads(json.dumps(d)) == d


def test_measure_latency_records_current_threads_when_not_given():
    s = measure_latency(nn.Identity(), (1, 1, 2, 2), warmup=0, repeats=1)
    assert s.threads == torch.get_num_threads() and s.std_ms == 0.0


@pytest.mark.parametrize("kwargs, name", [
    (dict(repeats=0), "repeats"),
    (dict(warmup=-1), "warmup"),
    (dict(threads=0), "threads"),
    (dict(repeats=2.5), "repeats"),
    (dict(input_shape=(1, 0, 4, 4)), "input_shape"),
    (dict(device="nonsense"), "device"),
])
def test_measure_latency_validates_arguments(kwargs, name):
    kwargs = {"input_shape": (1, 3, 4, 4), **kwargs}
    with pytest.raises(ValueError) as e:
        measure_latency(nn.Identity(), **kwargs)
    assert str(e.value).startswith(f"{name}:") and "\n" not in str(e.value)  # one line


def test_latency_is_timed_with_whole_kernels_as_exported():
    """TrimmedConv2d's tap trimming is a training shortcut: timed forwards run whole kernels."""
    from nas.ops import layers

    seen = []

    class Probe(nn.Module):
        def forward(self, x):
            seen.append(layers._trimming)
            return x

    measure_latency(Probe(), (1, 3, 8, 8), warmup=1, repeats=2)
    assert seen == [False] * 3 and layers._trimming


def test_thread_clock_needs_one_cpu_thread():
    module = nn.Conv2d(3, 4, 3)
    s = measure_latency(module, (1, 3, 8, 8), threads=1, warmup=0, repeats=2, clock="thread")
    assert s.clock == "thread" and s.median_ms > 0
    with pytest.raises(ValueError, match="threads=1"):
        measure_latency(module, (1, 3, 8, 8), threads=2, repeats=1, clock="thread")
    with pytest.raises(ValueError, match="clock"):
        measure_latency(module, (1, 3, 8, 8), repeats=1, clock="sundial")
