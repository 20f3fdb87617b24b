"""Latency tables for a whole search space: build_for_space, reuse, calibration, lut_report."""

from __future__ import annotations

import json
import math

import pytest
import torch

from nas.arch.builder import ChainNet
from nas.arch.shapes import conv_out, iter_blocks, last_channels
from nas.cost import timing
from nas.cost.lut import (LatencyTable, LatencyTableError, block_key, fit_calibration, head_key,
                          space_layout, stem_key)
from nas.cost.lut_report import kendall_tau, lut_report, sample_vectors
from nas.cost.timing import Visits
from nas.methods.moga.search import moga_space

load_or_build = LatencyTable.load_or_build
ONE = Visits(1, 1)  # one visit of every path: what the counts below assume
WHOLE = 1.1  # how much longer the fake timer makes a whole forward than its parts' sum


def tiny(input_size: int = 32):
    return moga_space(width=0.25, stem_stride=1, num_classes=10, input_size=input_size)


def _expected_keys(space) -> set[str]:
    """Every candidate at its input shape, walked here from the template's shapes."""
    t = space.template
    keys = {stem_key(t)}
    hw = conv_out(t.input_size, t.stem.stride)
    for i, _, cin, hw_in in iter_blocks(t):
        keys |= {block_key(c, cin, hw_in) for c in space.positions[i]}
        hw = conv_out(hw_in, space.positions[i][0].stride)
    return keys | {head_key(t, last_channels(t), hw)}


def _fake_ms(module: torch.nn.Module) -> float:
    """Deterministic stand-in for a part's time: grows with its parameter count; a
    Sequential (a whole reference path) or a ChainNet takes the sum of its parts."""
    if isinstance(module, (torch.nn.Sequential, ChainNet)):
        return sum(_fake_ms(m) for m in module.children())
    return 0.01 + 1e-5 * sum(p.numel() for p in module.parameters())


@pytest.fixture
def fake_timer(monkeypatch):
    """Replace the timing loop by a counter: each part of a chain takes _fake_ms, and a
    whole forward (a reference path or a network timed alone) WHOLE times its parts' sum,
    as a network pays for what parts timed in sequence miss. calls["chain"] counts timed
    reference-path chains (per path one part by part and one whole), calls["networks"]
    the whole-network visits of a report."""
    calls = {"chain": 0, "networks": 0}

    def time_forwards(modules, x, *, warmup, repeats, now):
        calls["networks" if isinstance(modules[0], ChainNet) else "chain"] += 1
        ms = ([_fake_ms(m) for m in modules] if len(modules) > 1
              else [WHOLE * _fake_ms(modules[0])])
        return [list(ms) for _ in range(repeats)]

    monkeypatch.setattr(timing, "time_forwards", time_forwards)
    return calls


# --------------------------------------------------------------------------- build_for_space


@pytest.fixture(scope="module")
def real_table():
    return LatencyTable().build_for_space(tiny(), threads=1, warmup=1, repeats=2, contexts=1,
                                          visits=ONE)


def test_build_for_space_has_one_entry_per_distinct_part(real_table):
    space = tiny()
    keys = _expected_keys(space)
    assert set(real_table.entries) == keys == space_layout(space).keys()
    # 15 positions (the fixed first block has one candidate) + stem + head; equal
    # candidates at equal shapes (layers 3 and 4: 40 -> 40 at 8x8, ...) share an entry.
    assert len(keys) < 1 + 14 * 12 + 2
    for stats in real_table.entries.values():
        assert stats.median_ms > 0 and stats.input_shape[0] == 1
    assert real_table.entries[stem_key(space.template)].input_shape == (1, 3, 32, 32)
    m = real_table.meta
    assert (m["timing"], m["resolution"], m["threads"], m["batch"]) == ("context", 32, 1, 1)
    assert (m["warmup"], m["repeats"], m["contexts"]) == (1, 2, 1)


def test_reference_paths_cover_every_candidate_each_sweep(real_table):
    space = tiny()
    cal = real_table.calibration
    vectors = cal["vectors"]
    assert len(vectors) == 12 and all(len(v) == len(space) for v in vectors)
    for d in range(len(space)):
        assert sorted(v[d] for v in vectors) == list(range(12))
    # The fit points are these networks' summed entries and measured forwards.
    raw = [real_table.predict_vector(space, v, calibrated=False) for v in vectors]
    assert cal["raw_ms"] == pytest.approx(raw)
    assert len(cal["measured_ms"]) == 12 and min(cal["measured_ms"]) > 0


