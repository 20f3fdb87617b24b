"""Recipes in conf/optim: TF-style RMSProp against hand-computed steps, schedules, configs."""

import math
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from torch import nn

from nas.config import ConfigError, check
from nas.optim import OptimConfig, RMSpropTF, build_optimizer, param_groups, scaled_lr

CONF = Path(__file__).resolve().parents[1] / "conf"
RECIPES = sorted((CONF / "optim").glob("*.yaml"))


def recipe(name: str) -> OptimConfig:
    """conf/optim/<name>.yaml as the entry points compose it (an option builds on a base)."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return check(OptimConfig, compose(overrides=[f"+optim={name}"]).optim, "optim")


# --- RMSpropTF ----------------------------------------------------------------------------
# Equality with torch.optim.RMSprop is not expected: torch starts the squared average at 0
# (TF at 1), adds eps outside the sqrt (TF inside), and multiplies the whole momentum
# buffer by the current lr (TF folds the lr into each new buffer contribution).

def test_rmsprop_tf_two_steps_by_hand():
    alpha, eps, mu, wd = 0.9, 1e-3, 0.9, 0.1
    lrs = [0.1, 0.05]                      # the lr changes between steps, as a schedule does
    grads = [[0.5, 1.0], [-0.2, 0.3]]
    theta = [1.0, -2.0]

    p = nn.Parameter(torch.tensor(theta, dtype=torch.float64))
    opt = RMSpropTF([p], lr=lrs[0], alpha=alpha, eps=eps, momentum=mu, weight_decay=wd)

    ms, mom = [1.0, 1.0], [0.0, 0.0]
    after = []
    for lr, g in zip(lrs, grads):
        for i in range(2):
            gi = g[i] + wd * theta[i]                       # L2 added to the gradient
            ms[i] = ms[i] + (1 - alpha) * (gi * gi - ms[i])  # ms starts at 1
            mom[i] = mu * mom[i] + lr * gi / math.sqrt(ms[i] + eps)  # eps inside sqrt
            theta[i] -= mom[i]
        opt.param_groups[0]["lr"] = lr
        p.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
        assert p.tolist() == pytest.approx(theta, rel=1e-12, abs=1e-12)
        after.append(p.tolist())
    # Step 1 written out: g' = [0.6, 0.8], ms = [0.936, 0.964], update = 0.1 g' / sqrt(ms + eps).
    assert after[0] == pytest.approx([1 - 0.06 / math.sqrt(0.937), -2 - 0.08 / math.sqrt(0.965)])
    assert after[0] == pytest.approx([0.93801574, -2.08143786], abs=1e-8)


def test_rmsprop_tf_no_momentum_centered_by_hand():
    p = nn.Parameter(torch.tensor([0.3], dtype=torch.float64))
    opt = RMSpropTF([p], lr=0.2, alpha=0.9, eps=1e-3, momentum=0.0, centered=True)
    p.grad = torch.tensor([2.0], dtype=torch.float64)
    opt.step()
    ms, mg = 1 + 0.1 * (4.0 - 1), 0.1 * 2.0
    assert p.item() == pytest.approx(0.3 - 0.2 * 2.0 / math.sqrt(ms - mg * mg + 1e-3))


# --- schedules ----------------------------------------------------------------------------

def lrs_per_step(opt, sched, n):
    """The lr each of the first n optimizer steps uses (Lightning steps the scheduler after)."""
    out = []
    for _ in range(n):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_step_exp_with_warmup():
    # rmsprop_tf at batch 512: lr 0.032; 5 warm-up epochs from 0.016 (the reference lr).
    opt, sched = build_optimizer(nn.Linear(2, 2), recipe("rmsprop_tf"), batch_size=512,
                                 steps_per_epoch=10, max_epochs=20)
    lr = lrs_per_step(opt, sched, 200)
    assert lr[0] == pytest.approx(0.016)
    assert lr[25] == pytest.approx(0.024)
    assert lr[49] == pytest.approx(0.016 + 0.016 * 49 / 50)
    # decay counted from step 0: floor(50 / 24) = 2 decays already when warm-up ends
    assert lr[50] == pytest.approx(0.032 * 0.97 ** 2)
    assert lr[71] == pytest.approx(0.032 * 0.97 ** 2)
    assert lr[72] == pytest.approx(0.032 * 0.97 ** 3)   # 72 steps = 7.2 epochs = 3 x 2.4
    assert lr[199] == pytest.approx(0.032 * 0.97 ** 8)


def test_cosine_with_warmup_start_middle_end():
    cfg = OptimConfig(name="sgd", lr=0.1, lr_reference_batch=256, schedule="cosine",
                      warmup_epochs=2, warmup_start_factor=0.1, min_lr=0.001)
    opt, sched = build_optimizer(nn.Linear(2, 2), cfg, batch_size=256, steps_per_epoch=10,
                                 max_epochs=10)
    lr = lrs_per_step(opt, sched, 150)
    assert lr[0] == pytest.approx(0.01)
    assert lr[10] == pytest.approx(0.055)
    assert lr[20] == pytest.approx(0.1)                       # cosine start
    assert lr[60] == pytest.approx(0.001 + 0.099 * 0.5)       # middle of 80 cosine steps
    assert lr[99] > 0.001 and lr[99] == pytest.approx(0.001, abs=1e-4)
    assert lr[100] == pytest.approx(0.001) and lr[149] == pytest.approx(0.001)  # end, held


def test_scheduler_state_round_trips():
    model = nn.Linear(2, 2)
    kw = {"batch_size": 512, "steps_per_epoch": 10, "max_epochs": 20}
    opt, sched = build_optimizer(model, recipe("rmsprop_tf"), **kw)
    lrs_per_step(opt, sched, 30)
    _, sched2 = build_optimizer(model, recipe("rmsprop_tf"), **kw)
    sched2.load_state_dict(sched.state_dict())
    assert sched2.get_last_lr() == sched.get_last_lr()
    assert sched2.lr_lambdas[0] == sched.lr_lambdas[0]


def test_lr_scales_with_batch():
    cfg = recipe("rmsprop_tf")
    assert scaled_lr(cfg, 1024) == pytest.approx(0.064)
    opt, _ = build_optimizer(nn.Linear(2, 2), cfg, batch_size=1024, steps_per_epoch=5,
                             max_epochs=10)
    assert opt.param_groups[0]["initial_lr"] == pytest.approx(0.064)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.016)    # warm-up start
    opt, _ = build_optimizer(nn.Linear(2, 2), cfg, batch_size=128, steps_per_epoch=5,
                             max_epochs=10)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.008)    # no warm-up below 256
    for batch, expected in ((96, 0.025), (192, 0.05)):
        opt, _ = build_optimizer(nn.Linear(2, 2), recipe("sgd_darts"), batch_size=batch,
                                 steps_per_epoch=5, max_epochs=10)
        assert isinstance(opt, torch.optim.SGD)
        assert opt.param_groups[0]["lr"] == pytest.approx(expected)


# --- parameter groups ---------------------------------------------------------------------

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 2)
        self.threshold = nn.Parameter(torch.zeros(()))   # e.g. a Single-Path threshold
        self.frozen = nn.Parameter(torch.zeros(3), requires_grad=False)


def test_param_groups_exclude_bn_and_bias():
    net = Net()
    groups = param_groups(net, OptimConfig(weight_decay=1e-5, no_weight_decay_on_bn_and_bias=True))
    decay, no_decay = ({id(p) for p in g["params"]} for g in groups)
    assert [g["weight_decay"] for g in groups] == [1e-5, 0.0]
    assert decay == {id(net.conv.weight), id(net.fc.weight), id(net.threshold)}
    assert no_decay == {id(net.bn.weight), id(net.bn.bias), id(net.fc.bias)}

    groups = param_groups(net, OptimConfig(weight_decay=3e-4, no_weight_decay_on_bn_and_bias=False))
    assert len(groups) == 1 and groups[0]["weight_decay"] == 3e-4
    assert len(groups[0]["params"]) == 6                        # all but the frozen one


# --- config validation --------------------------------------------------------------------

@pytest.mark.parametrize("cfg, match", [
    ({"lr": -0.1}, r"^optim\.lr: expected a value > 0, got -0\.1$"),
    ({"schedule": "linear"}, r"^optim\.schedule: expected one of cosine, step_exp, constant"),
    ({"lr": "fast"}, r"^optim\.lr: "),
    ({"nesterov": "maybe"}, r"^optim\.nesterov: "),
    ({"lrate": 0.1}, r"^optim\.lrate: not a optim option; expected one of: name, lr, "),
    ({"name": "rmsprop_tf", "nesterov": True}, r"^optim\.nesterov: expected false unless"),
    ({"ema_decay": 1.0}, r"^optim\.ema_decay: expected null or a value in \(0, 1\)"),
])
def test_config_errors_are_one_line(cfg, match):
    with pytest.raises(ConfigError, match=match) as e:
        check(OptimConfig, cfg, "optim")
    assert "\n" not in str(e.value)


def test_run_shorter_than_warmup_stays_in_warmup():
    # a smoke run (1 epoch) of a 5-warm-up-epoch recipe: a plain linear ramp, no error
    opt, sched = build_optimizer(nn.Linear(2, 2), recipe("rmsprop_tf"), batch_size=512,
                                 steps_per_epoch=4, max_epochs=1)
    assert lrs_per_step(opt, sched, 4) == pytest.approx([0.016 + 0.016 * s / 20 for s in range(4)])


def test_cosine_floor_above_lr_is_an_error():
    cfg = OptimConfig(lr=0.1, lr_reference_batch=256, min_lr=0.01)
    with pytest.raises(ConfigError, match=r"^optim\.min_lr: expected at most the batch-scaled"):
        build_optimizer(nn.Linear(2, 2), cfg, batch_size=16, steps_per_epoch=4, max_epochs=2)


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_every_recipe_lists_every_field_and_builds(path):
    with initialize_config_dir(config_dir=str(path.parents[1]), version_base="1.3"):
        raw = compose(overrides=[f"+optim={path.stem}"]).optim
    assert list(raw) == [f for f in OptimConfig.__dataclass_fields__]
    cfg = check(OptimConfig, raw, "optim")
    opt, sched = build_optimizer(Net(), cfg, batch_size=64, steps_per_epoch=4, max_epochs=8)
    expected = RMSpropTF if cfg.name == "rmsprop_tf" else torch.optim.SGD
    assert isinstance(opt, expected) and sched.get_last_lr()[0] > 0


def test_recipes_compose_through_hydra():
    assert {p.stem for p in RECIPES} >= {"sgd_cosine", "rmsprop_tf", "sgd_darts"}
    for path in RECIPES:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose(overrides=[f"+optim={path.stem}"])
        assert check(OptimConfig, cfg.optim, "optim") == recipe(path.stem)
