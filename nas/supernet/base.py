"""The supernet protocol every method's over-parameterised network implements.

A single-path supernet (MoGA), a prunable over-complete network (AtomNAS), a threshold
superkernel (AutoNL) and a relaxed mixture over cell edges (DARTS) differ in how they
train, but a search asks the same three things of each: the space it searches, the
chosen architecture as an ArchSpec (with the weights it trained, where it trained them),
and BN statistics recalibrated for that choice.

`choice` is a decision vector of `space` where the caller picks the architecture (a
single-path supernet scoring candidates); None means the supernet's own current pick
(the atoms still alive, the argmax of the mixture weights, the thresholds' decisions).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Optional, Protocol, Sequence, runtime_checkable

import torch

from nas.arch.spec import ArchSpec
from nas.supernet.space import SearchSpace


@dataclass
class Exported:
    """An architecture chosen from a supernet: its spec, and the weights that load into
    `build(spec)` (None where the supernet's weights are not meant to be inherited)."""

    spec: ArchSpec
    state_dict: Optional[dict[str, torch.Tensor]]


@runtime_checkable
class Supernet(Protocol):
    space: SearchSpace

    def export(self, choice: Optional[Sequence[int]] = None,
               name: Optional[str] = None) -> Exported:
        """The architecture of `choice` (None: the supernet's own pick), named `name`."""
        ...

    def recalibrate(self, batches: Iterable, steps: int,
                    choice: Optional[Sequence[int]] = None,
                    device: torch.device | str | None = None) -> int:
        """Re-estimate the BN statistics of `choice` on up to `steps` batches; returns the
        number of batches used."""
        ...
