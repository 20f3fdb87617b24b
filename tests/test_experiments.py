"""experiments/: every overlay composes with its entry point, names its exact command, and
has a record in records.yml run with that command (measured, or marked not run)."""

from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = REPO / "experiments"
OVERLAYS = sorted(EXPERIMENTS.glob("*.yaml"))


def _entry(path: Path) -> str:
    """The entry point an overlay is for: training overlays choose an arch."""
    return "train" if "override /arch" in path.read_text() else "search"


@pytest.mark.parametrize("path", OVERLAYS, ids=lambda p: p.stem)
def test_every_overlay_composes_and_is_recorded(path):
    entry = _entry(path)
    command = f"python -m nas.{entry} +experiment={path.stem}"
    assert command in path.read_text()  # the exact command, in the overlay's header
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(entry, overrides=[f"+experiment={path.stem}", "data.root=/data"])
    assert ("method" in cfg) == (entry == "search")
    records = yaml.safe_load((EXPERIMENTS / "records.yml").read_text())
    # Records of commits before the overlay existed keep the command they were run with.
    assert any(r["experiment"] == path.stem and r["command"].startswith(command)
               for r in records)


def test_paper_overlays_set_the_papers_scale():
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("search", overrides=["+experiment=atomnas_a_imagenet", "data.root=/d"])
        assert (cfg.method.lam, cfg.method.stem, cfg.budget.epochs) == (1.8e-4, 16, 350)
        assert (cfg.data.name, cfg.data.input_size) == ("imagenet", 224)
        cfg = compose("search", overrides=["+experiment=moga_imagenet", "data.root=/d"])
        for name in ("atomnas_a", "atomnas_b", "atomnas_c", "autonl", "moga"):   # bicubic
            other = compose("search", overrides=[f"+experiment={name}_imagenet", "data.root=/d"])
            assert other.data.interpolation == "bicubic"
        assert (cfg.method.nsga.pop_size, cfg.method.nsga.generations) == (70, 120)
        assert (cfg.method.width, cfg.budget.epochs, cfg.trainer.strategy) == (1.0, 32, "ddp")
        # MoGA's split: 50,000 of ImageNet's 1,281,167 training images score the candidates
        assert round(cfg.data.search_holdout * 1_281_167) == 50_000
        cfg = compose("search", overrides=["+experiment=rexnet_cifar100_d", "data.root=/d"])
        assert (cfg.method.candidates, cfg.method.repeats, cfg.budget.epochs) == (200, 3, 30)
        assert (cfg.method.space.depth, cfg.method.constraints.params) == (13, 3.0e6)
        assert (cfg.method.constraint, cfg.method.rank_by) == ("le", "best")
        assert cfg.data.name == "cifar100"


def test_searched_networks_train_with_the_searchs_preprocessing():
    from nas.data import ImageNetConfig
    from nas.search.runner import train_command

    command = train_command(Path("/r/arch.yaml"), "imagenet",
                            ImageNetConfig(root="/d", interpolation="bicubic", num_classes=100,
                                           normalize_on="device", num_workers=3))
    assert command.endswith("data=imagenet data.root=/d data.num_classes=100 "
                            "data.interpolation=bicubic")
