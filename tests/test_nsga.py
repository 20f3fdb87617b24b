"""MoGA weighted NSGA-II: Eq. 5, parity with pymoo's NSGA-II, cache, resume, config, operators."""

from __future__ import annotations

import numpy as np
import pytest
from pymoo.algorithms.moo.nsga2 import NSGA2
from pymoo.core.population import Population
from pymoo.operators.survival.rank_and_crowding import RankAndCrowding
from pymoo.operators.survival.rank_and_crowding.metrics import calc_crowding_distance
from pymoo.optimize import minimize

from nas.config import ConfigError, check
from nas.methods.moga.nsga import (
    GenomeProblem,
    HierarchicalMutation,
    IntegerUniformSampling,
    NSGAConfig,
    OnePointCrossover,
    WeightedRankAndCrowding,
    make_operators,
    pick_equally_spaced,
    run_nsga,
    weighted_crowding_distance,
)

# A 5-point, 3-objective front (all mutually non-dominated):
#        obj0 obj1 obj2
#   A     0   10    4
#   B     1    6    3
#   C     2    5    0
#   D     4    2    2
#   E     5    0    5
# ranges: obj0 5, obj1 10, obj2 5.  Sorted orders: obj0 A B C D E, obj1 E D C B A,
# obj2 C D B A E.  Boundaries (first/last of some order): A, E, C -> inf.
# Interior B: obj0 (C-A) = (2-0)/5 = 0.4, obj1 (A-C) = (10-5)/10 = 0.5, obj2 (A-D) = (4-2)/5 = 0.4
# Interior D: obj0 (E-C) = (5-2)/5 = 0.6, obj1 (C-E) = (5-0)/10 = 0.5, obj2 (B-C) = (3-0)/5 = 0.6
# Eq. 5 with w = (0.4, 0.4, 0.2):  B = .16 + .20 + .08 = 0.44,  D = .24 + .20 + .12 = 0.56
# equal weights (1/3 each):        B = 1.3 / 3,                 D = 1.7 / 3
FRONT = np.array([[0, 10, 4], [1, 6, 3], [2, 5, 0], [4, 2, 2], [5, 0, 5]], dtype=float)


def test_weighted_crowding_hand_computed():
    d = weighted_crowding_distance(FRONT, [0.4, 0.4, 0.2])
    assert np.isinf(d[[0, 2, 4]]).all()
    assert d[[1, 3]] == pytest.approx([0.44, 0.56], abs=1e-12)
    # weights are normalised: (2, 2, 1) is the same preference
    assert weighted_crowding_distance(FRONT, [2, 2, 1])[[1, 3]] == pytest.approx([0.44, 0.56])
    assert weighted_crowding_distance(FRONT, [1, 1, 1])[[1, 3]] == pytest.approx([1.3 / 3, 1.7 / 3])
    # a zero weight drops the objective, its boundary inf included: C is interior in obj0
    # (B..D: (4-1)/5 = 0.6), B 0.4, D 0.6; only A and E stay boundaries
    d0 = weighted_crowding_distance(FRONT, [1, 0, 0])
    assert np.isinf(d0[[0, 4]]).all() and d0[[1, 2, 3]] == pytest.approx([0.4, 0.6, 0.6])
    # an external range (population normalisation): twice the range halves the interior
    dp = weighted_crowding_distance(FRONT, [0.4, 0.4, 0.2], scale=np.array([10, 20, 10.0]))
    assert dp[[1, 3]] == pytest.approx([0.22, 0.28])
    # fronts of one or two members are all boundary
    assert np.isinf(weighted_crowding_distance(FRONT[:2], [0.4, 0.4, 0.2])).all()


