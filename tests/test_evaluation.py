"""The evaluator (nas.evaluation): both backends train the same jobs to the same metrics, the
multirun is one structured config file, a killed evaluation resumes without retraining what
finished, and a directory of another recipe, architecture or seed is refused."""

import shlex

import pytest
from omegaconf import OmegaConf

from conftest import REPO
from nas.arch.zoo import get_spec
from nas.config import ConfigError
from nas.data import EmbeddedConfig
from nas.evaluation import EvalJob, EvaluationFailed, EvaluatorConfig, evaluate
from nas.optim import OptimConfig
from nas.trainer import BudgetConfig, LoggerConfig, TrainerConfig
from nas.training import Recipe

BUDGET = BudgetConfig(name="smoke", epochs=1, limit_train_batches=3, limit_val_batches=2,
                      limit_test_batches=2, batch_size=16)


def _recipe(**optim) -> Recipe:
    return Recipe(data=EmbeddedConfig(), optim=OptimConfig(warmup_epochs=0.0, **optim),
                  budget=BUDGET, trainer=TrainerConfig(accelerator="cpu",
                                                       enable_progress_bar=False),
                  logger=LoggerConfig(csv=False, wandb=False, wandb_mode="disabled"),
                  export_onnx=False)


def _jobs():
    small = get_spec("mobilenetv2_035", num_classes=10, input_size=32)
    return [EvalJob("a", small, 0), EvalJob("b", small, 7)]


@pytest.fixture(scope="module")
def both_backends(tmp_path_factory):
    """The same two jobs through each backend (the hydra one through `basic`)."""
    tmp = tmp_path_factory.mktemp("evaluation")
    reports = []
    inproc = evaluate(_jobs(), _recipe(), tmp / "inprocess",
                      report=lambda *a: reports.append(a[0]))
    hydra = evaluate(_jobs(), _recipe(), tmp / "hydra", EvaluatorConfig(backend="hydra"))
    return tmp, inproc, hydra, reports


def test_both_backends_train_the_same_jobs_alike(both_backends):
    """The same code, seed and data in another process: the figures agree to the accuracy of
    one validation image (32 of them), the counts exactly."""
    tmp, inproc, hydra, reports = both_backends
    assert reports == ["a", "b"]
    for name, seed in (("a", 0), ("b", 7)):
        m, h = inproc[name], hydra[name]
        assert m["seed"] == h["seed"] == seed
        assert m["params"] == h["params"] and m["global_step"] == h["global_step"] == 3
        assert abs(m["final_val_top1"] - h["final_val_top1"]) <= 1 / 32 + 1e-6
        assert h["run_dir"] == str((tmp / "hydra" / name).resolve())
    assert (tmp / "hydra" / "a" / "arch.yaml").is_file()


def test_the_multirun_is_one_structured_config(both_backends):
    tmp, *_ = both_backends
    cfg = OmegaConf.load(tmp / "hydra" / ".jobs" / "evaluate.yaml")
    assert OmegaConf.to_container(cfg.optim) == OmegaConf.to_container(
        OmegaConf.structured(_recipe().optim))
    assert cfg.budget.limit_train_batches == 3 and cfg.data.name == "embedded"
    assert dict(cfg.jobs.b) == {"arch": str((tmp / "hydra" / ".jobs" / "arch" / "b.yaml")
                                            .resolve()), "seed": 7}
    assert cfg.hydra.sweeper.params.job == "a,b"
    command = [ln for ln in (tmp / "hydra" / "evaluate.log").read_text().splitlines()
               if ln.startswith("$ ")][-1]
    args = shlex.split(command[2:])
    assert args[1:3] == ["-m", "nas.evaluation"]
    assert not [a for a in args if "=" in a], "no config passed as override strings"


def test_a_killed_evaluation_trains_only_what_did_not_finish(both_backends, tmp_path):
    import shutil

    tmp, inproc, *_ = both_backends
    copy = tmp_path / "ev"
    shutil.copytree(tmp / "inprocess", copy)
    (copy / "b" / "metrics.json").unlink()
    kept = (copy / "a" / "metrics.json").stat().st_mtime_ns
    reports = []
    again = evaluate(_jobs(), _recipe(), copy, report=lambda *a: reports.append(a[:1] + a[2:]))
    assert reports == [("b", 2, 2)]
    assert (copy / "a" / "metrics.json").stat().st_mtime_ns == kept
    assert (copy / ".interrupted" / "b.0" / "checkpoints").is_dir()
    assert again["b"]["final_val_top1"] == inproc["b"]["final_val_top1"]
    # all finished: nothing runs
    assert evaluate(_jobs(), _recipe(), copy, report=lambda *a: reports.append(a)) == again
    assert len(reports) == 1


