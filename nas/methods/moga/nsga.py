"""MoGA's weighted NSGA-II (Chu et al., Algorithm 1 and Eq. 5) on integer genomes, via pymoo.

Only the crowding distance differs from pymoo's NSGA-II: for a non-boundary member m of a
front, sorted by each objective i in turn,

    D(m) = sum_i w_i * (O_i[next] - O_i[prev]) / (O_i_max - O_i_min)      (Eq. 5)

with the weights normalised to sum to 1 (acc 0.4, lat 0.4, params 0.2 by default).
Everything else (non-dominated sorting, the order in which the last front is cut, binary
tournament by dominance then crowding, offspring duplicate elimination) is pymoo's own
NSGA2, so equal weights give bit-identical populations to `pymoo...nsga2.NSGA2` with the
same operators and seed (tests/test_nsga.py checks this).

Choices the paper leaves open, and what we do:

* O_max/O_min: the paper says "in the current population"; pymoo normalises per front.
  Default `crowding_norm="front"` so that equal weights are exactly NSGA-II;
  `"population"` uses the range over R = P u Q instead.
* Boundary members of a front get +inf (standard NSGA-II); an objective whose range on
  the front is zero contributes nothing (not even the inf), and duplicates are not filtered
  out -- both exactly as pymoo's "cd". An objective with weight 0 is ignored entirely.
* Initial population: Algorithm 1 draws P0 and Q0 uniformly (2n genomes) and keeps the
  best n; `init_pop_size=None` does that, `init_pop_size=pop_size` is pymoo's stock start.
* Generations count survival steps as pymoo's n_gen does: generation 1 is the selection
  of P1 from the initial sample, so 120 generations evaluate at most (120 + 1) * 70
  genomes (fewer with cache hits).
* Crossover: the paper's formula shows parent 2's gene only at the cut point k; we use the
  usual single-point reading (prefix from one parent, suffix from the other, two children).
  "crossover(M) u hierarchical-mutation(M)" is read as NSGA-II does: children of the
  crossover are then mutated.
* Hierarchical mutation: "same hyper-parameters as FairNAS", which are not available.
  Each child is mutated (mutation_prob 1.0); the top-level choice is random-reset with
  probability random_mutation_prob = 0.5 (no evidence for favouring exploration or
  exploitation, so the maximum-entropy choice), else prior-regulated roulette wheel.
  Either branch changes each gene with probability 1/L (the NSGA-II per-variable rate;
  about one layer per child). Random reset draws uniformly among the *other* choices, so a
  selected gene always changes; the roulette wheel draws from the per-gene frequency of
  each choice in the current non-dominated front with add-one (Laplace) smoothing, so it
  pulls toward choices the front likes while every choice stays reachable.
* Output "K models at an equal distance near the Pareto front": `pick_equally_spaced`
  takes K members at equal arc-length spacing along the final front (see there).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from pymoo.algorithms.moo.nsga2 import NSGA2
from pymoo.core.crossover import Crossover
from pymoo.core.mutation import Mutation
from pymoo.core.population import Population
from pymoo.core.problem import Problem
from pymoo.core.sampling import Sampling
from pymoo.core.termination import NoTermination
from pymoo.operators.survival.rank_and_crowding import RankAndCrowding
from pymoo.operators.survival.rank_and_crowding.metrics import CrowdingDiversity
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

from nas.config import ConfigError, require
from nas.files import write_text_atomic

CROWDING_NORMS = ("front", "population")
STATE_VERSION = 2


# ----------------------------------------------------------------------------- crowding


def _check_weights(weights: Sequence[float], n_obj: int) -> np.ndarray:
    w = np.asarray(weights, dtype=float).reshape(-1)
    if len(w) != n_obj:
        raise ValueError(f"weights: expected {n_obj} values (one per objective), got {list(w)}")
    if not (np.all(np.isfinite(w)) and np.all(w >= 0) and w.sum() > 0):
        raise ValueError(f"weights: expected finite values >= 0 with a sum > 0, got {list(w)}")
    return w


def weighted_crowding_distance(F: np.ndarray, weights: Sequence[float],
                               scale: np.ndarray | None = None) -> np.ndarray:
    """Eq. 5 for every member of one front F (n, m): boundary members +inf.

    Weights are normalised to sum 1. `scale` (m,) replaces the per-front range
    O_max - O_min (e.g. the population's range). A zero range means no contribution (and no
    inf), duplicates are kept, ties sorted stably: all as pymoo's `calc_crowding_distance`,
    which this equals bit for bit when the weights are equal (pymoo's sum / n_obj is the
    equal-weight case; the unit weights are multiplied in as exact 1.0 so rounding agrees).
    """
    F = np.asarray(F, dtype=float)
    n, m = F.shape
    w = _check_weights(weights, m)
    if n <= 2:
        return np.full(n, np.inf)
    unit = np.ones(m) if np.all(w == w[0]) else w * (m / w.sum())

    order = np.argsort(F, axis=0, kind="mergesort")
    cols = np.arange(m)
    Fs = F[order, cols]
    # gaps between consecutive sorted values; the +-inf padding makes boundaries inf
    padded = np.vstack([np.full(m, -np.inf), Fs, np.full(m, np.inf)])
    gaps = np.diff(padded, axis=0)                                  # (n + 1, m)
    rng = (Fs.max(axis=0) - Fs.min(axis=0)) if scale is None else np.asarray(scale, float)
    rng = np.where(rng == 0, np.nan, rng)
    before, after = gaps[:-1] / rng, gaps[1:] / rng
    before[np.isnan(before)] = 0.0
    after[np.isnan(after)] = 0.0
    rank = np.argsort(order, axis=0)                                # back to input order
    per_obj = before[rank, cols] + after[rank, cols]                # (n, m)
    per_obj[:, w == 0] = 0.0                                        # ignored objective
    return np.sum(per_obj * unit, axis=1) / m


class WeightedCrowding(CrowdingDiversity):
    """pymoo crowding-metric object wrapping Eq. 5 (plugs into RankAndCrowding)."""

    def __init__(self, weights: Sequence[float]):
        super().__init__()
        self.weights = [float(x) for x in weights]
        self.scale: np.ndarray | None = None      # set per call for population normalisation

    def _do(self, F, n_remove=None):
        return weighted_crowding_distance(F, self.weights, scale=self.scale)


class WeightedRankAndCrowding(RankAndCrowding):
    """pymoo's RankAndCrowding (NSGA-II survival) with the weighted crowding distance."""

    def __init__(self, weights: Sequence[float], norm: str = "front", nds=None):
        if norm not in CROWDING_NORMS:
            raise ValueError(f"norm: expected one of {', '.join(CROWDING_NORMS)}, got {norm!r}")
        self.weighted = WeightedCrowding(weights)
        super().__init__(nds=nds, crowding_func=self.weighted)
        self.norm = norm

    def _do(self, problem, pop, *args, **kwargs):
        if self.norm == "population":
            F = pop.get("F").astype(float)
            self.weighted.scale = F.max(axis=0) - F.min(axis=0)
        try:
            return super()._do(problem, pop, *args, **kwargs)
        finally:
            self.weighted.scale = None


