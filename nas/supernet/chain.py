"""Chain search spaces: one candidate list per block position of a fixed stem and head.

`ChainSearchSpace` maps a decision vector to an exact ChainSpec. MoGA searches one (its
single-path supernet: nas.methods.moga.supernet); the latency table times its candidates
(nas.cost.lut), and a method defined outside nas/ can build on it.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

from nas.arch.spec import ChainSpec
from nas.arch.validate import validate
from nas.supernet.space import Decision, SearchSpace


class ChainSearchSpace(SearchSpace):
    """`template` gives stem, head and globals; `candidates[i]` lists the block specs allowed
    at position i (one candidate = a fixed block). Candidates of a position share their
    output width and stride, so every path has the same shapes."""

    def __init__(self, template: ChainSpec, candidates: Sequence[Sequence[object]]):
        if len(candidates) == 0:
            raise ValueError("a chain search space needs at least one block position")
        for i, cands in enumerate(candidates):
            shapes = {(b.out, b.stride) for b in cands}
            if len(shapes) != 1:
                raise ValueError(f"block {i}: candidates differ in (out, stride): {sorted(shapes)}")
        self.template = template
        self.positions = [tuple(c) for c in candidates]
        self.searchable = [i for i, c in enumerate(self.positions) if len(c) > 1]
        super().__init__([Decision(f"block{i}", self.positions[i]) for i in self.searchable])

    def blocks(self, vector: Sequence[int]) -> list:
        """The chosen block spec at every position."""
        chosen = dict(zip(self.searchable, self.check(vector)))
        return [c[chosen.get(i, 0)] for i, c in enumerate(self.positions)]

    def to_spec(self, vector: Sequence[int], name: str | None = None) -> ChainSpec:
        spec = dataclasses.replace(self.template, blocks=self.blocks(vector),
                                   name=name or self.template.name)
        validate(spec)
        return spec