def test_another_recipe_architecture_or_seed_is_refused(both_backends):
    tmp, *_ = both_backends
    directory = tmp / "inprocess"
    with pytest.raises(ConfigError) as info:
        evaluate(_jobs(), _recipe(lr=0.1), directory)
    assert "recipe.yaml: the trainings in" in str(info.value)
    assert "(optim.lr differs)" in str(info.value)
    other_seed = [_jobs()[0], EvalJob("b", _jobs()[1].spec, 8)]
    with pytest.raises(ConfigError, match="a finished training of another seed than job b"):
        evaluate(other_seed, _recipe(), directory)
    wider = get_spec("mobilenetv2_050", num_classes=10, input_size=32)
    with pytest.raises(ConfigError, match="another architecture than job a"):
        evaluate([EvalJob("a", wider, 0)], _recipe(), directory)
    with pytest.raises(ConfigError, match="job name: expected letters"):
        evaluate([EvalJob("../a", wider, 0)], _recipe(), directory)


@pytest.mark.parametrize("backend", ["inprocess", "hydra"])
def test_a_failed_training_is_one_error_naming_the_job(backend, tmp_path):
    """A data root without the dataset: the training stops; the evaluation says which job
    (and, for the multirun, its log), in one line."""
    from nas.data import CifarConfig

    recipe = _recipe()
    recipe.data = CifarConfig(name="cifar10", root=str(tmp_path / "no_cifar"))
    spec = get_spec("mobilenetv2_035", num_classes=10, input_size=32)
    with pytest.raises(EvaluationFailed) as info:
        evaluate([EvalJob("c000_r0", spec, 0)], recipe, tmp_path / "ev",
                 EvaluatorConfig(backend=backend))
    message = str(info.value)
    assert "\n" not in message and "no_cifar" in message
    if backend == "hydra":
        assert message.startswith("the trainings stopped (exit status ")
        assert "1 of 1 unfinished" in message and "evaluate.log" in message
    else:
        assert message.startswith("training c000_r0 stopped: ")


def test_joblib_jobs_share_the_cores_instead_of_each_taking_all(monkeypatch):
    from nas.evaluation import job_env

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    assert job_env("joblib", 2)["OMP_NUM_THREADS"] == "4"
    assert job_env("joblib", None)["OMP_NUM_THREADS"] == "1"   # joblib's default: a job per core
    assert job_env("joblib", 16)["OMP_NUM_THREADS"] == "1"
    assert "OMP_NUM_THREADS" not in job_env("basic", None)     # one job at a time: all cores
    monkeypatch.setenv("OMP_NUM_THREADS", "3")                 # the user's setting wins
    assert job_env("joblib", 2)["OMP_NUM_THREADS"] == "3"


def test_evaluator_config_is_checked():
    from nas.config import check

    with pytest.raises(ConfigError, match="evaluator.backend: expected one of inprocess, hydra"):
        check(EvaluatorConfig, {"backend": "ray"}, "evaluator")
    with pytest.raises(ConfigError, match="evaluator.jobs: expected null, or an integer"):
        check(EvaluatorConfig, {"backend": "inprocess", "jobs": 2}, "evaluator")
    assert check(EvaluatorConfig, {"backend": "hydra", "launcher": "joblib", "jobs": 2},
                 "evaluator").jobs == 2


def test_no_method_starts_a_process_or_imports_the_search_layer():
    """Methods train through the stage and the evaluator; the search layer calls methods,
    never the other way round."""
    import ast

    offenders = []
    for path in sorted((REPO / "nas" / "methods").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            for name in names:
                if name in ("subprocess", "multiprocessing") or name == "nas.search" or \
                        name.startswith("nas.search."):
                    offenders.append(f"{path.relative_to(REPO)}: imports {name}")
            if isinstance(node, ast.Attribute) and node.attr in ("system", "popen", "Popen",
                                                                 "spawnv", "execv"):
                offenders.append(f"{path.relative_to(REPO)}: calls {node.attr}")
    assert offenders == []
