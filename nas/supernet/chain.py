"""Chain supernets: one candidate list per block position, single-path execution, export.

`ChainSearchSpace` maps a decision vector to an exact ChainSpec; `ChainSupernet` holds
every candidate block (built by the same ops as stand-alone networks) and returns, for a
vector, a `path` module laid out exactly like the stand-alone ChainNet, so the path's
state_dict loads into `build(space.to_spec(vector))` as it is.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable, Sequence

import torch
from torch import nn

from nas.arch.builder import build_block, build_head, build_stem
from nas.arch.spec import ChainSpec
from nas.arch.validate import validate
from nas.ops.layers import init_weights
from nas.supernet.base import Exported
from nas.supernet.bn import recalibrate_bn
from nas.supernet.entangled import WEIGHTS, SharedBlock
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


class PathNet(nn.Module):
    """One path of a supernet with the stand-alone ChainNet layout (shares parameters)."""

    def __init__(self, stem: nn.Module, blocks: Iterable[nn.Module], head: nn.Module):
        super().__init__()
        self.stem, self.blocks, self.head = stem, nn.Sequential(*blocks), head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))


class ChainSupernet(nn.Module):
    """Every candidate block of a ChainSearchSpace, built and initialised as the template's
    network is (nas.arch.builder); a single-path implementation of nas.supernet.base.Supernet.

    `weights="independent"`: one block per candidate (FairNAS, MoGA); `"entangled"`: each
    searchable layer's candidates are slices of one over-complete block
    (nas.supernet.entangled). Either way a path's state_dict is the stand-alone network's.
    """

    def __init__(self, space: ChainSearchSpace, weights: str = "independent"):
        super().__init__()
        if weights not in WEIGHTS:
            raise ValueError(f"weights: expected one of {', '.join(WEIGHTS)}, got {weights!r}")
        self.space, self.weights = space, weights
        t = space.template
        self.stem = build_stem(t)
        cin, layers = t.stem.out, []
        for i, cands in enumerate(space.positions):
            if weights == "entangled" and len(cands) > 1:
                layers.append(SharedBlock(t, cands, cin, i))
            else:
                layers.append(nn.ModuleList(build_block(t, b, cin, i) for b in cands))
            cin = cands[0].out
        self.choices = nn.ModuleList(layers)
        self.head = build_head(t, cin)
        init_weights(self, t.init)

    def path(self, vector: Sequence[int]) -> PathNet:
        chosen = dict(zip(self.space.searchable, self.space.check(vector)))
        blocks = [layer.choice(chosen.get(i, 0)) if isinstance(layer, SharedBlock)
                  else layer[chosen.get(i, 0)] for i, layer in enumerate(self.choices)]
        return PathNet(self.stem, blocks, self.head)

    def forward(self, x: torch.Tensor, vector: Sequence[int]) -> torch.Tensor:
        return self.path(vector)(x)

    def recalibrate(self, batches: Iterable, steps: int, choice: Sequence[int] | None = None,
                    device: torch.device | str | None = None) -> int:
        """Re-estimate the BN statistics of one path (other candidates are untouched)."""
        return recalibrate_bn(self.path(self._required(choice)), batches, steps, device)

    def export(self, choice: Sequence[int] | None = None, name: str | None = None) -> Exported:
        """The chosen architecture as a spec, with its inherited weights for build(spec)."""
        vector = self._required(choice)
        state = {k: v.detach().clone() for k, v in self.path(vector).state_dict().items()}
        return Exported(self.space.to_spec(vector, name), state)

    @staticmethod
    def _required(choice: Sequence[int] | None) -> Sequence[int]:
        if choice is None:
            raise ValueError("a single-path supernet has no choice of its own: pass a "
                             "decision vector")
        return choice
