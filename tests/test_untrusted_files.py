"""No file the tool reads can run code: for every kind, a file planted with a payload that
would create a marker file when unpickled (or constructed from a YAML tag) is refused with
one line naming the file, and the marker never appears."""

import os
import pickle

import numpy as np
import pytest
import torch
import yaml
from omegaconf import OmegaConf

from nas.arch import io
from nas.arch.spec import SpecError
from nas.checkpoints import CheckpointError, read_checkpoint
from nas.config import ConfigError
from nas.cost.lut import LatencyTable, LatencyTableError
from nas.data import DataError
from nas.data.cifar import read_pickle
from nas.data.embedded import load_raw
from nas.methods.moga.nsga import NSGAConfig, run_nsga
from nas.search.runner import resumed_config
from nas.train import searched_recipe


class Payload:
    """Unpickling this runs `touch <marker>`."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _pickle(path, marker):
    path.write_bytes(pickle.dumps({"data": Payload(marker)}))


def _torch_file(path, marker):
    torch.save({"state_dict": {"w": torch.zeros(1)}, "nas": {"x": Payload(marker)}}, path)


def _yaml_tag(path, marker):
    path.write_text(f'family: chain\nname: !!python/object/apply:os.system ["touch {marker}"]\n')


def _npz(path, marker):
    np.savez(path, images=np.array([Payload(marker)], dtype=object), labels=np.zeros(1))


def _hydra_run(path, marker):
    (path / ".hydra").mkdir(parents=True)
    (path / ".hydra" / "config.yaml").write_text(
        f'method: !!python/object/apply:os.system ["touch {marker}"]\n')


def _supernet(path):
    from nas.methods.moga.search import _load_supernet, moga_space
    from nas.methods.moga.supernet import ChainSupernet

    _load_supernet(ChainSupernet(moga_space(width=0.25, num_classes=10, input_size=32)), path)


def _nsga(path):
    run_nsga(lambda X: np.zeros((len(X), 2)), [2, 2], 2, NSGAConfig(pop_size=2, generations=1,
             weights=[0.5, 0.5]), seed=0, state_path=path)


CASES = {
    # file kind: (file name, planter, reader, error, message start)
    "cifar batch": ("data_batch_1", _pickle, lambda p: read_pickle(p, b"labels"), DataError,
                    "not a CIFAR python pickle"),
    "training checkpoint": ("last.ckpt", _torch_file, read_checkpoint, CheckpointError,
                            "not a readable checkpoint"),
    "checkpoint as plain pickle": ("model.ckpt", _pickle, read_checkpoint, CheckpointError,
                                   "not a readable checkpoint"),
    "moga supernet weights": ("supernet.pt", _torch_file, _supernet, ConfigError,
                              "not a supernet of this search space"),
    "arch yaml": ("arch.yaml", _yaml_tag, io.load, SpecError, "not valid YAML"),
    "embedded data cache": ("mnist.npz", _npz, lambda p: load_raw("mnist", p.parent), DataError,
                            "corrupt cache file"),
    "nsga state": ("nsga_state.json", _pickle, _nsga, ConfigError,
                   "not a readable NSGA-II state file"),
    "latency table": ("lut.json", _pickle, LatencyTable.load, LatencyTableError,
                      "not a latency table (not UTF-8 text"),
    "search result (recipe)": ("result.json", _pickle,
                               lambda p: searched_recipe(str(p.parent / "arch.yaml"), "paper"),
                               ConfigError, "budget=paper:"),
}


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("kind", list(CASES))
def test_a_planted_file_is_refused_without_running_code(tmp_path, kind):
    name, plant, read, error, message = CASES[kind]
    marker = tmp_path / "pwned"
    path = tmp_path / name
    plant(path, marker)
    with pytest.raises(error) as e:
        read(path)
    assert not marker.exists()
    text = str(e.value)
    assert "\n" not in text and message in text
    if kind != "search result (recipe)":       # that one names the arch file it was given
        assert str(path) in text


def test_a_planted_hydra_config_is_refused_by_resume_dir(tmp_path):
    marker = tmp_path / "pwned"
    _hydra_run(tmp_path / "run", marker)
    with pytest.raises(ConfigError, match=r"^resume_dir: .* is not a search run"):
        resumed_config(OmegaConf.create({"seed": 0}), tmp_path / "run")
    assert not marker.exists()


def test_the_payload_does_run_when_loaded_unsafely(tmp_path):
    """The payloads above are real: plain pickle, torch.load without weights_only and
    yaml's unsafe loader run them."""
    for i, load in enumerate((lambda p: pickle.loads(p.read_bytes()),
                              lambda p: torch.load(p, weights_only=False),
                              lambda p: yaml.unsafe_load(p.read_text()))):
        marker = tmp_path / f"ran{i}"
        path = tmp_path / f"file{i}"
        (_pickle, _torch_file, _yaml_tag)[i](path, marker)
        load(path)
        assert marker.exists()
