"""The one search stage (nas.methods.stage): every method's training resumes through it, and a
foreign checkpoint is refused with one error type in one form."""

import pytest
import torch
from omegaconf import OmegaConf

from conftest import interrupt_in_second_epoch, search_context
from nas.checkpoints import CheckpointError
from nas.config import check
from nas.methods.base import method_setting
from nas.methods.stage import check_stage_resume


def _checkpoint(path, search=None):
    nas = {"format": "nas.classifier/1"}
    if search is not None:
        nas["search"] = search
    torch.save({"nas": nas, "state_dict": {}}, path)
    return path


@pytest.mark.parametrize("stage", ["atomnas", "autonl", "darts", "moga_supernet"])
def test_a_foreign_checkpoint_is_one_checkpoint_error(tmp_path, stage):
    own = {"stage": stage, "identity": "net"}
    check_stage_resume(_checkpoint(tmp_path / "own.ckpt", own), stage, "net")
    cases = {"plain": None, "other_stage": {"stage": "elsewhere", "identity": "net"},
             "other_net": {"stage": stage, "identity": "another net"}}
    for name, search in cases.items():
        with pytest.raises(CheckpointError) as e:
            check_stage_resume(_checkpoint(tmp_path / f"{name}.ckpt", search), stage, "net")
        message = str(e.value)
        assert message.startswith(f"{tmp_path / name}.ckpt: ") and "\n" not in message
        assert f"the {stage} search stage" in message
    (tmp_path / "text.ckpt").write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        check_stage_resume(tmp_path / "text.ckpt", stage, "net")


def test_a_killed_moga_supernet_training_resumes_to_the_same_supernet(tmp_path, monkeypatch):
    """MoGA's supernet trains through the stage: stopped at its second epoch, the search run
    again in its directory continues from last.ckpt and trains the same supernet bit for bit
    (compared at supernet.pt, before the latency table, which timing noise changes)."""
    from nas.methods.moga import search as method

    base, _, _ = method_setting("moga", "smoke")
    cfg = check(method.MogaConfig, OmegaConf.to_container(base), "method")

    class Done(Exception):
        pass

    def stop(*args, **kwargs):
        raise Done

    monkeypatch.setattr(method, "latency_stage", stop)
    with pytest.raises(Done):
        method._search(cfg, search_context(tmp_path / "straight"))
    interrupt_in_second_epoch(monkeypatch, method.FairNASModule,
                              lambda: method._search(cfg, search_context(tmp_path / "resumed")))
    assert (tmp_path / "resumed" / "checkpoints" / "last.ckpt").is_file()
    assert not (tmp_path / "resumed" / "supernet.pt").exists()
    epochs = []
    monkeypatch.setattr(method.FairNASModule, "on_train_epoch_start",
                        lambda self: epochs.append(self.current_epoch), raising=False)
    with pytest.raises(Done):
        method._search(cfg, search_context(tmp_path / "resumed"))
    assert epochs == [1]    # continued from the checkpoint, not trained again from scratch
    a, b = (torch.load(tmp_path / d / "supernet.pt", weights_only=True)
            for d in ("straight", "resumed"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
