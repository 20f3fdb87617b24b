"""ReXNet's channel search: the parameterisation, the constraints, seeded sampling, the
report's grouping, and the search end to end (smoke), resumed and trained."""

import csv
import json
import shlex
import shutil

import pytest
from omegaconf import OmegaConf

from conftest import REPO
from nas.config import ConfigError, check
from nas.methods.rexnet.search import ReXNetConfig
from nas.methods.rexnet.report import rank_groups, summarize
from nas.methods.rexnet.space import (Candidate, ChannelSpace, Constraints, SpaceConfig, fit,
                                      nonlinearity)
from nas.seeding import derived_seed

# Table 3: the best configuration of each search, and the worst of (a) (the others are
# printed with fewer widths than blocks).
TABLE3_BEST = {
    "a": [34, 34, 45, 55, 66],
    "b": [24, 33, 42, 50, 59, 68, 77, 85, 94],
    "c": [30, 45, 59, 74, 88, 103, 117, 132, 146],
    "d": [34, 34, 34, 40, 64, 88, 112, 136, 160, 184, 208, 232, 256],
}


def _setting(name: str) -> ReXNetConfig:
    """The method config of experiments/rexnet_cifar100_<name>.yaml."""
    base = OmegaConf.load(REPO / "conf" / "method" / "rexnet.yaml")
    overlay = OmegaConf.load(REPO / "experiments" / f"rexnet_cifar100_{name}.yaml")
    merged = OmegaConf.merge(base, overlay.get("method") or {})
    merged.pop("_target_")
    merged.pop("defaults")      # its optimizer: the schema's default is conf/optim/sgd_cosine
    return check(ReXNetConfig, merged, "method")


def _space(cfg: ReXNetConfig) -> ChannelSpace:
    return ChannelSpace(cfg.space, cfg.constraints, num_classes=100, input_size=32)


@pytest.mark.parametrize("name", sorted(TABLE3_BEST))
def test_table3_best_configurations_are_reachable_and_within_their_budgets(name):
    cfg = _setting(name)
    widths = TABLE3_BEST[name]
    cand = fit(widths)
    assert cand.widths() == widths
    assert cand.breakpoints[0] == 1 and cand.breakpoints[-1] == len(widths)
    # linear growth needs few breakpoints: (b) and (c) are one straight line
    assert len(cand.breakpoints) <= {"a": 3, "b": 2, "c": 2, "d": 4}[name]
    space = _space(cfg)
    assert space.rejects(cand) is None
    cost = space.cost(widths)
    paper_params = {"a": 0.2e6, "b": 0.5e6, "c": 1.0e6, "d": 3.0e6}[name]
    assert round(cost.params / 1e6, 1) == pytest.approx(paper_params / 1e6)  # Table 3 "0.2 M"


def test_widths_follow_a_f_plus_b_rounded_half_up():
    cand = Candidate((1, 3, 5), (0.0, 0.25, 1.0), a=40.0, b=10.0)
    assert cand.f() == [0.0, 0.125, 0.25, 0.625, 1.0]
    assert cand.widths() == [10, 15, 20, 35, 50]
    # 76.5 rounds up (Python's round would give 76): Table 3 (b)'s 7th width
    assert Candidate((1, 9), (0.0, 1.0), a=70.0, b=24.0).widths()[6] == 77


def test_sampled_widths_are_non_decreasing_and_deterministic_from_the_seed():
    cfg = _setting("b")
    space = _space(cfg)
    first, counts = space.sample(30, seed=3)
    again, _ = space.sample(30, seed=3)
    other, _ = space.sample(30, seed=4)
    assert [c.widths() for c in first] == [c.widths() for c in again]
    assert [c.widths() for c in first] != [c.widths() for c in other]
    assert counts["kept"] == 30 and sum(counts.values()) > 30
    for cand in first:
        w = cand.widths()
        assert all(x <= y for x, y in zip(w, w[1:])), w
        assert cand.knots[0] == 0.0 and cand.knots[-1] == 1.0
        assert list(cand.knots) == sorted(cand.knots)
        assert space.rejects(cand) is None
    assert len({tuple(c.widths()) for c in first}) == 30
    # various shapes: some with interior breakpoints, some straight lines
    assert {len(c.breakpoints) for c in first} >= {2, 3}


