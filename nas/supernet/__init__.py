"""The shared supernet abstraction (search spaces, choice layers, BN recalibration)."""
