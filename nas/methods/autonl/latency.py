"""AutoNL with `method.cost=latency`: Single-Path NAS's objective, the expected latency from a
lookup table of every block option on this machine (nas.cost.lut) instead of MACs."""

from __future__ import annotations

import itertools
import logging
from pathlib import Path

from nas.config import ConfigError
from nas.cost.lut import LatencyTable, LatencyTableError, block_key, parts
from nas.methods.autonl.superkernel import CostModel, LayerChoice, SuperkernelSpace

log = logging.getLogger(__name__)


def option_specs(space: SuperkernelSpace) -> list:
    """Networks that together hold every (block option, input) of the space: network k
    takes in every layer its k-th option (no layer skipped, so every layer sees its own
    input shape)."""
    per_layer = []
    for s in space.slots:
        options = [LayerChoice(False, k, e, se, nl) for k, e, se, nl in itertools.product(
            (3, 5), (3.0, 6.0), (None, *s.se_reduce),
            (None, *itertools.product(s.nl_ratios, s.nl_strides)) if s.nl_ratios else (None,))]
        per_layer.append(options)
    n = max(len(o) for o in per_layer)
    return [space.to_spec(space.vector([o[k % len(o)] for o in per_layer])) for k in range(n)]


def latency_model(space: SuperkernelSpace, cfg, run_dir: Path) -> CostModel:
    """Per-layer latencies (ms, the low percentile: timing.low) of every option, measured
    alone at batch 1 with `cfg.lut_threads` threads; the table is read from `cfg.lut` when
    it holds them, else measured and saved there (or in the run directory)."""
    path = Path(cfg.lut) if cfg.lut else run_dir / "lut.json"
    specs = option_specs(space)
    table = LatencyTable()
    if path.is_file():
        try:
            table = LatencyTable.load(path)
        except LatencyTableError as e:
            log.warning("%s; measuring a new table", e)
    before = len(table)
    try:
        table.build(specs, threads=cfg.lut_threads, repeats=cfg.lut_repeats, warmup=5)
    except ValueError as e:  # a table of other measurement settings
        raise ConfigError(f"method.lut: {path}: {e}") from None
    if len(table) != before or not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        table.save(path)
    entries = table.entries
    fixed_parts = [p for p in parts(specs[0])
                   if p.label in ("stem", "head") or p.index < len(space.fixed)]
    fixed = sum(entries[p.key].low_ms for p in fixed_parts)
    return CostModel(fixed, lambda block, cin, hw: entries[block_key(block, cin, hw)].low_ms)