def test_constraints_reject_from_the_analytic_cost_without_building(monkeypatch):
    import nas.arch.builder

    def no_build(*args, **kwargs):
        raise AssertionError("a module was built")

    monkeypatch.setattr(nas.arch.builder, "build", no_build)
    space = _space(_setting("a"))   # params ~ 0.2 M +- 15 %, MACs ~ 30 M +- 15 %
    assert space.rejects(fit([34, 34, 45, 55, 66])) is None
    assert space.rejects(fit([60, 60, 80, 90, 120])) == "over"     # too large
    assert space.rejects(fit([16, 16, 20, 20, 24])) == "under"     # far below both budgets
    assert space.rejects(fit([4, 34, 45, 55, 70])) == "narrow"     # below min_width 8
    cost = space.cost([60, 60, 80, 90, 120])
    assert max(cost.params / 2e5, cost.macs / 3e7) > 1.15
    space.sample(5, seed=0)


# Eq. 1 exactly (constraint=le) against Table 3's best configurations at the overlays' fitted
# last-layer width (640) and strides: (a)-(c) exceed their params budgets by 12.3, 3.1 and
# 0.9 %; (d) is within both (2.97 M <= 3.0 M, 329 M <= its overlay's 350 M MACs).
TABLE3_SATISFIES_EQ1 = {"a": False, "b": False, "c": False, "d": True}


@pytest.mark.parametrize("name", sorted(TABLE3_BEST))
def test_eq1_le_against_the_band(name):
    cfg = _setting(name)
    cand = fit(TABLE3_BEST[name])
    le = ChannelSpace(cfg.space, cfg.constraints, num_classes=100, input_size=32, rule="le")
    band = ChannelSpace(cfg.space, cfg.constraints, num_classes=100, input_size=32, rule="band")
    assert band.rejects(cand) is None
    assert le.rejects(cand) == (None if TABLE3_SATISFIES_EQ1[name] else "over")
    cost = le.cost(TABLE3_BEST[name])
    meets = cost.params <= cfg.constraints.params and cost.macs <= cfg.constraints.macs
    assert meets == TABLE3_SATISFIES_EQ1[name]
    # every candidate `le` keeps is within Eq. 1, and uses its tighter budget to >= 85 %
    for kept in le.sample(5, seed=0)[0]:
        c = le.cost(kept.widths())
        assert c.params <= cfg.constraints.params and c.macs <= cfg.constraints.macs
        assert cfg.constraints.fill(c) >= 1 - cfg.constraints.tolerance


def test_budget_paper_is_the_papers_protocol():
    from hydra import compose, initialize_config_dir

    from nas.config import CONF_DIR

    with initialize_config_dir(str(CONF_DIR), version_base=None):
        paper = compose("search", ["+experiment=rexnet_cifar100_a"])
        demo = compose("search", ["method=rexnet"])
    assert (paper.method.constraint, paper.method.rank_by) == ("le", "best")
    assert (demo.method.constraint, demo.method.rank_by) == ("band", "final")
    with pytest.raises(ConfigError, match="method.constraint: expected le or band"):
        check(ReXNetConfig, {"constraint": "lt"}, "method")
    with pytest.raises(ConfigError, match="method.rank_by: expected best or final"):
        check(ReXNetConfig, {"rank_by": "mean"}, "method")


@pytest.mark.parametrize("rank_by, winner", [("final", "c001"), ("best", "c000")])
def test_rank_by_best_or_final(rank_by, winner, tmp_path):
    """c000 peaked early (best 0.95, final 0.90); c001 ended higher (best 0.93, final 0.92)."""
    from types import SimpleNamespace

    from nas.methods.rexnet.search import ReXNetSearch

    cfg = check(ReXNetConfig, {"repeats": 1, "group_fraction": 1 / 3, "rank_by": rank_by},
                "method")
    space = ChannelSpace(cfg.space, cfg.constraints, num_classes=10, input_size=32)
    trained = {"c000": (0.95, 0.90), "c001": (0.93, 0.92), "c002": (0.80, 0.80)}
    rows = [{"id": cid, "widths": [16, 16, 24, 24, 32], "breakpoints": [1, 5], "a": 16, "b": 16,
             "params": 1000, "macs": 10, "fill": 1.0, "nonlinearity": 0.1} for cid in trained]
    results = {f"{cid}_r0": {"best_val_top1": b, "final_val_top1": f, "test_top1": 0.5}
               for cid, (b, f) in trained.items()}
    search = ReXNetSearch(cfg)
    result = search._result(SimpleNamespace(run_dir=tmp_path), space, rows, results, {})
    ranked = {r["id"]: r for r in _csv(tmp_path / "candidates.csv")}
    assert ranked[winner]["rank"] == "1" and result.metrics["rank_by"] == rank_by
    assert float(ranked["c000"]["accuracy"]) == (0.95 if rank_by == "best" else 0.90)
    results["c002_r0"]["best_val_top1"] = None
    if rank_by == "best":
        with pytest.raises(ConfigError, match="c002_r0 recorded no best validation top-1"):
            search._result(SimpleNamespace(run_dir=tmp_path), space, rows, results, {})


