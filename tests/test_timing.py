"""Timing forwards: the one timing loop, measure_latency on one module, clocks."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from nas.cost import timing
from nas.cost.timing import (LOW_PERCENTILE, Visits, low, measure_latency, split_half_spread,
                             time_forwards, time_visits)


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


# --------------------------------------------------------------------------- visits


def test_low_percentile_and_split_half_spread_by_hand():
    assert LOW_PERCENTILE == 5
    assert low(range(101)) == pytest.approx(5.0)        # 0..100: the 5th percentile is 5
    assert split_half_spread([[4.0, 9.0]]) == 0.0        # one visit: nothing to compare
    # visits 0 and 2 hold 2 ms forwards, visit 1 only 3 ms ones: the halves' lows differ by 1
    spread = split_half_spread([[2.0] * 20, [3.0] * 20, [2.0] * 20])
    assert spread == pytest.approx(1 / low([2.0] * 40 + [3.0] * 20))


def _scripted(monkeypatch, ms_of_visit):
    """time_forwards replaced: the k-th call of an item returns `ms_of_visit(k)` per module."""
    calls: dict[int, int] = {}

    def fake(modules, x, *, warmup, repeats, now):
        k = calls.get(id(modules), 0)
        calls[id(modules)] = k + 1
        return [[ms_of_visit(k)] * len(modules) for _ in range(repeats)]

    monkeypatch.setattr(timing, "time_forwards", fake)
    return calls


def test_visits_stop_once_the_halves_agree_and_go_on_while_they_do_not(monkeypatch):
    items = [[nn.Identity()], [nn.Identity(), nn.Identity()]]
    _scripted(monkeypatch, lambda k: 1.0)                        # steady: the least visits
    out, spread = time_visits(items, torch.ones(()), warmup=0, repeats=2, visits=Visits(4, 9))
    assert [len(v) for v in out] == [4, 4] and spread == 0.0 and out[1][0] == [[1.0, 1.0]] * 2
    _scripted(monkeypatch, lambda k: 1.0 + 0.5 * (k % 2))          # every other visit slow
    out, spread = time_visits(items, torch.ones(()), warmup=0, repeats=2, visits=Visits(4, 9))
    assert [len(v) for v in out] == [9, 9] and spread == pytest.approx(0.5)
    # A slow spell over the first three visits: once both halves hold a quiet visit they
    # agree, and the low percentile is the quiet time.
    _scripted(monkeypatch, lambda k: 2.0 if k < 3 else 1.0)
    out, spread = time_visits(items, torch.ones(()), warmup=0, repeats=2,
                              visits=Visits(4, 40, max_spread=0.01))
    assert len(out[0]) == 5 and spread == 0.0
    assert low(row[0] for rows in out[0] for row in rows) == 1.0


@pytest.mark.parametrize("kwargs, name", [(dict(least=0), "visits"), (dict(most=0), "max_visits"),
                                          (dict(least=5, most=4), "max_visits"),
                                          (dict(max_spread=1.0), "max_spread")])
def test_visits_refuse_bad_settings(kwargs, name):
    with pytest.raises(ValueError, match=f"^{name}: expected"):
        Visits(**kwargs)


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


def test_clocks_and_the_lut_settings_of_a_gpu_table():
    from nas.config import ConfigError, check
    from nas.cost.timing import clocks
    from nas.methods.moga.search import LutConfig

    mhz = clocks("cpu")["cpu_mhz"]
    assert mhz is None or mhz > 0
    assert check(LutConfig, {"device": "cuda:1", "clock": "wall"}, "lut").device == "cuda:1"
    with pytest.raises(ConfigError, match="lut.clock: expected wall on a GPU"):
        check(LutConfig, {"device": "cuda"}, "lut")          # the thread clock is CPU time
    with pytest.raises(ConfigError, match="lut.device: expected cpu or cuda"):
        check(LutConfig, {"device": "tpu"}, "lut")
    with pytest.raises(ConfigError, match=r"lut.max_visits: expected at least visits \(50\)"):
        check(LutConfig, {"visits": 50}, "lut")
    with pytest.raises(ConfigError, match=r"lut.max_spread: expected a number in \[0, 1\)"):
        check(LutConfig, {"max_spread": 1.5}, "lut")