def test_build_for_space_refuses_bad_settings_and_full_tables(real_table):
    for name, value in [("contexts", 0), ("repeats", 0)]:
        with pytest.raises(ValueError, match=name):
            LatencyTable().build_for_space(tiny(), **{name: value})
    with pytest.raises(ValueError, match="empty table"):
        real_table.build_for_space(tiny())


def test_build_does_not_mix_isolated_entries_into_a_context_table(real_table):
    spec = tiny().to_spec([0] * 14)
    assert real_table.build([spec], threads=1, warmup=1, repeats=2) is real_table  # all known
    other = moga_space(width=0.25, stem_stride=1, num_classes=10, input_size=48).to_spec([0] * 14)
    with pytest.raises(ValueError, match="timing"):
        real_table.build([other], threads=1, warmup=1, repeats=2)


# --------------------------------------------------------------------------- calibration


def test_calibration_fits_what_the_summed_parts_miss(fake_timer):
    space = tiny()
    t = LatencyTable().build_for_space(space, threads=1, warmup=0, repeats=3, contexts=2,
                                       visits=ONE)
    assert fake_timer["chain"] == 48  # 2 sweeps x 12 paths, part by part and whole
    cal = t.calibration
    # The entries sum to the parts' times; each whole forward takes WHOLE times that.
    assert cal["measured_ms"] == pytest.approx([WHOLE * r for r in cal["raw_ms"]])
    assert cal["scale"] == pytest.approx(WHOLE)
    v = [3] * 14
    assert t.predict_vector(space, v) == pytest.approx(
        WHOLE * t.predict_vector(space, v, calibrated=False))
    assert t.predict(space.to_spec(v)) == t.predict_vector(space, v)


def test_fit_calibration_by_hand():
    assert fit_calibration([1, 2], [2, 4]) == pytest.approx(2.0)
    assert fit_calibration([1, 2, 3], [2, 4, 5]) == pytest.approx(25 / 14)
    with pytest.raises(ValueError):
        fit_calibration([1, 2], [1])


def test_calibration_survives_save_and_load(fake_timer, tmp_path):
    t = LatencyTable().build_for_space(tiny(), threads=1, warmup=0, repeats=3, contexts=1,
                                       visits=ONE)
    t.save(tmp_path / "lut.json")
    loaded = LatencyTable.load(tmp_path / "lut.json")
    assert loaded == t and loaded.calibration["scale"] == pytest.approx(WHOLE)
    v = [5] * 14
    assert loaded.predict_vector(tiny(), v) == t.predict_vector(tiny(), v)
    data = json.loads((tmp_path / "lut.json").read_text())
    data["calibration"]["scale"] = "big"
    (tmp_path / "bad.json").write_text(json.dumps(data))
    with pytest.raises(LatencyTableError, match="scale"):
        LatencyTable.load(tmp_path / "bad.json")


# --------------------------------------------------------------------------- reuse


BUILD = 24  # timed chains of one build with contexts=1: 12 paths, part by part and whole


def test_load_or_build_reuses_matching_tables_and_rebuilds_otherwise(fake_timer, tmp_path):
    path = tmp_path / "lut.json"
    settings = dict(threads=1, warmup=0, repeats=3, contexts=1, visits=ONE)
    first = load_or_build(path, tiny(), **settings)
    assert fake_timer["chain"] == BUILD and path.exists()

    again = load_or_build(path, tiny(), **settings)
    assert fake_timer["chain"] == BUILD and again == first  # same metadata: nothing measured

    load_or_build(path, tiny(), **{**settings, "threads": 2})
    assert fake_timer["chain"] == 2 * BUILD
    assert LatencyTable.load(path).meta["threads"] == 2
    load_or_build(path, tiny(), **{**settings, "threads": 2})
    assert fake_timer["chain"] == 2 * BUILD

    load_or_build(path, tiny(input_size=48), **{**settings, "threads": 2})  # resolution
    assert fake_timer["chain"] == 3 * BUILD and LatencyTable.load(path).meta["resolution"] == 48

    data = json.loads(path.read_text())  # a key the space needs is missing
    del data["entries"][next(iter(data["entries"]))]
    path.write_text(json.dumps(data))
    load_or_build(path, tiny(input_size=48), **{**settings, "threads": 2})
    assert fake_timer["chain"] == 4 * BUILD

    path.write_text("{not json")  # unreadable: rebuilt, not trusted
    table = LatencyTable.load_or_build(path, tiny(input_size=48), **{**settings, "threads": 2})
    assert fake_timer["chain"] == 5 * BUILD and LatencyTable.load(path) == table


