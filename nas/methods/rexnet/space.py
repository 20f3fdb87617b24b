"""ReXNet's channel-configuration space (specs 2.5, paper section 4): block widths
c_i = a * f(i) + b on a fixed network, f piecewise linear over a subset of breakpoints in
1..d, under parameter and FLOPs constraints checked from the analytic cost.

The network is the paper's search network: a 3x3 stem of 16 channels + BN + ReLU,
d MobileNetV2 inverted bottlenecks (expansion 6, kernel 3, ReLU6, linear projection; the
shortcut where stride 1 and in == out, or ReXNet's partial shortcut with
`residual: partial`), a large 1x1 expansion layer before pooling and a linear classifier.
Depth, strides and the width of that last layer are settings; the paper states none of
them for its searches.

f is normalised to f(1) = 0 and f(d) = 1, so b is the first block's width and a + b the
last's; the values of f at the chosen breakpoints are non-decreasing, which keeps the
widths non-decreasing (Eq. 1's c_1 <= ... <= c_d).
"""

from __future__ import annotations

import math
from itertools import combinations
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

from nas.arch.spec import (BatchNormSpec, ChainSpec, ConvSpec, HeadSpec, InvertedResidualSpec)
from nas.config import ConfigError, require
from nas.cost.analytic import Cost, count

RESIDUALS = ("identity", "partial")


@dataclass
class SpaceConfig:
    """The fixed network and the range of the sampler (`method.space`)."""

    depth: int = 5
    strides: list[int] = field(default_factory=lambda: [1, 2, 1, 2, 1])
    stem: int = 16
    stem_stride: int = 1
    head: int = 640               # the large 1x1 expansion layer before pooling
    residual: str = "identity"    # MobileNetV2's rule; `partial`: ReXNet's
    dropout: float = 0.2
    min_width: int = 8            # sampler range of the first and last block widths
    max_width: int = 512
    # f's rises between consecutive breakpoints are Dirichlet(concentration) shares of its
    # total rise: 1 is sorted uniform values; below 1 some rises are near 0 and others
    # large, the flat stages and jumps of the stage-wise convention.
    concentration: float = 0.5

    def __post_init__(self) -> None:
        require(self.depth >= 2, "space.depth", "an integer >= 2 (the paper: at least two "
                "inverted bottlenecks)", self.depth)
        require(len(self.strides) == self.depth and all(s in (1, 2) for s in self.strides),
                "space.strides", f"a list of {self.depth} strides (space.depth), each 1 or 2",
                self.strides)
        require(self.stem >= 1 and self.head >= 1, "space.stem/head", "integers >= 1",
                (self.stem, self.head))
        require(self.stem_stride in (1, 2), "space.stem_stride", "1 or 2", self.stem_stride)
        require(self.residual in RESIDUALS, "space.residual", " or ".join(RESIDUALS),
                self.residual)
        require(0.0 <= self.dropout < 1.0, "space.dropout", "a rate in [0, 1)", self.dropout)
        require(1 <= self.min_width <= self.max_width, "space.min_width/max_width",
                "1 <= min_width <= max_width", (self.min_width, self.max_width))
        require(self.concentration > 0, "space.concentration", "a value > 0",
                self.concentration)


CONSTRAINT_RULES = ("le", "band")


@dataclass
class Constraints:
    """Eq. 1's budgets P (params) and F (MACs). How a candidate must meet them is the
    search's `constraint` rule: `le` is Eq. 1 (params <= P and MACs <= F), with the tighter
    budget used to at least 1 - tolerance so that every candidate spends about the same;
    `band` reads Table 3's "~ 0.2 M params, ~ 30 MFLOPs" as within +-tolerance of the
    tighter budget (the paper's own best configurations of (a)-(c) exceed "<=" here)."""

    params: float = 2.0e5
    macs: float = 3.0e7
    tolerance: float = 0.15

    def __post_init__(self) -> None:
        require(self.params > 0 and self.macs > 0, "params/macs", "budgets > 0",
                (self.params, self.macs))
        require(0.0 < self.tolerance < 1.0, "tolerance", "a fraction in (0, 1)",
                self.tolerance)

    def fill(self, cost: Cost) -> float:
        """The tighter budget's use: max(params / P, MACs / F)."""
        return max(cost.params / self.params, cost.macs / self.macs)

    def rejects(self, cost: Cost, rule: str = "band") -> Optional[str]:
        """None when `cost` meets the constraints under `rule`, else "over" or "under"."""
        fill = self.fill(cost)
        if fill > (1.0 if rule == "le" else 1.0 + self.tolerance):
            return "over"
        if fill < 1.0 - self.tolerance:
            return "under"
        return None


@dataclass(frozen=True)
class Candidate:
    """One channel configuration: f's breakpoints (1-based block indices, 1 and d
    included), its values there (non-decreasing from 0 to 1), and a, b."""

    breakpoints: tuple[int, ...]
    knots: tuple[float, ...]
    a: float
    b: float

    def f(self) -> list[float]:
        """f(1..d), linear between consecutive breakpoints."""
        depth = self.breakpoints[-1]
        return [float(v) for v in np.interp(np.arange(1, depth + 1), self.breakpoints,
                                            self.knots)]

    def widths(self) -> list[int]:
        """c_i = a f(i) + b rounded half up (Python's round would send 76.5 to 76)."""
        return [int(math.floor(self.a * v + self.b + 0.5)) for v in self.f()]