# ----------------------------------------------------------------------------- operators


def _n_choices(problem) -> np.ndarray:
    return np.round(problem.xu - problem.xl).astype(int) + 1


class IntegerUniformSampling(Sampling):
    """Each gene uniform in [0, n_i - 1]; rows redrawn until unique (when the space allows),
    so the initial population is the full size after pymoo's duplicate elimination."""

    def _do(self, problem, n_samples, *args, random_state=None, **kwargs):
        n = _n_choices(problem)
        X = np.floor(random_state.random((n_samples, len(n))) * n).astype(int)
        if math.prod(int(k) for k in n) >= n_samples:
            for _ in range(100):
                _, first = np.unique(X, axis=0, return_index=True)
                dup = np.setdiff1d(np.arange(n_samples), first)
                if len(dup) == 0:
                    break
                X[dup] = np.floor(random_state.random((len(dup), len(n))) * n).astype(int)
        return X


class OnePointCrossover(Crossover):
    """Single-point crossover: cut k uniform in 1..L-1; children p1[:k]+p2[k:], p2[:k]+p1[k:]."""

    def __init__(self, prob: float = 0.9, **kwargs):
        super().__init__(n_parents=2, n_offsprings=2, prob=prob, **kwargs)

    def _do(self, problem, X, *args, random_state=None, **kwargs):
        _, n_matings, L = X.shape
        if L < 2:
            return X.copy()
        cut = random_state.integers(1, L, size=n_matings)
        prefix = np.arange(L)[None, :] < cut[:, None]
        return np.stack([np.where(prefix, X[0], X[1]), np.where(prefix, X[1], X[0])])


