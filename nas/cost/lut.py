"""Latency lookup table: MoGA's latency model (stem + sum of blocks + head) on this device.

Our substitute for MoGA's (unpublished) mobile GPU table: every distinct (block, input
channels, input resolution) is timed here, so a search scores thousands of candidates
without building any. A table holds one measurement setting (SETTINGS): entries timed
under another are refused, since mixing them would make the sum meaningless.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np
import torch
from torch import nn

from nas.arch.builder import build_block, build_head, build_stem
from nas.arch.io import to_dict
from nas.arch.shapes import conv_out, iter_blocks, last_channels
from nas.arch.spec import ChainSpec
from nas.cost import timing
from nas.cost.timing import (LatencyStats, Visits, allocator, check_device, check_settings,
                             clock_fn, device_name, intra_op_threads, measure_latency, summary)
from nas.files import write_text_atomic
from nas.ops.layers import init_weights

if TYPE_CHECKING:
    from nas.supernet.chain import ChainSearchSpace

FORMAT = "nas.latency_table"
# 2: "clock" and "timing" required, calibration is a scale only; 3: entries predict with
# their low percentile ("low_ms"), and record their visits and spread
VERSION = 3
# Measurement conditions every entry of one table shares.
SETTINGS = ("device", "torch_version", "threads", "batch", "warmup", "repeats", "clock")
_STAT_FIELDS = ("median_ms", "mean_ms", "std_ms", "p10_ms", "p90_ms", "min_ms", "low_ms",
                "spread")
log = logging.getLogger(__name__)


def _key(obj: dict[str, Any]) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def block_key(block: object, cin: int, hw: int) -> str:
    """Canonical key of a block at input width `cin` and input resolution `hw`."""
    return _key({"part": "block", "block": to_dict(block), "cin": cin, "hw": hw})


def stem_key(spec: ChainSpec) -> str:
    return _key({"part": "stem", "conv": to_dict(spec.stem), "cin": spec.in_channels,
                 "hw": spec.input_size})


def head_key(spec: ChainSpec, cin: int, hw: int) -> str:
    return _key({"part": "head", "head": to_dict(spec.head), "cin": cin, "hw": hw,
                 "num_classes": spec.num_classes})


@dataclass(frozen=True)
class Part:
    """One lookup of a prediction: 'stem', 'block 3' or 'head', its key, its input, and its
    spec (ConvSpec, block spec or HeadSpec); `index` is a block's position in the chain."""

    label: str
    key: str
    cin: int
    hw: int
    spec: object
    index: int = 0


def parts(spec: ChainSpec) -> list[Part]:
    """The entries a prediction of `spec` sums, in order: stem, blocks, head."""
    if not isinstance(spec, ChainSpec):
        raise TypeError(f"latency tables cover chain specs, got {type(spec).__name__}")
    out = [Part("stem", stem_key(spec), spec.in_channels, spec.input_size, spec.stem)]
    head_hw = conv_out(spec.input_size, spec.stem.stride)
    for i, block, cin, hw in iter_blocks(spec):
        out.append(Part(f"block {i}", block_key(block, cin, hw), cin, hw, block, i))
        head_hw = conv_out(hw, block.stride)
    cin = last_channels(spec)
    out.append(Part("head", head_key(spec, cin, head_hw), cin, head_hw, spec.head))
    return out


def _part_module(part: Part, spec: ChainSpec) -> nn.Module:
    """The part built and initialised as build(spec) builds it in the network (`spec`
    supplies what the key leaves out: BN constants, drop path, init)."""
    if part.label == "stem":
        module = build_stem(spec)
    elif part.label == "head":
        module = build_head(spec, part.cin)
    else:
        module = build_block(spec, part.spec, part.cin, part.index)
    init_weights(module, spec.init)
    return module


class MissingEntry(KeyError):
    """A prediction needs an entry the table does not hold; the message is one line."""

    def __str__(self) -> str:
        return self.args[0]


class LatencyTableError(ValueError):
    """A latency table file that cannot be read; the message is one line naming the file."""


def _settings(device: torch.device | str, threads: int | None, batch: int, warmup: int,
              repeats: int, clock: str) -> dict[str, Any]:
    """The SETTINGS a measurement with these arguments records."""
    return {"device": device_name(check_device(device)), "torch_version": torch.__version__,
            "threads": torch.get_num_threads() if threads is None else threads,
            "batch": batch, "warmup": warmup, "repeats": repeats, "clock": clock}