def test_matches_compares_the_given_settings(fake_timer):
    t = LatencyTable().build_for_space(tiny(), threads=1, warmup=0, repeats=3, contexts=1,
                                       visits=ONE)
    assert t.matches({"device": "cpu", "threads": 1, "resolution": 32, "timing": "context"})
    assert t.matches({"device": t.meta["device"], "keys": _expected_keys(tiny())})
    assert not t.matches({"threads": 2})
    assert not t.matches({"resolution": 64})
    assert not t.matches({"batch": 8})
    assert not t.matches({"keys": _expected_keys(tiny(input_size=48))})
    assert not t.matches({"device": "cpu", "torch_version": "0.0"})
    with timing.intra_op_threads(1):
        assert t.matches({"threads": None})


# --------------------------------------------------------------------------- report


def test_kendall_tau_b():
    assert kendall_tau([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(2 / 3)
    assert kendall_tau([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    # Ties: tau-b = (C - D) / sqrt((n0 - n1)(n0 - n2)) = (4 - 0) / sqrt(5 * 5).
    assert kendall_tau([1, 1, 2, 3], [1, 2, 3, 3]) == pytest.approx(0.8)
    assert kendall_tau([1, 1, 2, 3], [1, 2, 3, 4]) == pytest.approx(5 / math.sqrt(5 * 6))
    assert math.isnan(kendall_tau([1, 1, 1], [1, 2, 3]))
    with pytest.raises(ValueError):
        kendall_tau([1, 2], [1, 2, 3])


def test_kendall_tau_agrees_with_scipy():
    stats = pytest.importorskip("scipy.stats")
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 6, (40,), generator=g).tolist()
    y = [v + int(n) for v, n in zip(x, torch.randint(-2, 3, (40,), generator=g))]
    assert kendall_tau(x, y) == pytest.approx(stats.kendalltau(x, y).statistic)


def test_lut_report_fields_and_left_out_calibration_paths(fake_timer):
    space = tiny()
    t = LatencyTable().build_for_space(space, threads=1, warmup=0, repeats=3, contexts=1,
                                       visits=Visits(3, 5))
    first = space.sample(torch.Generator().manual_seed(7))
    t.calibration["vectors"].append(first)  # the report's first draw is a calibration path
    r = lut_report(t, space, n=6, seed=7)
    # The table's visits: 3, no more, since the fake times do not move between visits.
    assert r["settings"]["visits"] == 3 and r["settings"]["max_visits"] == 5
    assert fake_timer["networks"] == 3 * 6
    assert r["noise"] == {"visits": 3, "spread": 0.0, "table_spread": 0.0, "settled": True}
    assert r["n"] == 6 and len(r["rows"]) == 6 and r["skipped_calibration_paths"] == 1
    vectors = [row["vector"] for row in r["rows"]]
    assert first not in vectors
    assert not {tuple(v) for v in vectors} & {tuple(v) for v in t.calibration["vectors"]}
    for row in r["rows"]:
        assert set(row) >= {"vector", "predicted_ms", "measured_ms", "predicted_uncalibrated_ms"}
        assert row["predicted_ms"] == t.predict_vector(space, row["vector"])
    # The fake networks take WHOLE times the parts' sum, which the calibration learnt.
    assert r["rmse_ms"] == pytest.approx(0.0, abs=1e-9) and r["rel_rmse"] < 1e-9
    assert r["kendall_tau"] == pytest.approx(1.0)
    assert r["uncalibrated"]["mean_rel_error"] == pytest.approx(1 / WHOLE - 1)
    assert r["uncalibrated"]["mean_rel_error"] < 0
    assert r["calibration"]["paths"] == 13
    s = r["settings"]
    assert (s["threads"], s["batch"], s["resolution"], s["timing"]) == (1, 1, 32, "context")
    assert s["device"] == t.meta["device"] and s["torch_version"] == torch.__version__
    json.dumps(r)  # the report is plain JSON


def test_a_noisy_host_does_not_move_the_predictions(monkeypatch):
    """70 % of forwards (and of parts within them) slowed by 20-100 %, as on a shared
    machine: the low percentile of the visits still finds every part's and network's quiet
    time, so the table predicts the networks as if the machine were quiet."""
    gen = torch.Generator().manual_seed(0)

    def slowed() -> float:
        hit = torch.rand((), generator=gen) < 0.7
        return 1.0 + float(hit) * (0.2 + 0.8 * float(torch.rand((), generator=gen)))

    def time_forwards(modules, x, *, warmup, repeats, now):
        if len(modules) > 1:
            return [[_fake_ms(m) * slowed() for m in modules] for _ in range(repeats)]
        return [[WHOLE * _fake_ms(modules[0]) * slowed()] for _ in range(repeats)]

    monkeypatch.setattr(timing, "time_forwards", time_forwards)
    space = tiny()
    t = LatencyTable().build_for_space(space, threads=1, warmup=0, repeats=4, contexts=1,
                                       visits=Visits(10, 40))
    entry = next(iter(t.entries.values()))
    assert entry.visits == t.meta["visits_done"] >= 10 and entry.spread <= 0.05
    assert entry.median_ms > 1.1 * entry.low_ms       # the median is slowed, the low is not
    r = lut_report(t, space, n=10, seed=3)
    assert r["rel_rmse"] < 0.005 and r["kendall_tau"] > 0.95
    assert r["noise"]["settled"] and r["noise"]["visits"] >= 10


def test_sample_vectors_draws_distinct_architectures(fake_timer):
    space = tiny()
    t = LatencyTable().build_for_space(space, threads=1, warmup=0, repeats=4, contexts=1,
                                       visits=ONE)
    vectors, skipped = sample_vectors(space, 4, seed=3, exclude=t.calibration["vectors"])
    assert skipped == 0 and len({tuple(v) for v in vectors}) == 4


def test_lut_report_refuses_a_table_of_another_device(fake_timer):
    t = LatencyTable().build_for_space(tiny(), threads=1, warmup=0, repeats=3, contexts=1,
                                       visits=ONE)
    t.meta["device"] = "another CPU"
    with pytest.raises(ValueError, match="another CPU"):
        lut_report(t, tiny(), n=3)


def test_lut_report_times_real_networks(real_table):
    r = lut_report(real_table, tiny(), n=3, seed=1)  # the table's warmup 1, repeats 2
    assert all(row["measured_ms"] > 0 for row in r["rows"])
    assert r["rmse_ms"] >= 0 and -1 <= r["kendall_tau"] <= 1


# --------------------------------------------------------------------------- clocks


def test_build_for_space_thread_clock_needs_one_thread():
    with pytest.raises(ValueError, match="threads=1"):
        LatencyTable().build_for_space(tiny(), threads=2, clock="thread")


def test_clock_is_a_table_setting(fake_timer, tmp_path):
    path = tmp_path / "lut.json"
    settings = dict(threads=1, warmup=0, repeats=3, contexts=1, visits=ONE)
    t = load_or_build(path, tiny(), clock="thread", **settings)
    assert t.meta["clock"] == "thread"
    assert all(s.clock == "thread" for s in LatencyTable.load(path).entries.values())
    assert load_or_build(path, tiny(), clock="thread", **settings) == t
    assert fake_timer["chain"] == BUILD
    load_or_build(path, tiny(), clock="wall", **settings)
    assert fake_timer["chain"] == 2 * BUILD


# --------------------------------------------------------------------------- bench_lut


@pytest.mark.slow
def test_bench_lut_reports_its_visits_spread_and_targets(tmp_path, capsys):
    """scripts/bench_lut.py through the search's latency stage, at one short visit: the
    figures, each run's visits and spreads, and the exit status of the targets."""
    from conftest import load_script

    bench = load_script("bench_lut")
    args = ["--out-dir", str(tmp_path), "--runs", "1", "--warmup", "0", "--repeats", "1",
            "--visits", "1", "--max-visits", "1", "--report-archs", "3"]
    assert bench.main([*args, "--max-rel-rmse", "0"]) == 1     # a target missed: exit 1
    result = json.loads((tmp_path / "bench_lut.json").read_text())
    assert result["ok"] is False and result["targets"]["max_rel_rmse"] == 0
    run = result["runs"][0]
    assert run["table_visits"] == run["report_visits"] == 1 and run["entries"] == 123
    assert result["lut"]["visits"] == 1 and result["low_percentile"] == timing.LOW_PERCENTILE
    assert "visits" in capsys.readouterr().out
