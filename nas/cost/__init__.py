"""Costs of an architecture: params and MACs from a spec (analytic) or a module (measured),
and latency (timing, lut: lookup tables, lut_report: their fidelity)."""

from nas.cost.analytic import Cost, count

__all__ = ["Cost", "count"]
