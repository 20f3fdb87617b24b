"""trainer.memory_format: channels-last weights on the CPU, the same function as NCHW."""

import copy

import pytest
import pytorch_lightning as pl
import torch

from nas.arch.builder import build
from nas.arch.zoo import get_spec
from nas.classifier import ClassifierModule
from nas.config import ConfigError, check
from nas.data import make_datamodule
from nas.memory_format import MemoryFormat, is_channels_last, resolve
from nas.optim import OptimConfig
from nas.training import TrainerConfig


def test_auto_is_channels_last_on_the_cpu_only():
    assert resolve("auto", torch.device("cpu")) is torch.channels_last
    assert resolve("auto", torch.device("cuda", 0)) is torch.contiguous_format
    assert resolve("channels_last", torch.device("cuda", 0)) is torch.channels_last
    assert resolve("contiguous", torch.device("cpu")) is torch.contiguous_format
    with pytest.raises(ValueError, match="expected one of auto, channels_last, contiguous"):
        resolve("nhwc", torch.device("cpu"))
    with pytest.raises(ConfigError, match="trainer.memory_format"):
        check(TrainerConfig, {"memory_format": "nhwc"}, "trainer")


@pytest.mark.parametrize("name, channels_last", [("auto", True), ("contiguous", False)])
def test_callback_lays_out_the_weights_the_run_trains(name, channels_last):
    spec = get_spec("mobilenetv2_035", num_classes=10, input_size=32)
    module = ClassifierModule(spec, OptimConfig(), batch_size=8)
    data = make_datamodule({"name": "synthetic", "batch_size": 8, "eval_batch_size": 8})
    trainer = pl.Trainer(max_steps=2, limit_val_batches=0, accelerator="cpu", logger=False,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[MemoryFormat(name)])
    trainer.fit(module, datamodule=data)
    weights = [p for p in module.model.parameters() if p.dim() == 4]
    assert [is_channels_last(p) for p in weights] == [channels_last] * len(weights)
    assert module.memory_format is (torch.channels_last if channels_last
                                    else torch.contiguous_format)


def test_channels_last_network_computes_what_the_nchw_one_does():
    torch.manual_seed(0)
    nchw = build(get_spec("atomnas_a", num_classes=10, input_size=32)).eval()
    nhwc = copy.deepcopy(nchw).to(memory_format=torch.channels_last)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(nhwc(x), nchw(x), rtol=1e-4, atol=1e-5)