def test_equal_weights_match_pymoo_crowding_bit_for_bit():
    # Exact on purpose, and portable: with equal weights weighted_crowding_distance runs the
    # same numpy operations as pymoo's calc_crowding_distance on arrays of the same shape and
    # layout (elementwise ops are correctly rounded on every CPU; the one rounding reduction,
    # a row sum over the m objectives, is the same call on both sides). Bit equality is what
    # test_equal_weights_reproduce_pymoo_nsga2 needs: NSGA-II breaks crowding ties by value.
    rng = np.random.default_rng(0)
    for _ in range(200):   # integer objectives: ties, duplicates and zero ranges included
        F = rng.integers(0, 4, size=(int(rng.integers(3, 12)), 3)).astype(float)
        assert np.array_equal(weighted_crowding_distance(F, [1, 1, 1]), calc_crowding_distance(F))
        F = rng.random((9, 3))
        assert np.array_equal(weighted_crowding_distance(F, [0.1] * 3), calc_crowding_distance(F))


# Crafted so that the weights flip the order of the two interior points D and E:
#        obj0 obj1 obj2      ranges 9, 4, 7; boundaries A, B, C
#   A     0    7    9
#   B     9    4    8
#   C     6    8    2
#   D     4    6    3       gaps 6/9, 2/4, 2/7
#   E     8    5    4       gaps 3/9, 2/4, 5/7
# equal:    D = (6/9 + 1/2 + 2/7)/3 = 61/126 = 0.484 <  E = (3/9 + 1/2 + 5/7)/3 = 65/126 = 0.516
# weighted: D = .4*6/9 + .4/2 + .2*2/7 = 11/21 = 0.524 >  E = .4*3/9 + .4/2 + .2*5/7 = 10/21 = 0.476
FLIP = np.array([[0, 7, 9], [9, 4, 8], [6, 8, 2], [4, 6, 3], [8, 5, 4]], dtype=float)


def test_weights_change_the_ordering_and_the_survivors():
    eq = weighted_crowding_distance(FLIP, [1, 1, 1])
    w = weighted_crowding_distance(FLIP, [0.4, 0.4, 0.2])
    assert eq[[3, 4]] == pytest.approx([61 / 126, 65 / 126])
    assert w[[3, 4]] == pytest.approx([11 / 21, 10 / 21])
    # survival of 4 out of the front: NSGA-II drops D, the weighted version drops E
    problem = GenomeProblem([10, 10, 10], 3)
    for survival, dropped in ((RankAndCrowding(), 3),
                              (WeightedRankAndCrowding([1, 1, 1]), 3),
                              (WeightedRankAndCrowding([0.4, 0.4, 0.2]), 4)):
        pop = Population.new("X", FLIP.astype(int), "F", FLIP)
        kept = survival.do(problem, pop, n_survive=4, random_state=np.random.default_rng(0))
        kept_rows = {tuple(x) for x in kept.get("X")}
        assert tuple(FLIP[dropped].astype(int)) not in kept_rows and len(kept_rows) == 4


N_CHOICES = [4, 3, 5, 4, 6, 3, 4, 5]
W = np.arange(1, len(N_CHOICES) + 1, dtype=float)


def objectives(X: np.ndarray) -> np.ndarray:
    """Integer-valued, conflicting objectives (many ties, so duplicates get exercised)."""
    X = X.astype(float)
    return np.stack([-(X * W).sum(1), (X ** 2).sum(1) + 3 * (X[:, 0] == 2),
                     -np.abs(X - 2).sum(1)], axis=1)


@pytest.mark.parametrize("seed, weights", [(0, [1, 1, 1]), (7, [0.2, 0.2, 0.2])])
def test_equal_weights_reproduce_pymoo_nsga2(seed, weights):
    cfg = NSGAConfig(pop_size=20, generations=10, init_pop_size=20, weights=weights)
    ours = run_nsga(objectives, N_CHOICES, 3, cfg, seed=seed, state_path=None)

    problem = GenomeProblem(N_CHOICES, 3)
    problem.fn = objectives
    ref = minimize(problem, NSGA2(pop_size=20, eliminate_duplicates=True, **make_operators(cfg)),
                   ("n_gen", 10), seed=seed)
    assert ours.generation == 10 == ref.algorithm.n_gen - 1
    assert np.array_equal(ours.X, ref.pop.get("X").astype(int))
    assert np.array_equal(ours.F, ref.pop.get("F"))


