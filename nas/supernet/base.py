"""The supernet protocol every method's over-parameterised network implements, and its
consumer, `hand_back`, which the search stage calls (nas.methods.stage).

A single-path supernet (MoGA), a prunable over-complete network (AtomNAS), a threshold
superkernel (AutoNL) and a relaxed mixture over cell edges (DARTS) differ in how they
train, but a search asks the same things of each: the space it searches, its own pick, the
chosen architecture as an ArchSpec (with the weights it trained, where it trained them),
and BN statistics recalibrated for that choice.

`choice` has one meaning everywhere: a decision vector of `space`, None standing for the
supernet's own pick (`choice()`: the atoms still alive, the derived genotype, the
thresholds' decisions; a single-path supernet has none). An implementation that can run
only its own pick refuses any other vector with one ChoiceError (`resolve_choice`).
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


class ChoiceError(ValueError):
    """A choice the supernet cannot run; the message says which it can."""


@runtime_checkable
class Supernet(Protocol):
    space: SearchSpace

    def choice(self) -> Optional[list[int]]:
        """The supernet's own pick as a decision vector; None where it has none."""
        ...

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


def resolve_choice(supernet: Supernet, choice: Optional[Sequence[int]], *,
                   any_choice: bool) -> list[int]:
    """`choice` as a checked decision vector (None: the supernet's own pick). `any_choice`:
    whether the supernet can run a vector other than its own pick."""
    own, kind = supernet.choice(), type(supernet).__name__
    if choice is None:
        if own is None:
            raise ChoiceError(f"{kind} has no pick of its own; expected a decision vector of "
                              f"its space")
        return own
    vector = supernet.space.check(choice)
    if not any_choice and vector != own:
        i = next(i for i, (a, b) in enumerate(zip(own, vector)) if a != b)
        raise ChoiceError(f"{kind} runs only its own pick; decision "
                          f"{supernet.space.decisions[i].name!r} is {own[i]} there, "
                          f"{vector[i]} in the choice given")
    return vector


def hand_back(supernet: Supernet, name: str, *, batches: Optional[Iterable] = None,
              steps: int = 0, device: torch.device | str | None = None) -> Exported:
    """What a search hands back from its supernet: its own pick, named `name`, its BN
    statistics first re-estimated on `steps` of `batches` where `steps` > 0."""
    if steps > 0:
        supernet.recalibrate(batches, steps, device=device)
    return supernet.export(name=name)