class HierarchicalMutation(Mutation):
    """MoreMNAS/FairNAS-style hierarchical mutation (probabilities: see the module docstring).

    Per child: random reset with probability `random_prob`, else prior-regulated roulette
    wheel; in either branch each gene mutates with probability `gene_prob` (default 1/L).
    The prior is the smoothed frequency of each choice in the parents' non-dominated front
    (rank 0 of `algorithm.pop`); uniform before any front exists.
    """

    def __init__(self, random_prob: float = 0.5, gene_prob: float | None = None,
                 smoothing: float = 1.0, prob: float = 1.0, **kwargs):
        super().__init__(prob=prob, **kwargs)
        self.random_prob = random_prob
        self.gene_prob = gene_prob
        self.smoothing = smoothing

    def prior(self, n: np.ndarray, algorithm=None) -> list[np.ndarray]:
        """Per-gene choice probabilities from the current front (uniform if none)."""
        front = None
        pop = getattr(algorithm, "pop", None)
        if pop is not None and len(pop) > 0:
            try:
                rank = np.asarray(pop.get("rank"), dtype=float)   # None (unranked) -> nan
            except (TypeError, ValueError):
                rank = None
            if rank is not None and rank.shape == (len(pop),):
                front = pop.get("X")[rank == 0].astype(int)
        probs = []
        for i, k in enumerate(n):
            counts = np.full(k, float(self.smoothing))
            if front is not None and len(front):
                counts += np.bincount(front[:, i], minlength=k)[:k]
            if counts.sum() <= 0:
                counts = np.ones(k)
            probs.append(counts / counts.sum())
        return probs

    def _do(self, problem, X, *args, random_state=None, algorithm=None, **kwargs):
        X = np.asarray(X).astype(int)
        N, L = X.shape
        n = _n_choices(problem)
        p_gene = self.gene_prob if self.gene_prob is not None else 1.0 / L
        # all draws are made every time, whatever the branch, so the stream is fixed
        use_random = random_state.random(N) < self.random_prob
        mutate = random_state.random((N, L)) < p_gene
        u = random_state.random((N, L))
        reset = (X + 1 + np.floor(u * (n - 1)).astype(int)) % n        # another choice
        wheel = np.empty_like(X)
        for i, p in enumerate(self.prior(n, algorithm)):
            wheel[:, i] = np.minimum(np.searchsorted(np.cumsum(p), u[:, i], side="right"),
                                     n[i] - 1)
        new = np.where(use_random[:, None], reset, wheel)
        return np.where(mutate, new, X)


# ----------------------------------------------------------------------------- algorithm


@dataclass
class NSGAConfig:
    """Schema of the search config (defaults: the MoGA paper, budget=paper)."""

    pop_size: int = 70
    generations: int = 120                  # survival steps, counted as pymoo's n_gen
    init_pop_size: int | None = None        # null: 2 * pop_size (P0 u Q0 uniform, Alg. 1)
    # one weight per objective, in problem_fn's column order (-acc, latency, -params)
    weights: list[float] = field(default_factory=lambda: [0.4, 0.4, 0.2])
    crowding_norm: str = "front"            # "front" (pymoo) | "population" (paper's text)
    crossover_prob: float = 0.9
    mutation_prob: float = 1.0              # share of children that go through mutation
    random_mutation_prob: float = 0.5       # top level: random reset vs roulette wheel
    gene_mutation_prob: float | None = None  # null: 1 / number of genes
    prior_smoothing: float = 1.0            # roulette wheel: add-one counts
    n_front: int = 5                        # K architectures picked from the final front

    def __post_init__(self) -> None:
        require(self.pop_size >= 2, "pop_size", "an integer >= 2", self.pop_size)
        require(self.generations >= 1, "generations", "an integer >= 1", self.generations)
        require(self.init_pop_size is None or self.init_pop_size >= self.pop_size,
                "init_pop_size", f"null or an integer >= pop_size ({self.pop_size})",
                self.init_pop_size)
        w = list(self.weights)
        require(len(w) >= 1 and all(math.isfinite(x) and x >= 0 for x in w) and sum(w) > 0,
                "weights", "a list of values >= 0 with a sum > 0", w)
        require(self.crowding_norm in CROWDING_NORMS, "crowding_norm",
                f"one of {', '.join(CROWDING_NORMS)}", self.crowding_norm)
        for key in ("crossover_prob", "mutation_prob", "random_mutation_prob"):
            value = getattr(self, key)
            require(0 <= value <= 1, key, "a value in [0, 1]", value)
        require(self.gene_mutation_prob is None or 0 < self.gene_mutation_prob <= 1,
                "gene_mutation_prob", "null or a value in (0, 1]", self.gene_mutation_prob)
        require(self.prior_smoothing >= 0, "prior_smoothing", "a value >= 0",
                self.prior_smoothing)
        require(self.n_front >= 1, "n_front", "an integer >= 1", self.n_front)