def fit(widths: Sequence[int]) -> Candidate:
    """The candidate with the fewest breakpoints whose widths are exactly `widths` (a
    non-decreasing list); every such list is reachable, with all d breakpoints at worst."""
    widths = [int(w) for w in widths]
    require(all(x <= y for x, y in zip(widths, widths[1:])), "widths", "non-decreasing widths",
            widths)
    depth, lo, hi = len(widths), widths[0], widths[-1]
    span = hi - lo
    interior = list(range(2, depth))
    for k in range(len(interior) + 1):
        for subset in combinations(interior, k):
            points = (1, *subset, depth)
            knots = tuple((widths[p - 1] - lo) / span if span else 0.0 for p in points)
            cand = Candidate(points, knots, float(span), float(lo))
            if cand.widths() == widths:
                return cand
    raise AssertionError("unreachable: all breakpoints reproduce any list")


def nonlinearity(widths: Sequence[int]) -> float:
    """How far the widths are from a straight line in the block index: the RMS deviation
    from their least-squares line over their mean (0 for linear growth or a constant)."""
    y = np.asarray(widths, dtype=float)
    x = np.arange(1, len(y) + 1, dtype=float)
    slope, intercept = np.polyfit(x, y, 1)
    return float(np.sqrt(((y - (slope * x + intercept)) ** 2).mean()) / y.mean())


class ChannelSpace:
    """The search network for given data, its analytic cost, and the seeded sampler."""

    def __init__(self, cfg: SpaceConfig, constraints: Constraints, *, num_classes: int,
                 input_size: int, in_channels: int = 3, rule: str = "band"):
        self.cfg, self.constraints, self.rule = cfg, constraints, rule
        self.num_classes, self.input_size, self.in_channels = num_classes, input_size, in_channels

    def to_spec(self, widths: Sequence[int], name: str = "rexnet_searched") -> ChainSpec:
        cfg, blocks, cin = self.cfg, [], self.cfg.stem
        for out, stride in zip(widths, cfg.strides):
            if stride != 1:
                residual = "none"
            elif cfg.residual == "identity":
                residual = "identity" if cin == out else "none"
            else:
                residual = "partial" if cin <= out else "none"
            blocks.append(InvertedResidualSpec(
                out=int(out), kernel=3, stride=stride, expand=True, expansion=6.0,
                act_expand="relu6", act_dw="relu6", act_post="none", residual=residual))
            cin = out
        return ChainSpec(
            name=name, num_classes=self.num_classes, input_size=self.input_size,
            in_channels=self.in_channels, bn=BatchNormSpec(eps=1e-5, momentum=0.1),
            init="torchvision",
            stem=ConvSpec(out=cfg.stem, kernel=3, stride=cfg.stem_stride, act="relu"),
            blocks=blocks,
            head=HeadSpec(pre_pool=[ConvSpec(out=cfg.head, act="relu6")], dropout=cfg.dropout,
                          classifier="linear"))

    def cost(self, widths: Sequence[int]) -> Cost:
        """Params and MACs from the spec alone (nas.cost.analytic; nothing is built)."""
        return count(self.to_spec(widths))

    def rejects(self, cand: Candidate) -> Optional[str]:
        """Why `cand` is not trained ("narrow", "over", "under"), or None to keep it."""
        widths = cand.widths()
        if widths[0] < self.cfg.min_width:
            return "narrow"
        return self.constraints.rejects(self.cost(widths), self.rule)

    def draw(self, rng: np.random.Generator) -> Candidate:
        """One draw from the prior: k interior breakpoints (k uniform in 0..d-2, the subset
        uniform), f's rises between them Dirichlet(concentration), first and last widths
        log-uniform in [min_width, max_width] with first <= last."""
        depth = self.cfg.depth
        k = int(rng.integers(0, depth - 1))
        interior = sorted(int(i) for i in rng.choice(np.arange(2, depth), size=k,
                                                     replace=False)) if k else []
        rises = rng.dirichlet([self.cfg.concentration] * (k + 1))
        knots = (0.0, *(min(1.0, float(v)) for v in np.cumsum(rises)[:-1]), 1.0)
        lo, hi = math.log(self.cfg.min_width), math.log(self.cfg.max_width)
        first, last = sorted(math.exp(v) for v in rng.uniform(lo, hi, size=2))
        return Candidate((1, *interior, depth), knots, last - first, first)

    def sample(self, n: int, seed: int, max_draws: Optional[int] = None
               ) -> tuple[list[Candidate], dict[str, int]]:
        """`n` kept candidates with distinct widths, drawn in order from `seed`, and the
        count of draws by outcome (kept, over, under, narrow, duplicate)."""
        rng = np.random.default_rng(seed)
        max_draws = max_draws or 2000 * n
        kept: list[Candidate] = []
        seen: set[tuple[int, ...]] = set()
        counts = {"kept": 0, "over": 0, "under": 0, "narrow": 0, "duplicate": 0}
        for _ in range(max_draws):
            cand = self.draw(rng)
            reason = self.rejects(cand)
            if reason is None and tuple(cand.widths()) in seen:
                reason = "duplicate"
            counts[reason or "kept"] += 1
            if reason is None:
                kept.append(cand)
                seen.add(tuple(cand.widths()))
                if len(kept) == n:
                    return kept, counts
        raise ConfigError(
            f"method: only {len(kept)} of {n} candidates met the constraints (params "
            f"{self.constraints.params:.3g}, MACs {self.constraints.macs:.3g}, tolerance "
            f"{self.constraints.tolerance}, rule {self.rule}) in {max_draws} draws ({counts}); expected "
            f"budgets the space.min_width..max_width range can reach")
