"""How well a latency table predicts whole networks it was not fitted on: RMSE, relative
RMSE and Kendall tau-b of predicted against measured latency of random architectures."""

from __future__ import annotations

import math
import statistics
import time
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np
import torch
from scipy.stats import kendalltau

from nas.arch.builder import build
from nas.cost import timing
from nas.cost.lut import LatencyTable
from nas.cost.timing import (Visits, allocator, check_device, check_settings, clock_fn,
                             device_name, intra_op_threads)

if TYPE_CHECKING:
    from nas.supernet.chain import ChainSearchSpace


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b (scipy's; ties are common in accuracies); nan when either side is
    constant or has fewer than two values."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"kendall_tau: expected two equal-length sequences, got shapes "
                         f"{x.shape} and {y.shape}")
    if len(x) < 2:
        return math.nan
    return float(kendalltau(x, y).statistic)


def _errors(predicted: Sequence[float], measured: Sequence[float]) -> dict[str, float]:
    p, m = np.asarray(predicted, dtype=float), np.asarray(measured, dtype=float)
    rmse = float(np.sqrt(np.mean((p - m) ** 2)))
    rel = (p - m) / m
    return {"rmse_ms": rmse, "rel_rmse": rmse / float(m.mean()), "kendall_tau": kendall_tau(p, m),
            "mean_rel_error": float(rel.mean()), "max_abs_rel_error": float(np.abs(rel).max())}


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


def lut_report(table: LatencyTable, space: ChainSearchSpace, n: int = 30,
               seed: int = 0) -> dict[str, Any]:
    """Predicted against measured whole-network latency for `n` random architectures of
    `space` (drawn with `seed`, leaving out the table's calibration paths): RMSE, RMSE
    relative to the mean measured latency, Kendall tau-b, per-architecture rows, settings.

    The networks are timed as the table was measured (its device, threads, batch, warmup,
    repeats, clock and visits), on the device it names; a table measured on another device
    is refused, since it predicts nothing here. Each network is built whole and timed in
    interleaved visits (timing.time_visits); measured = the low percentile (timing.low),
    as the table's entries. `noise` says how far the measurements themselves can be
    trusted: the networks' median split-half spread, and whether the visits reached the
    table's max_spread.
    """
    meta = table.meta
    threads, batch, warmup, repeats, clock = (
        meta[k] for k in ("threads", "batch", "warmup", "repeats", "clock"))
    check_settings(warmup, repeats, threads, batch)
    dev = check_device(meta.get("torch_device", "cpu"))
    if device_name(dev) != meta["device"]:
        raise ValueError(f"report on {device_name(dev)!r}, but the table was measured on "
                         f"{meta['device']!r}")
    visits = Visits.from_meta(meta)

    calibration = table.calibration or {}
    excluded = {tuple(v) for v in calibration.get("vectors", [])}
    vectors, skipped = sample_vectors(space, n, seed, excluded)
    predicted = [table.predict_vector(space, v) for v in vectors]
    raw = [table.predict_vector(space, v, calibrated=False) for v in vectors]
    size = space.template.input_size
    x = torch.randn(batch, space.template.in_channels, size, size, device=dev)
    models = [build(space.to_spec(v)).to(dev).eval() for v in vectors]
    start = time.perf_counter()
    with intra_op_threads(threads):
        visited, spread = timing.time_visits([[m] for m in models], x, warmup=warmup,
                                             repeats=repeats, visits=visits,
                                             now=clock_fn(clock, dev, threads))
    seconds = time.perf_counter() - start
    per_visit = [[[row[0] for row in rows] for rows in v] for v in visited]
    times = [[t for v in pv for t in v] for pv in per_visit]
    measured = [timing.low(t) for t in times]

    rows = []
    for v, p, r, t, pv in zip(vectors, predicted, raw, times, per_visit):
        rows.append({"vector": v, "predicted_ms": p, "predicted_uncalibrated_ms": r,
                     "measured_ms": timing.low(t), "measured_median_ms": statistics.median(t),
                     "measured_n": len(t), "spread": timing.split_half_spread(pv)})
    table_spread = meta.get("spread")
    return {
        **_errors(predicted, measured),
        "n": n, "seed": seed,
        "mean_measured_ms": statistics.fmean(measured),
        "mean_predicted_ms": statistics.fmean(predicted),
        "uncalibrated": _errors(raw, measured),
        "calibration": ({"scale": calibration["scale"], "paths": len(excluded)}
                        if calibration else None),
        "skipped_calibration_paths": skipped,
        "measure_seconds": round(seconds, 3),
        "noise": {"visits": len(visited[0]), "spread": spread, "table_spread": table_spread,
                  "settled": spread <= visits.max_spread
                  and (table_spread is None or table_spread <= visits.max_spread)},
        "settings": {"device": meta["device"], "torch_device": str(dev),
                     "torch_version": torch.__version__, "threads": threads, "batch": batch,
                     "warmup": warmup, "repeats": repeats, **visits.as_meta(),
                     "low_percentile": timing.LOW_PERCENTILE, "clocks": timing.clocks(dev),
                     "clock": clock, "resolution": space.template.input_size,
                     "timing": meta.get("timing"), "contexts": meta.get("contexts"),
                     "allocator": allocator()},
        "rows": rows,
    }