class WeightedNSGA2(NSGA2):
    """pymoo NSGA2 whose initial sample may be larger than the population (Algorithm 1)."""

    def __init__(self, pop_size: int, init_pop_size: int | None = None, **kwargs):
        super().__init__(pop_size=pop_size, **kwargs)
        self.init_pop_size = pop_size if init_pop_size is None else init_pop_size

    def _initialize_infill(self):
        return self.initialization.do(self.problem, self.init_pop_size, algorithm=self,
                                      random_state=self.random_state)

    def _initialize_advance(self, infills=None, **kwargs):
        self.pop = self.survival.do(self.problem, infills,
                                    n_survive=min(self.pop_size, len(infills)),
                                    random_state=self.random_state, algorithm=self, **kwargs)


def make_operators(cfg: NSGAConfig) -> dict:
    """Sampling, crossover and mutation for `cfg` (shared with the pymoo parity test)."""
    return {"sampling": IntegerUniformSampling(),
            "crossover": OnePointCrossover(prob=cfg.crossover_prob),
            "mutation": HierarchicalMutation(random_prob=cfg.random_mutation_prob,
                                             gene_prob=cfg.gene_mutation_prob,
                                             smoothing=cfg.prior_smoothing,
                                             prob=cfg.mutation_prob)}


def make_algorithm(cfg: NSGAConfig) -> WeightedNSGA2:
    init = 2 * cfg.pop_size if cfg.init_pop_size is None else cfg.init_pop_size
    return WeightedNSGA2(pop_size=cfg.pop_size, init_pop_size=init,
                         survival=WeightedRankAndCrowding(cfg.weights, cfg.crowding_norm),
                         eliminate_duplicates=True, **make_operators(cfg))


class GenomeProblem(Problem):
    """Integer genome problem; objectives come from the run's cached evaluator `fn`."""

    def __init__(self, n_choices: Sequence[int], n_obj: int):
        n = np.asarray(n_choices, dtype=int)
        super().__init__(n_var=len(n), n_obj=n_obj, xl=np.zeros(len(n)), xu=n - 1.0,
                         vtype=int)
        self.fn: Callable[[np.ndarray], np.ndarray] | None = None

    def _evaluate(self, x, out, *args, **kwargs):
        out["F"] = self.fn(np.asarray(x).astype(int))


class EvalCache:
    """Genome tuple -> objective row; problem_fn only ever sees genomes not seen before."""

    def __init__(self, problem_fn, n_obj: int, table: dict | None = None):
        self.problem_fn, self.n_obj = problem_fn, n_obj
        self.table: dict[tuple, np.ndarray] = {} if table is None else table

    def __call__(self, X: np.ndarray) -> np.ndarray:
        keys = [tuple(int(g) for g in row) for row in X]
        new = list(dict.fromkeys(k for k in keys if k not in self.table))
        if new:
            F = np.asarray(self.problem_fn(np.array(new, dtype=int)), dtype=float)
            if F.shape != (len(new), self.n_obj):
                raise ValueError(f"problem_fn returned shape {F.shape}, expected "
                                 f"{(len(new), self.n_obj)}")
            for k, f in zip(new, F):
                self.table[k] = f.copy()
        return np.array([self.table[k] for k in keys], dtype=float).reshape(len(keys), -1)


# ----------------------------------------------------------------------------- results


@dataclass
class NSGAResult:
    """State of the search after `generation` generations."""

    generation: int
    X: np.ndarray               # (n, L) int, final population
    F: np.ndarray               # (n, n_obj), minimised objectives
    front_X: np.ndarray         # non-dominated members of the population, F sorted
    front_F: np.ndarray         # lexicographically (objective 0 first)
    picked: np.ndarray          # indices into front_*: n_front members, pick_equally_spaced
    n_evals: int                # unique genomes evaluated over the whole search


