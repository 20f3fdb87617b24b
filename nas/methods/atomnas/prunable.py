"""PrunableChain: an over-complete chain network that shrinks physically while it trains
(AtomNAS), with the weight EMA it is evaluated and exported with.

Its search space is the number of atoms (hidden channels) kept per kernel group of every
searched mixed block; the network's own choice (`choice=None`) is the atoms still alive.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Iterable, Mapping, Optional, Sequence

import torch

from nas.arch.builder import build
from nas.arch.spec import ChainSpec, MixedKernelSpec
from nas.arch.validate import validate
from nas.ops.network import Network
from nas.supernet.base import Exported, resolve_choice
from nas.supernet.bn import recalibrate_bn
from nas.methods.atomnas.shrink import shrink_chain
from nas.supernet.space import Decision, SearchSpace


def _groups(spec: ChainSpec) -> dict[tuple[int, int], int]:
    """(block index, kernel) -> atoms, for every kernel group of every expanded mixed block."""
    return {(i, k): h for i, b in enumerate(spec.blocks)
            if isinstance(b, MixedKernelSpec) and b.expand for k, h in zip(b.kernels, b.hidden)}


def atom_space(supernet: ChainSpec) -> SearchSpace:
    """One decision per kernel group: how many of its atoms are kept (0 .. all)."""
    return SearchSpace([Decision(f"block{i}.k{k}", tuple(range(h + 1)))
                        for (i, k), h in _groups(supernet).items()])


def kept_atoms_spec(supernet: ChainSpec, counts: Sequence[int],
                    name: Optional[str] = None) -> ChainSpec:
    """The network that keeps `counts[j]` atoms of each kernel group of `supernet` (a vector
    of `atom_space`); a block that cannot become the identity keeps at least one atom, of
    its largest group, so that the chain stays connected (as shrinking does)."""
    counts = atom_space(supernet).check(counts)
    kept = dict(zip(_groups(supernet), counts))
    blocks, cin = [], supernet.stem.out
    for i, b in enumerate(supernet.blocks):
        if isinstance(b, MixedKernelSpec) and b.expand:
            hidden = [kept[(i, k)] for k in b.kernels]
            identity = b.stride == 1 and cin == b.out and b.residual == "identity"
            if sum(hidden) == 0 and not identity:
                hidden[max(range(len(hidden)), key=lambda j: b.hidden[j])] = 1
            b = dataclasses.replace(b, hidden=hidden)
        blocks.append(b)
        cin = b.out
    spec = dataclasses.replace(supernet, blocks=blocks, name=name or supernet.name)
    validate(spec)
    return spec


class PrunableChain(Network):
    """`net` trains, `ema` is its weight average; both shrink together. Implements
    nas.supernet.base.Supernet."""

    def __init__(self, supernet: ChainSpec):
        super().__init__()
        self.supernet_spec = supernet
        self.spec = supernet
        self.space = atom_space(supernet)
        self.net = build(supernet)
        self.ema = copy.deepcopy(self.net).requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    @torch.no_grad()
    def update_ema(self, decay: float) -> None:
        """ema <- decay * ema + (1 - decay) * net, buffers included (integer ones copied)."""
        for e, p in zip(self.ema.parameters(), self.net.parameters()):
            e.lerp_(p.detach(), 1.0 - decay)
        for e, b in zip(self.ema.buffers(), self.net.buffers()):
            if e.is_floating_point():
                e.lerp_(b, 1.0 - decay)
            else:
                e.copy_(b)

    def shrink(self, keep: Mapping[int, Sequence[torch.Tensor]], *,
               optimizers: Iterable[torch.optim.Optimizer] = (),
               memory_format: torch.memory_format = torch.contiguous_format) -> ChainSpec:
        """Remove the atoms `keep` leaves out from the network, its EMA and the optimizers'
        state (nas.methods.atomnas.shrink.shrink_chain); returns the new architecture."""
        old = self.spec
        self.spec = shrink_chain(self.net, old, keep, optimizers=optimizers,
                                 memory_format=memory_format)
        shrink_chain(self.ema, old, keep, memory_format=memory_format)
        return self.spec

    def rebuild(self, spec: ChainSpec, memory_format: torch.memory_format) -> None:
        """Networks of a shrunk architecture (resuming a run), for weights to be loaded into."""
        self.net = build(spec).to(memory_format=memory_format)
        self.ema = copy.deepcopy(self.net).requires_grad_(False)
        self.spec = spec

    def choice(self) -> list[int]:
        """The atoms alive per kernel group, as a decision vector of `space`."""
        alive = _groups(self.spec)
        return [alive.get(key, 0) for key in _groups(self.supernet_spec)]

    def export(self, choice: Optional[Sequence[int]] = None,
               name: Optional[str] = None) -> Exported:
        """The architecture of the atoms alive, with the EMA weights (evaluated as trained)."""
        resolve_choice(self, choice, any_choice=False)
        spec = self.spec if name is None else dataclasses.replace(self.spec, name=name)
        state = {k: v.detach().cpu().clone() for k, v in self.ema.state_dict().items()}
        return Exported(spec, state)

    def recalibrate(self, batches: Iterable, steps: int, choice: Optional[Sequence[int]] = None,
                    device: torch.device | str | None = None) -> int:
        """Re-estimate the EMA network's BN statistics (the network that is evaluated)."""
        resolve_choice(self, choice, any_choice=False)
        return recalibrate_bn(self.ema, batches, steps, device)
