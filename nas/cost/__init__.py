"""Costs of an architecture: params and MACs from a spec (analytic) or a module (measured),
and latency (measurement and lookup tables)."""

from nas.cost.analytic import Cost, count

__all__ = ["Cost", "count"]
