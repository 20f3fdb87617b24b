"""MoGA's single-path supernet over a chain space.

`ChainSupernet` holds every candidate block of a `ChainSearchSpace` (built by the same ops
as stand-alone networks; or, weight-entangled, as slices of one block per layer) and
returns, for a vector, a `path` module laid out exactly like the stand-alone ChainNet, so
the path's state_dict loads into `build(space.to_spec(vector))` as it is.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import torch
from torch import nn

from nas.arch.builder import build_block, build_head, build_stem
from nas.methods.moga.entangled import WEIGHTS, SharedBlock
from nas.ops.layers import init_weights
from nas.supernet.base import Exported, resolve_choice
from nas.supernet.bn import recalibrate_bn
from nas.supernet.chain import ChainSearchSpace


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
    (nas.methods.moga.entangled). Either way a path's state_dict is the stand-alone network's.
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

    def choice(self) -> None:
        """A single-path supernet has no pick of its own: its caller picks every path."""
        return None

    def recalibrate(self, batches: Iterable, steps: int, choice: Sequence[int] | None = None,
                    device: torch.device | str | None = None) -> int:
        """Re-estimate the BN statistics of one path (other candidates are untouched)."""
        vector = resolve_choice(self, choice, any_choice=True)
        return recalibrate_bn(self.path(vector), batches, steps, device)

    def export(self, choice: Sequence[int] | None = None, name: str | None = None) -> Exported:
        """The chosen architecture as a spec, with its inherited weights for build(spec)."""
        vector = resolve_choice(self, choice, any_choice=True)
        state = {k: v.detach().clone() for k, v in self.path(vector).state_dict().items()}
        return Exported(self.space.to_spec(vector, name), state)