def non_dominated_front(X: np.ndarray, F: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rank-0 members of (X, F), sorted by F lexicographically (objective 0 first)."""
    F = np.asarray(F, dtype=float)
    idx = NonDominatedSorting().do(F, only_non_dominated_front=True)
    idx = np.asarray(idx)[np.lexsort(F[idx].T[::-1])]
    return np.asarray(X)[idx], F[idx]


def pick_equally_spaced(front_F: np.ndarray, k: int) -> np.ndarray:
    """K front members at equal spacing along the front's arc length.

    Objectives are scaled to [0, 1] over the front (a zero range scales to 0), members are
    ordered lexicographically (objective 0 first: for MoGA, accuracy), the polyline through
    them gives a cumulative arc length s, and for targets at k equal steps from 0 to the
    total (the midpoint when k == 1) the nearest not-yet-picked member is taken, so the
    two ends of the front are always picked for k >= 2. Returns indices into front_F,
    ordered along the front; all of them when k >= len(front_F).
    """
    F = np.asarray(front_F, dtype=float)
    if k < 1:
        raise ValueError(f"k: expected an integer >= 1, got {k!r}")
    n = len(F)
    order = np.lexsort(F.T[::-1]) if n else np.zeros(0, int)
    if k >= n:
        return order
    span = F.max(axis=0) - F.min(axis=0)
    Z = (F - F.min(axis=0)) / np.where(span == 0, 1.0, span)
    s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(Z[order], axis=0), axis=1))])
    targets = np.linspace(0.0, s[-1], k) if k > 1 else np.array([s[-1] / 2])
    taken: list[int] = []
    for t in targets:
        dist = np.abs(s - t)
        dist[taken] = np.inf
        taken.append(int(np.argmin(dist)))
    return order[np.sort(taken)]


def _result(algorithm, generation: int, cache: EvalCache, n_front: int) -> NSGAResult:
    X = algorithm.pop.get("X").astype(int)
    F = algorithm.pop.get("F").astype(float)
    front_X, front_F = non_dominated_front(X, F)
    return NSGAResult(generation=generation, X=X, F=F, front_X=front_X, front_F=front_F,
                      picked=pick_equally_spaced(front_F, n_front), n_evals=len(cache.table))


# ----------------------------------------------------------------------------- driver


def _fingerprint(cfg: NSGAConfig, n_choices: Sequence[int], n_obj: int, seed: int) -> dict:
    """What a resumed search must share with the saved one (generations and n_front may
    change: resuming with more generations extends the search)."""
    d = asdict(cfg)
    d.pop("generations")
    d.pop("n_front")
    d["weights"] = [float(x) for x in d["weights"]]
    d["n_choices"] = [int(k) for k in n_choices]
    d["n_obj"] = int(n_obj)
    d["seed"] = int(seed)
    return d


# ----------------------------------------------------------------------------- state file
#
# JSON, so that reading it cannot run code: everything the next generation depends on is
# plain data. The population (genomes in order, with the rank and crowding distance the
# tournament reads), the evaluation cache (its objectives give the population its F), the
# random generator's state and pymoo's counters; the algorithm object is rebuilt from the
# config and these are put back into it.


def _state(algorithm, cache: EvalCache, generation: int, fingerprint: dict) -> dict:
    pop = algorithm.pop
    return {"version": STATE_VERSION, "fingerprint": fingerprint, "generation": generation,
            "n_iter": int(algorithm.n_iter), "n_eval": int(algorithm.evaluator.n_eval),
            "rng": algorithm.random_state.bit_generator.state,
            "X": pop.get("X").astype(int).tolist(),
            "rank": [int(r) for r in pop.get("rank")],
            "crowding": [float(c) for c in pop.get("crowding")],
            "cache": [[list(k), [float(f) for f in v]] for k, v in cache.table.items()]}


def _save(path: Path, state: dict) -> None:
    write_text_atomic(path, json.dumps(state) + "\n")


def _load(path: Path, fingerprint: dict) -> dict:
    """The saved state, checked; one-line ConfigError for a file that is not one."""
    restart = "delete it to start the search again"
    try:
        state = json.loads(path.read_text())
        if not isinstance(state, dict):
            raise ValueError("not a JSON object")
        saved = state.get("fingerprint") or {}
        if state.get("version") != STATE_VERSION or saved != fingerprint:
            diff = sorted(k for k in set(saved) | set(fingerprint)
                          if saved.get(k) != fingerprint.get(k))
            raise ConfigError(f"{path}: saved search differs from this one in "
                              f"{', '.join(diff) or 'version'}; use another state path")
        X = np.asarray(state["X"], dtype=int)
        n = len(X)
        if X.ndim != 2 or X.shape[1] != len(fingerprint["n_choices"]) or \
                len(state["rank"]) != n or len(state["crowding"]) != n:
            raise ValueError("population arrays of different lengths")
        state["cache"] = {tuple(int(g) for g in k): np.asarray(v, dtype=float)
                          for k, v in state["cache"]}
        missing = [x for x in X.tolist() if tuple(x) not in state["cache"]]
        if missing:
            raise ValueError(f"population member {missing[0]} has no saved objectives")
        int(state["generation"]), int(state["n_iter"]), int(state["n_eval"])
        dict(state["rng"])
    except ConfigError:
        raise
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as e:
        reason = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
        raise ConfigError(f"{path}: not a readable NSGA-II state file ({reason}); "
                          f"{restart}") from None
    return state


def _restore(algorithm, problem: GenomeProblem, state: dict) -> None:
    """Put a set-up algorithm into the saved state (the population's objectives come from
    problem.fn, the cache restored with the state, so problem_fn is not called)."""
    pop = Population.new("X", np.asarray(state["X"], dtype=int))
    algorithm.evaluator.eval(problem, pop, algorithm=algorithm)
    pop.set("rank", np.asarray(state["rank"], dtype=int),
            "crowding", np.asarray(state["crowding"], dtype=float))
    algorithm.pop, algorithm.is_initialized = pop, True
    algorithm.n_iter = int(state["n_iter"])
    algorithm.evaluator.n_eval = int(state["n_eval"])
    algorithm.random_state.bit_generator.state = state["rng"]
    algorithm._set_optimum()


def run_nsga(problem_fn: Callable[[np.ndarray], np.ndarray], n_choices: list[int], n_obj: int,
             cfg: NSGAConfig, seed: int, state_path: Path | None = None,
             on_generation: Callable[[NSGAResult], None] | None = None) -> NSGAResult:
    """Run (or resume) the weighted NSGA-II for cfg.generations generations.

    problem_fn(genomes (N, L) int) -> (N, n_obj) objectives to minimise; it is called once
    per generation with only the genomes never evaluated before. After every generation the
    whole state (population, evaluation cache, random generator, counters) is written
    atomically to `state_path` as JSON; if that file exists the search resumes from it, and
    ends exactly as an uninterrupted run with the same config would. `on_generation` gets
    the NSGAResult of each generation, after the state is saved.
    """
    n_choices = [int(k) for k in n_choices]
    if not n_choices or min(n_choices) < 1:
        raise ValueError(f"n_choices: expected a non-empty list of integers >= 1, got {n_choices}")
    if len(cfg.weights) != n_obj:
        raise ConfigError(f"weights: expected {n_obj} values (one per objective), "
                          f"got {list(cfg.weights)!r}")
    state_path = Path(state_path) if state_path is not None else None
    fingerprint = _fingerprint(cfg, n_choices, n_obj, seed)

    state = (_load(state_path, fingerprint)
             if state_path is not None and state_path.exists() else None)
    cache = EvalCache(problem_fn, n_obj, state["cache"] if state is not None else None)
    problem = GenomeProblem(n_choices, n_obj)
    problem.fn = cache
    algorithm = make_algorithm(cfg)
    algorithm.setup(problem, termination=NoTermination(), seed=seed, verbose=False)
    generation = 0
    if state is not None:
        _restore(algorithm, problem, state)
        generation = int(state["generation"])

    while generation < cfg.generations:
        infills = algorithm.ask()
        if infills is None or len(infills) == 0:     # search space exhausted
            break
        algorithm.evaluator.eval(problem, infills, algorithm=algorithm)
        algorithm.tell(infills=infills)
        generation += 1
        if state_path is not None:
            _save(state_path, _state(algorithm, cache, generation, fingerprint))
        if on_generation is not None:
            on_generation(_result(algorithm, generation, cache, cfg.n_front))
    return _result(algorithm, generation, cache, cfg.n_front)