def _refuse_other(meta: dict[str, Any], wanted: dict[str, Any], what: str) -> None:
    for name, value in wanted.items():
        if name in meta and meta[name] != value:
            raise ValueError(f"{what} with {name}={value!r}, but this table holds "
                             f"{name}={meta[name]!r}; use one table per setting")


@dataclass
class LatencyTable:
    """Per-part latency lookup table: key -> LatencyStats, plus the shared settings (meta)
    and, from build_for_space, a calibration (see fit_calibration); without one, predict
    is the plain sum."""

    meta: dict[str, Any] = field(default_factory=dict)
    entries: dict[str, LatencyStats] = field(default_factory=dict)
    calibration: dict[str, Any] | None = None

    def __len__(self) -> int:
        return len(self.entries)

    def add(self, key: str, stats: LatencyStats) -> None:
        """Store one entry; its settings must match the table's (the first entry sets them)."""
        if not isinstance(key, str):
            raise TypeError(f"key: expected a string, got {type(key).__name__}")
        if not isinstance(stats, LatencyStats):
            raise TypeError(f"stats: expected LatencyStats, got {type(stats).__name__}")
        settings = {name: getattr(stats, name) for name in SETTINGS}
        _refuse_other(self.meta, settings, "entry measured")
        for name, value in settings.items():
            self.meta.setdefault(name, value)
        self.entries[key] = stats

    def build(self, specs: Iterable[ChainSpec], *, batch: int = 1,
              device: torch.device | str = "cpu", threads: int | None = None,
              warmup: int = 10, repeats: int = 50, clock: str = "wall") -> LatencyTable:
        """Measure every distinct stem, (block, cin, hw) and head of `specs` that the table
        lacks, each built alone; returns self. Identical blocks at identical input shapes are
        measured once and shared."""
        check_settings(warmup, repeats, threads, batch)
        dev = check_device(device)
        # Refused before spending time on measurements.
        _refuse_other(self.meta, _settings(dev, threads, batch, warmup, repeats, clock), "build")
        todo: dict[str, tuple[Part, ChainSpec]] = {}
        for spec in specs:
            for part in parts(spec):
                if part.key not in self.entries:
                    todo.setdefault(part.key, (part, spec))
        if todo and self.meta.get("timing") == "context":
            raise ValueError("build times parts alone, but this table holds timing='context' "
                             "entries; use one table per setting")
        for key, (part, spec) in todo.items():
            self.add(key, measure_latency(
                _part_module(part, spec), (batch, part.cin, part.hw, part.hw), device=dev,
                threads=threads, warmup=warmup, repeats=repeats, clock=clock))
        for name, value in (("timing", "isolated"), ("torch_device", str(dev)),
                            ("allocator", allocator()), ("created", _now())):
            self.meta.setdefault(name, value)
        return self

    def lookup(self, spec: ChainSpec) -> list[tuple[Part, float]]:
        """(part, ms) for every part of `spec`, in prediction order: each entry's low
        percentile (timing.low)."""
        out = []
        for part in parts(spec):
            stats = self.entries.get(part.key)
            if stats is None:
                raise MissingEntry(f"{spec.name}: no latency entry for {part.label} "
                                   f"(key {part.key})")
            out.append((part, stats.low_ms))
        return out

    def predict(self, spec: ChainSpec, *, calibrated: bool = True) -> float:
        """Predicted latency in ms: stem + sum of blocks + head, summed in that order; then
        times the table's calibration scale, if it has one and `calibrated`."""
        total = sum(ms for _, ms in self.lookup(spec))
        if calibrated and self.calibration is not None:
            return self.calibration["scale"] * total
        return total

    def predict_vector(self, space: ChainSearchSpace, vector: Sequence[int], *,
                       calibrated: bool = True) -> float:
        """predict(space.to_spec(vector)): the latency of one decision vector of `space`."""
        return self.predict(space.to_spec(vector), calibrated=calibrated)

    def build_for_space(self, space: ChainSearchSpace, *, batch: int = 1,
                        device: torch.device | str = "cpu", threads: int | None = None,
                        warmup: int = 10, repeats: int = 50, contexts: int = 4,
                        clock: str = "wall", seed: int = 0,
                        visits: Visits = Visits()) -> LatencyTable:
        """Fill this (empty) table with every candidate of every position of `space` at its
        input shape, plus the stem and head (fixed blocks are positions with one candidate).

        Parts are timed inside reference paths (reference_paths, drawn with `seed`), with
        boundaries read between parts, and an entry pools its part's times over its paths:
        timed alone, a part keeps its weights and input in cache between forwards, as it
        never does in a network, and such entries sum to 8 % (32x32) to 16 % (224x224) less
        than the network takes on a 2-core EPYC here. Each path is also timed whole, and
        the scale of whole ~ scale * summed entries is fitted on them (fit_calibration).
        Paths are timed in interleaved visits (time_visits: `warmup` and `repeats` per
        visit); every figure is the low percentile (timing.low) of its times.
        """
        check_settings(warmup, repeats, threads, batch)
        if isinstance(contexts, bool) or not isinstance(contexts, int) or contexts < 1:
            raise ValueError(f"contexts: expected an integer >= 1, got {contexts!r}")
        if self.entries:
            raise ValueError("build_for_space fills an empty table; use load_or_build to "
                             "reuse a saved one")
        dev = check_device(device)
        start = time.perf_counter()
        layout = space_layout(space)
        paths = reference_paths(layout, contexts, torch.Generator().manual_seed(seed))
        with intra_op_threads(threads) as used:
            now = clock_fn(clock, dev, used)
            size = layout.stem.hw
            x = torch.randn(batch, layout.stem.cin, size, size, device=dev)
            # One module per (position, candidate), as in a network: a candidate used at two
            # positions does not find its weights cached.
            modules: dict[tuple[int, str], nn.Module] = {}
            chains, items = [], []
            for choice in paths:
                chain = layout.path_parts(choice)
                for i, p in enumerate(chain):
                    if (i, p.key) not in modules:
                        modules[i, p.key] = _part_module(p, space.template).to(dev).eval()
                path = [modules[i, p.key] for i, p in enumerate(chain)]
                chains.append(chain)
                items += [path, [nn.Sequential(*path)]]   # part by part, then whole
            times, spread = timing.time_visits(items, x, warmup=warmup, repeats=repeats,
                                               visits=visits, now=now)
        done = len(times[0])
        # samples[key][visit]: the part's times in that visit, over every path holding it
        samples: dict[str, list[list[float]]] = {}
        for chain, per_visit in zip(chains, times[0::2]):
            for j, part in enumerate(chain):
                mine = samples.setdefault(part.key, [[] for _ in range(done)])
                for v, rows in enumerate(per_visit):
                    mine[v].extend(row[j] for row in rows)
        whole = [timing.low(row[0] for rows in per_visit for row in rows)
                 for per_visit in times[1::2]]
        for part in layout.distinct_parts():
            per_visit = samples[part.key]
            self.add(part.key, summary(
                [t for v in per_visit for t in v], repeats=repeats, warmup=warmup,
                input_shape=(batch, part.cin, part.hw, part.hw), device=device_name(dev),
                threads=used, clock=clock, per_visit=per_visit))
        vectors = [[p[i] for i in space.searchable] for p in paths]
        raw = [self.predict_vector(space, v, calibrated=False) for v in vectors]
        self.calibration = {"scale": fit_calibration(raw, whole), "vectors": vectors,
                            "raw_ms": raw, "measured_ms": whole}
        self.meta.update(timing="context", resolution=space.template.input_size,
                         contexts=contexts, seed=seed, torch_device=str(dev),
                         **visits.as_meta(), visits_done=done, spread=spread,
                         low_percentile=timing.LOW_PERCENTILE, clocks=timing.clocks(dev),
                         allocator=allocator(), created=_now(),
                         positions=[len(c) for c in space.positions],
                         build_seconds=round(time.perf_counter() - start, 3))
        return self

    def mismatch(self, settings: dict[str, Any]) -> str | None:
        """The first of `settings` this table was not measured as (its name), or None: each
        given setting must equal the table's (device as a torch device or its recorded name,
        threads None = torch's current setting), and "keys", if given, be all in the table."""
        for name, value in settings.items():
            if name == "keys":
                if not set(value) <= self.entries.keys():
                    return name
                continue
            if name == "device" and value != self.meta.get("device"):
                try:
                    value = device_name(value)
                except (RuntimeError, TypeError, AssertionError):
                    return name
            elif name == "threads" and value is None:
                value = torch.get_num_threads()
            if self.meta.get(name) != value:
                return name
        return None

    def matches(self, settings: dict[str, Any]) -> bool:
        """Whether this table was measured as `settings` asks (see mismatch)."""
        return self.mismatch(settings) is None

    @classmethod
    def load_or_build(cls, path: str | os.PathLike, space: ChainSearchSpace, *,
                      batch: int = 1, device: torch.device | str = "cpu",
                      threads: int | None = None, warmup: int = 10, repeats: int = 50,
                      contexts: int = 4, clock: str = "wall", seed: int = 0,
                      visits: Visits = Visits()) -> LatencyTable:
        """The table saved at `path` when it was measured on this machine with these settings
        and holds every key `space` needs; otherwise a fresh build_for_space, saved to
        `path`. An unreadable file is rebuilt (with a warning) rather than trusted."""
        path = Path(path)
        wanted = {**_settings(device, threads, batch, warmup, repeats, clock),
                  "timing": "context", "contexts": contexts, **visits.as_meta(),
                  "resolution": space.template.input_size, "keys": space_layout(space).keys()}
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
                                      warmup=warmup, repeats=repeats, contexts=contexts,
                                      clock=clock, seed=seed, visits=visits)
        table.save(path)
        return table

    def to_dict(self) -> dict[str, Any]:
        entries = {}
        for key, s in sorted(self.entries.items()):
            entries[key] = {f: getattr(s, f) for f in _STAT_FIELDS}
            entries[key]["visits"] = s.visits
            entries[key]["input_shape"] = list(s.input_shape)
        out = {"format": FORMAT, "version": VERSION,
               "meta": {"created": _now(), **self.meta}, "entries": entries}
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
        except UnicodeDecodeError:
            raise LatencyTableError(f"{path}: not a latency table (not UTF-8 text; expected "
                                    f"the JSON a search or scripts/bench_lut.py writes)") from None
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
        missing = [n for n in (*SETTINGS, "timing") if n not in meta]
        if missing:
            raise ValueError(f"meta: missing field {missing[0]!r}")
        table = cls()
        table.meta = dict(meta)
        settings = {n: meta[n] for n in SETTINGS}
        for key, e in entries.items():
            if not isinstance(e, dict):
                raise ValueError(f"entry {key}: expected a mapping, got {e!r}")
            for f in _STAT_FIELDS:
                _check_number(e.get(f), f"entry {key}: {f}")
            shape = e.get("input_shape")
            if not isinstance(shape, list) or not all(isinstance(s, int) for s in shape):
                raise ValueError(f"entry {key}: input_shape expected a list of integers, "
                                 f"got {shape!r}")
            visits = e.get("visits")
            if isinstance(visits, bool) or not isinstance(visits, int) or visits < 1:
                raise ValueError(f"entry {key}: visits expected an integer >= 1, got "
                                 f"{visits!r}")
            table.entries[key] = LatencyStats(**{f: float(e[f]) for f in _STAT_FIELDS},
                                              input_shape=tuple(shape), visits=visits,
                                              **settings)
        cal = data.get("calibration")
        if cal is not None:
            if not isinstance(cal, dict):
                raise ValueError(f"calibration: expected a mapping, got {cal!r}")
            _check_number(cal.get("scale"), "calibration: scale")
            table.calibration = cal
        return table


def _check_number(value: Any, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{what} expected a number, got {value!r}")


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def fit_calibration(raw_ms: Sequence[float], measured_ms: Sequence[float]) -> float:
    """The scale with measured ~ scale * raw, least squares through the origin over reference
    networks: one parameter, stable on the narrow latency range random paths span, and it
    extrapolates to the extremes of a space by proportion."""
    raw, meas = np.asarray(raw_ms, dtype=float), np.asarray(measured_ms, dtype=float)
    if raw.shape != meas.shape or raw.ndim != 1 or len(raw) == 0:
        raise ValueError(f"calibration: expected two equal-length lists of latencies, got "
                         f"{len(raw)} and {len(meas)} values")
    return float(raw @ meas / (raw @ raw))


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
        positions.append(tuple(Part(at.label, block_key(c, at.cin, at.hw), at.cin, at.hw, c,
                                    at.index) for c in cands))
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