def test_impossible_constraints_are_one_config_error():
    space = ChannelSpace(SpaceConfig(max_width=16), Constraints(params=1e7, macs=1e9),
                         num_classes=10, input_size=32)
    with pytest.raises(ConfigError, match="only 0 of 3 candidates met the constraints"):
        space.sample(3, seed=0, max_draws=200)


def test_nonlinearity():
    assert nonlinearity([10, 20, 30, 40]) == pytest.approx(0.0, abs=1e-12)
    assert nonlinearity([16, 16, 16, 16]) == pytest.approx(0.0, abs=1e-12)
    # the least-squares line 27 i - 35 leaves 18, -9, -36, 27; the mean width is 32.5
    assert nonlinearity([10, 10, 10, 100]) == pytest.approx(
        ((18 ** 2 + 9 ** 2 + 36 ** 2 + 27 ** 2) / 4) ** 0.5 / 32.5)


def _rows(accs):
    return [{"id": f"c{i:02d}", "accuracy": a, "params": 1000 + i, "macs": 10 * i,
             "widths": [i + 1, 40 - i], "nonlinearity": 0.01 * i} for i, a in enumerate(accs)]


def test_groups_of_a_hand_made_table():
    # 20 candidates, accuracy falling with the index except two swaps
    accs = [0.9 - 0.01 * i for i in range(20)]
    accs[0], accs[1] = accs[1], accs[0]
    accs[10], accs[11] = accs[11], accs[10]
    groups = rank_groups(accs, 0.1)
    assert groups == {"top": [1, 0], "middle": [11, 10], "bottom": [18, 19]}
    report = summarize(_rows(accs), 0.1)
    top = report["groups"]["top"]
    assert top["ids"] == ["c01", "c00"]
    assert top["accuracy"]["mean"] == pytest.approx(0.895)
    assert top["accuracy"]["std"] == pytest.approx(0.005)
    assert top["widths_mean"] == [1.5, 39.5] and top["widths_std"] == [0.5, 0.5]
    assert report["groups"]["bottom"]["params"]["mean"] == pytest.approx(1018.5)
    assert report["best"]["id"] == "c01" and report["worst"]["id"] == "c19"
    # accuracy falls with the index except two swaps: rho = 1 - 6 * 4 / (20 * 399)
    assert report["spearman"]["nonlinearity"] == pytest.approx(-(1 - 24 / 7980))
    assert report["spearman"]["first_over_last"] == pytest.approx(-(1 - 24 / 7980))
    # ties keep the candidates' order; a group holds at least one
    assert rank_groups([0.5, 0.5, 0.5], 0.1) == {"top": [0], "middle": [1], "bottom": [2]}


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, run_entry):
    """`nas.search method=rexnet budget=smoke` with two parallel joblib trainings."""
    tmp = tmp_path_factory.mktemp("rexnet")
    proc = run_entry("nas.search", tmp, "method=rexnet", "budget=smoke", "method.candidates=3",
                     "method.evaluator.backend=hydra", "method.evaluator.launcher=joblib",
                     "method.evaluator.jobs=2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp / "run", proc.stdout + proc.stderr


def _csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_smoke_search_writes_its_outputs(smoke_run):
    run, out = smoke_run
    rows = _csv(run / "candidates.csv")
    assert [r["id"] for r in rows] == ["c000", "c001", "c002"]
    for row in rows:
        widths = [int(w) for w in row["widths"].split("-")]
        assert widths == sorted(widths) and len(widths) == 5
        vals = [float(row["val_r0"]), float(row["val_r1"])]
        assert float(row["accuracy"]) == pytest.approx(sum(vals) / 2, abs=1e-5)
        for r in range(2):
            metrics = json.loads((run / "trainings" / f"{row['id']}_r{r}" /
                                  "metrics.json").read_text())
            assert metrics["final_val_top1"] == pytest.approx(float(row[f"val_r{r}"]),
                                                              abs=1e-5)
            assert metrics["params"] == int(row["params"])
    # repeat r trains with the seed derived from (0, r), in a joblib multirun job
    metrics = json.loads((run / "trainings" / "c001_r1" / "metrics.json").read_text())
    assert metrics["seed"] == derived_seed(0, 1)
    job = OmegaConf.load(run / "trainings" / "c001_r1" / ".hydra" / "config.yaml")
    assert job.job == "c001_r1" and job.budget.name == "smoke"
    hydra = OmegaConf.load(run / "trainings" / "c001_r1" / ".hydra" / "hydra.yaml").hydra
    assert hydra.runtime.choices["hydra/launcher"] == "joblib" and hydra.launcher.n_jobs == 2
    report = json.loads((run / "report.json").read_text())
    assert set(report["groups"]) == {"top", "middle", "bottom"}
    result = json.loads((run / "result.json").read_text())
    best = min(rows, key=lambda r: int(r["rank"]))
    assert result["widths"] == [int(w) for w in best["widths"].split("-")]
    assert result["candidates"] == 3 and result["trainings"] == 6
    assert (run / "channels.png").stat().st_size > 1000
    assert "python -m nas.train arch=file" in out and "top 1" in out


def test_smoke_result_trains_with_the_printed_command(smoke_run, tmp_path, run_entry):
    run, _ = smoke_run
    command = json.loads((run / "result.json").read_text())["train_command"]
    args = shlex.split(command)[3:]     # after "python -m nas.train"
    proc = run_entry("nas.train", tmp_path, *args, "budget=smoke", "export_onnx=false",
                     run_dir="train")
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = json.loads((tmp_path / "train" / "metrics.json").read_text())
    widths = json.loads((run / "result.json").read_text())["widths"]
    assert metrics["arch"] == "rexnet_searched"
    assert metrics["params"] == json.loads((run / "result.json").read_text())["params"]
    assert len(widths) == 5


def test_resume_skips_finished_trainings(smoke_run, tmp_path, run_entry):
    """A killed search: result.json not yet written, one training unfinished (its
    directory without metrics.json). The resume trains only that one again, sets the
    partial directory aside and ends with the uninterrupted run's table."""
    run, _ = smoke_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    (copy / "result.json").unlink()
    (copy / "candidates.csv").unlink()
    (copy / "trainings" / "c002_r1" / "metrics.json").unlink()
    kept = {p: p.stat().st_mtime_ns for p in (copy / "trainings").glob("c00[01]_r*/metrics.json")}
    proc = run_entry("nas.search", tmp_path, f"resume_dir={copy}", run_dir="resumer")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "[6/6] c002_r1" in proc.stderr and "c000_r0" not in proc.stderr.split("draws")[-1]
    assert {p: p.stat().st_mtime_ns for p in kept} == kept
    assert (copy / "trainings" / ".interrupted" / "c002_r1.0" / "checkpoints").is_dir()
    assert _csv(copy / "candidates.csv") == _csv(run / "candidates.csv")
    # a finished search is never written into again
    again = run_entry("nas.search", tmp_path, f"resume_dir={copy}", run_dir="resumer2")
    assert again.returncode == 2 and "finished search" in again.stderr


def test_train_command_keeps_the_searchs_split():
    """The demo ranks candidates on a 30 % validation split; its result must train on that
    split too, or its test images would include images the search ranked on."""
    from pathlib import Path

    from nas.data.embedded import EmbeddedConfig
    from nas.search.runner import train_command

    plain = train_command(Path("/r/arch.yaml"), "embedded", EmbeddedConfig())
    assert plain == "python -m nas.train arch=file arch.path=/r/arch.yaml data=embedded"
    split = train_command(Path("/r/arch.yaml"), "embedded",
                          EmbeddedConfig(val_fraction=0.3, test_fraction=0.1))
    assert split.endswith("data=embedded data.val_fraction=0.3 data.test_fraction=0.1")