def test_duplicate_genomes_are_evaluated_once():
    seen: list[tuple] = []

    def counted(X):
        seen.extend(tuple(x) for x in X)
        return objectives(np.pad(X, ((0, 0), (0, len(N_CHOICES) - X.shape[1]))))

    cfg = NSGAConfig(pop_size=8, generations=25, weights=[0.4, 0.4, 0.2])
    res = run_nsga(counted, [3, 3, 3], 3, cfg, seed=1, state_path=None)   # only 27 genomes exist
    assert len(seen) == len(set(seen)) == res.n_evals <= 27
    assert res.n_evals < 2 * 8 + 24 * 8          # the cache did absorb repeats
    assert len({tuple(x) for x in res.X}) == len(res.X)


class Killed(Exception):
    pass


def test_resume_after_kill_matches_uninterrupted_run(tmp_path):
    cfg = NSGAConfig(pop_size=16, generations=10)
    straight = run_nsga(objectives, N_CHOICES, 3, cfg, seed=5, state_path=tmp_path / "a.json")

    calls = []

    def counted(X):
        calls.append(len(X))
        return objectives(X)

    def kill_after_4(r):
        if r.generation == 4:
            raise Killed

    state = tmp_path / "b.json"
    with pytest.raises(Killed):
        run_nsga(counted, N_CHOICES, 3, cfg, seed=5, state_path=state, on_generation=kill_after_4)
    gens = []
    resumed = run_nsga(counted, N_CHOICES, 3, cfg, seed=5, state_path=state,
                       on_generation=lambda r: gens.append(r.generation))
    assert gens == list(range(5, 11))
    for name in ("X", "F", "front_X", "front_F", "picked"):
        assert np.array_equal(getattr(resumed, name), getattr(straight, name)), name
    # the cache came back with the state: nothing evaluated twice across the kill
    assert sum(calls) == resumed.n_evals == straight.n_evals

    # a shorter run extended later also ends at the same place
    short = NSGAConfig(pop_size=16, generations=4)
    run_nsga(objectives, N_CHOICES, 3, short, seed=5, state_path=tmp_path / "c.json")
    extended = run_nsga(objectives, N_CHOICES, 3, cfg, seed=5, state_path=tmp_path / "c.json")
    assert np.array_equal(extended.X, straight.X) and np.array_equal(extended.F, straight.F)

    # a finished state returns without evaluating anything
    again = run_nsga(lambda X: pytest.fail("evaluated"), N_CHOICES, 3, cfg, seed=5,
                     state_path=state)
    assert np.array_equal(again.X, straight.X)

    # another search's state is refused
    with pytest.raises(ConfigError, match=r"saved search differs from this one in seed") as e:
        run_nsga(objectives, N_CHOICES, 3, NSGAConfig(pop_size=16), seed=6, state_path=state)
    assert "\n" not in str(e.value)


