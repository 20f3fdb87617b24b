"""SearchSpace: named decisions with their candidates, shared by every method.

A decision vector is one integer per decision (the index of the chosen candidate), the
encoding pymoo works on. Sampling takes an explicit generator so every DDP rank can
draw the same architecture from the same seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import torch


@dataclass(frozen=True)
class Decision:
    """One choice of the search: `name` and its candidates (plain data, e.g. block specs)."""

    name: str
    candidates: tuple[Any, ...]

    def __post_init__(self) -> None:
        if not self.candidates:
            raise ValueError(f"decision {self.name!r} has no candidates")


class SearchSpace:
    """An ordered list of decisions; subclasses map a decision vector to an ArchSpec."""

    def __init__(self, decisions: Sequence[Decision]):
        self.decisions = list(decisions)
        names = [d.name for d in self.decisions]
        if len(set(names)) != len(names):
            raise ValueError(f"decision names must be unique, got {names}")

    def __len__(self) -> int:
        return len(self.decisions)

    @property
    def n_choices(self) -> list[int]:
        return [len(d.candidates) for d in self.decisions]

    @property
    def cardinality(self) -> int:
        return math.prod(self.n_choices)

    def check(self, vector: Sequence[int]) -> list[int]:
        """A valid decision vector as a list of ints, or ValueError naming the decision."""
        vector = [int(v) for v in vector]
        if len(vector) != len(self.decisions):
            raise ValueError(f"expected {len(self.decisions)} decisions, got {len(vector)}")
        for v, d in zip(vector, self.decisions):
            if not 0 <= v < len(d.candidates):
                raise ValueError(f"decision {d.name!r}: index {v} not in "
                                 f"[0, {len(d.candidates) - 1}]")
        return vector

    def sample(self, generator: torch.Generator) -> list[int]:
        """A uniformly random decision vector drawn from `generator`."""
        return [int(torch.randint(n, (1,), generator=generator)) for n in self.n_choices]

    def decode(self, vector: Sequence[int]) -> dict[str, Any]:
        """Decision name -> chosen candidate."""
        return {d.name: d.candidates[v] for d, v in zip(self.decisions, self.check(vector))}

    def encode(self, choices: dict[str, Any]) -> list[int]:
        """Inverse of decode (candidates compared by equality)."""
        missing = [d.name for d in self.decisions if d.name not in choices]
        if missing:
            raise ValueError(f"no choice given for decision {missing[0]!r}")
        out = []
        for d in self.decisions:
            try:
                out.append(d.candidates.index(choices[d.name]))
            except ValueError:
                raise ValueError(f"decision {d.name!r}: {choices[d.name]!r} is not a "
                                 f"candidate") from None
        return out

    def to_spec(self, vector: Sequence[int]):
        raise NotImplementedError
