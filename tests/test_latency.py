"""The per-block latency lookup table (MoGA's latency model): keys, build, predict, files."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from nas.arch.builder import build
from nas.arch.shapes import conv_out, iter_blocks, last_channels
from nas.arch.zoo import get_spec
from nas.cost.lut import (LatencyTable, LatencyTableError, MissingEntry, _part_module, block_key,
                          head_key, parts, stem_key)
from nas.cost.timing import LatencyStats


def _one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert msg and "\n" not in msg
    return msg


# --------------------------------------------------------------------------- the table


@pytest.fixture(scope="module")
def specs():
    return [get_spec("moga_a", num_classes=10, input_size=64),
            get_spec("moga_b", num_classes=10, input_size=64)]


@pytest.fixture(scope="module")
def table(specs):
    return LatencyTable().build(specs, threads=1, warmup=1, repeats=3)


def _keys(spec):
    """The keys a prediction sums, derived here from the shape walker directly."""
    keys = [stem_key(spec)]
    hw = conv_out(spec.input_size, spec.stem.stride)
    for _, block, cin, hw_in in iter_blocks(spec):
        keys.append(block_key(block, cin, hw_in))
        hw = conv_out(hw_in, block.stride)
    return keys + [head_key(spec, last_channels(spec), hw)]


def test_build_measures_each_distinct_part_once(specs, table):
    a, b = (_keys(s) for s in specs)
    assert [p.key for p in parts(specs[0])] == a
    assert len(a) == len(specs[0].blocks) + 2
    assert set(table.entries) == set(a) | set(b)
    assert len(table) < len(a) + len(b)
    # Stem, the fixed separable block and the head are shared between the two ...
    assert a[0] == b[0] and a[1] == b[1] and a[-1] == b[-1]
    # ... and moga_a's last two layers are the same choice at the same shape.
    assert specs[0].blocks[13] == specs[0].blocks[14] and a[14] == a[15]
    assert table.meta["threads"] == 1 and table.meta["repeats"] == 3
    assert table.meta["batch"] == 1 and table.meta["torch_version"] == torch.__version__
    stats = table.entries[a[3]]
    blk = list(iter_blocks(specs[0]))[2]
    assert stats.input_shape == (1, blk[2], blk[3], blk[3])


def test_keys_ignore_bn_settings_but_not_shapes(specs):
    spec = specs[0]
    other_bn = dataclasses.replace(spec, bn=dataclasses.replace(spec.bn, eps=1e-3, momentum=0.01))
    assert _keys(other_bn) == _keys(spec)
    assert _keys(get_spec("moga_a", num_classes=10, input_size=96))[1] != _keys(spec)[1]
    assert _keys(get_spec("moga_a", num_classes=20, input_size=64))[-1] != _keys(spec)[-1]


def test_build_skips_known_entries(specs, table):
    first = LatencyTable().build(specs[:1], threads=1, warmup=0, repeats=1)
    n = len(first)
    first.build(specs[:1], threads=1, warmup=0, repeats=1)
    assert len(first) == n
    with pytest.raises(ValueError) as e:  # another setting does not mix into one table
        first.build(specs[1:], threads=1, warmup=0, repeats=2)
    assert "repeats" in _one_line(e)


def test_save_load_round_trip_and_predict_is_the_sum(specs, table, tmp_path):
    path = tmp_path / "sub" / "lut.json"
    table.save(path)
    assert [p.name for p in path.parent.iterdir()] == ["lut.json"]  # no temp file left
    loaded = LatencyTable.load(path)
    assert loaded == table
    assert loaded.entries == table.entries
    data = json.loads(path.read_text())
    assert set(data["meta"]) >= {"device", "torch_version", "threads", "batch", "warmup",
                                 "repeats", "created"}
    for spec in specs:
        expected = 0.0
        for key in _keys(spec):
            expected += data["entries"][key]["low_ms"]
        assert loaded.predict(spec) == expected
        assert table.predict(spec) == expected
        assert expected > 0


def test_missing_entry_names_the_first_missing_block(specs, table, tmp_path):
    path = tmp_path / "lut.json"
    table.save(path)
    partial = LatencyTable.load(path)
    keys = _keys(specs[0])
    del partial.entries[keys[4]]  # block 3
    del partial.entries[keys[7]]  # block 6
    with pytest.raises(KeyError) as e:
        partial.predict(specs[0])
    assert isinstance(e.value, MissingEntry)
    msg = _one_line(e)
    assert "block 3" in msg and keys[4] in msg and "block 6" not in msg


def test_add_refuses_other_settings(table):
    key, stats = next(iter(table.entries.items()))
    t = LatencyTable()
    t.add(key, stats)
    assert t.meta["threads"] == stats.threads
    with pytest.raises(ValueError) as e:
        t.add("other", dataclasses.replace(stats, threads=stats.threads + 1))
    assert "threads" in _one_line(e)


def test_load_errors_are_one_line(table, tmp_path):
    with pytest.raises(LatencyTableError) as e:
        LatencyTable.load(tmp_path / "absent.json")
    assert "absent.json" in _one_line(e) and "cannot read" in str(e.value)

    bad = tmp_path / "bad.json"
    bad.write_text('{"format": ')
    with pytest.raises(LatencyTableError) as e:
        LatencyTable.load(bad)
    assert "not valid JSON" in _one_line(e)

    good = table.to_dict()
    cases = {
        "list.json": [1, 2],
        "fmt.json": {**good, "format": "something.else"},
        "ver.json": {**good, "version": 99},
        "meta.json": {**good, "meta": {"device": "cpu"}},
        "entry.json": {**good, "entries": {"k": {"median_ms": "fast"}}},
        "old.json": {**good, "version": 2},     # entries without low_ms and visits
        "visits.json": {**good, "entries": {k: {**e, "visits": 0}
                                            for k, e in good["entries"].items()}},
    }
    for name, data in cases.items():
        (tmp_path / name).write_text(json.dumps(data))
        with pytest.raises(LatencyTableError) as e:
            LatencyTable.load(tmp_path / name)
        assert _one_line(e).startswith(str(tmp_path / name))


def test_stats_from_a_loaded_table_are_complete(table, tmp_path):
    table.save(tmp_path / "lut.json")
    stats = next(iter(LatencyTable.load(tmp_path / "lut.json").entries.values()))
    assert isinstance(stats, LatencyStats) and isinstance(stats.input_shape, tuple)


def test_parts_are_built_as_the_network_builds_them(specs):
    spec = dataclasses.replace(specs[0], drop_path=0.2)
    net = build(spec)
    built = [_part_module(p, spec) for p in parts(spec)]
    assert len(built) == len(net.blocks) + 2
    for mine, theirs in zip(built, [net.stem, *net.blocks, net.head]):
        assert type(mine) is type(theirs) and repr(mine) == repr(theirs)
        assert [p.shape for p in mine.parameters()] == [p.shape for p in theirs.parameters()]