def test_a_damaged_state_file_is_one_line(tmp_path):
    cfg = NSGAConfig(pop_size=16, generations=3)
    state = tmp_path / "state.json"
    run_nsga(objectives, N_CHOICES, 3, cfg, seed=5, state_path=state)
    text = state.read_text()
    for damaged in (text[: len(text) // 2], "[1, 2]", text.replace('"rank"', '"rnak"'),
                    b"\x80\x04\x95 a pickle"):
        if isinstance(damaged, bytes):
            state.write_bytes(damaged)
        else:
            state.write_text(damaged)
        with pytest.raises(ConfigError, match=r"state\.json: not a readable NSGA-II state file "
                                              r"\(.*\); delete it to start the search again$"):
            run_nsga(lambda X: pytest.fail("evaluated"), N_CHOICES, 3, cfg, seed=5,
                     state_path=state)


def test_result_front_and_equally_spaced_picks():
    cfg = NSGAConfig(pop_size=20, generations=5, n_front=3)
    res = run_nsga(objectives, N_CHOICES, 3, cfg, seed=2, state_path=None)
    assert np.array_equal(res.front_F, objectives(res.front_X))
    assert np.array_equal(np.lexsort(res.front_F.T[::-1]), np.arange(len(res.front_F)))
    assert len(res.picked) == min(3, len(res.front_F))

    line = np.stack([np.arange(11.0), 10 - np.arange(11.0)], axis=1)[::-1]   # unsorted input
    assert sorted(line[pick_equally_spaced(line, 3), 0]) == [0, 5, 10]
    assert len(pick_equally_spaced(line, 20)) == 11
    # crowded left end: spacing follows the arc, not the member count
    bunched = np.array([[0, 10], [0.1, 9.9], [0.2, 9.8], [0.3, 9.7], [5, 5], [10, 0.0]])
    assert list(pick_equally_spaced(bunched, 3)) == [0, 4, 5]


@pytest.mark.parametrize("cfg, match", [
    ({"weights": [0.5, -0.1, 0.6]}, r"^search\.weights: expected a list of values >= 0 with a"),
    ({"weights": [0, 0, 0]}, r"^search\.weights: expected a list of values >= 0 with a sum > 0"),
    ({"pop_size": 1}, r"^search\.pop_size: expected an integer >= 2, got 1$"),
    ({"pop_size": "many"}, r"^search\.pop_size: "),
    ({"init_pop_size": 10}, r"^search\.init_pop_size: expected null or an integer >= pop_size"),
    ({"crossover_prob": 1.5}, r"^search\.crossover_prob: expected a value in \[0, 1\]"),
    ({"crowding_norm": "global"}, r"^search\.crowding_norm: expected one of front, population"),
    ({"gene_mutation_prob": 0}, r"^search\.gene_mutation_prob: expected null or a value in"),
    ({"popsize": 70}, r"^search\.popsize: not a search option; expected one of: pop_size"),
])
def test_config_errors_are_one_line(cfg, match):
    with pytest.raises(ConfigError, match=match) as e:
        check(NSGAConfig, cfg, "search")
    assert "\n" not in str(e.value)


def test_config_defaults_are_the_paper_and_weights_must_match_objectives():
    cfg = check(NSGAConfig, {}, "search")
    assert (cfg.pop_size, cfg.generations, list(cfg.weights)) == (70, 120, [0.4, 0.4, 0.2])
    with pytest.raises(ConfigError, match=r"^weights: expected 2 values") as e:
        run_nsga(objectives, N_CHOICES, 2, cfg, seed=0, state_path=None)
    assert "\n" not in str(e.value)


def test_operators_keep_genes_in_range():
    rng = np.random.default_rng(0)
    n = np.array(N_CHOICES)
    problem = GenomeProblem(N_CHOICES, 3)
    X = IntegerUniformSampling()._do(problem, 200, random_state=rng)
    assert X.shape == (200, len(n)) and (X >= 0).all() and (X < n).all()
    assert len(np.unique(X, axis=0)) == 200

    parents = np.stack([X[:100], X[100:]])
    kids = OnePointCrossover()._do(problem, parents, random_state=rng)
    assert (kids >= 0).all() and (kids < n).all()
    for p0, p1, c0, c1 in zip(parents[0], parents[1], kids[0], kids[1]):
        cuts = [k for k in range(1, len(n)) if np.array_equal(c0, np.r_[p0[:k], p1[k:]])
                and np.array_equal(c1, np.r_[p1[:k], p0[k:]])]
        assert cuts, (p0, p1, c0, c1)

    # random reset on every gene: each gene changes, and stays in range
    every = HierarchicalMutation(random_prob=1.0, gene_prob=1.0)._do(problem, X, random_state=rng)
    assert (every != X).all() and (every >= 0).all() and (every < n).all()

    # roulette wheel without smoothing draws only what the front holds
    class Alg:
        pop = Population.new("X", np.full((4, len(n)), 2), "rank", np.zeros(4))
    wheel = HierarchicalMutation(random_prob=0.0, gene_prob=1.0, smoothing=0.0)
    assert (wheel._do(problem, X, random_state=rng, algorithm=Alg()) == 2).all()

    # defaults: about one gene per child, always in range
    mixed = HierarchicalMutation()._do(problem, X, random_state=rng, algorithm=Alg())
    assert (mixed >= 0).all() and (mixed < n).all()
    assert 0.5 < (mixed != X).sum(1).mean() < 1.5
