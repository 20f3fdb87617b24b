"""ClassifierModule: stand-alone training of any ArchSpec with Lightning.

The checkpoint stores the spec (YAML) beside the weights, so a checkpoint alone rebuilds
and evaluates its model (`nas.checkpoints.load_model`). What a network family adds to
training (DARTS's auxiliary loss and drop-path ramp) lives with the network
(`nas.ops.network.Network`).
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from nas.arch import io
from nas.arch.builder import build
from nas.arch.spec import ArchSpec
from nas.cost import count
from nas.data.imagefolder import prepare_batch
from nas.ops.network import Network
from nas.optim import OptimConfig, lightning_optimizers
from nas.supernet.bn import recalibrate_bn


class NonFiniteLoss(RuntimeError):
    """Training diverged; the message says where."""


class ClassifierModule(pl.LightningModule):
    # The layout of 4-D weights; nas.memory_format.MemoryFormat sets it at setup, and layers
    # built during training (AtomNAS shrinking) follow it.
    memory_format = torch.contiguous_format

    def __init__(self, spec: ArchSpec, optim: OptimConfig, *, batch_size: int,
                 bn_recalibration_steps: int = 0, model: Network | None = None):
        super().__init__()
        self.spec = spec
        self.optim_cfg = optim
        self.batch_size = batch_size
        self.bn_recalibration_steps = bn_recalibration_steps
        self.model = build(spec) if model is None else model  # a supernet trains as `model`
        self.criterion = nn.CrossEntropyLoss(label_smoothing=optim.label_smoothing)
        n = spec.num_classes
        self.metrics = nn.ModuleDict({
            f"{stage}_top{k}": MulticlassAccuracy(n, top_k=min(k, n), average="micro")
            for stage in ("val", "test") for k in (1, 5)})
        self.cost = count(spec)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """uint8 image batches (nas.data.imagefolder) normalised where they arrived."""
        return prepare_batch(batch)

    # ------------------------------------------------------------------ training
    def on_train_epoch_start(self) -> None:
        self.model.start_epoch(self.current_epoch, max(1, self.trainer.max_epochs or 1))

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = self.model.training_loss(self.model(x), y, self.criterion)
        if not torch.isfinite(loss):
            raise NonFiniteLoss(f"non-finite training loss ({loss.item()}) at epoch "
                                f"{self.current_epoch}, step {self.global_step}; lower optim.lr "
                                f"or check the data")
        self.log("train/loss", loss, prog_bar=True, batch_size=x.shape[0])
        return loss

    def configure_optimizers(self) -> Any:
        scaled, scale = self.lr_scaled_parameters()
        return lightning_optimizers(self.trainer, self.model, self.optim_cfg,
                                    batch_size=self.batch_size, lr_scaled=scaled,
                                    lr_scale=scale)

    def lr_scaled_parameters(self) -> tuple[list[nn.Parameter], float]:
        """Parameters trained at a multiple of the lr, and the multiple (none here)."""
        return [], 1.0

    # ------------------------------------------------------------------ evaluation
    @property
    def eval_model(self) -> nn.Module:
        """The network that validation and test evaluate (AtomNAS: its weight EMA)."""
        return self.model

    def _recalibrate(self) -> None:
        if self.bn_recalibration_steps <= 0 or self.trainer.datamodule is None:
            return
        loader = self.trainer.datamodule.train_dataloader()
        recalibrate_bn(self.eval_model, loader, self.bn_recalibration_steps, self.device)

    def on_validation_epoch_start(self) -> None:
        self._recalibrate()

    def on_test_epoch_start(self) -> None:
        self._recalibrate()

    def _eval_step(self, batch: Any, stage: str) -> None:
        x, y = batch
        logits = self.eval_model(x)
        self.log(f"{stage}/loss", self.criterion(logits, y), batch_size=x.shape[0], sync_dist=True)
        for k in (1, 5):
            metric = self.metrics[f"{stage}_top{k}"]
            metric(logits, y)
            self.log(f"{stage}/top{k}", metric, prog_bar=k == 1, batch_size=x.shape[0])

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # Merged, not replaced: a search stage's callback has written its entry already.
        checkpoint.setdefault("nas", {}).update(
            {"format": CHECKPOINT_FORMAT, "arch_yaml": io.dumps(self.spec),
             "optim": dict(vars(self.optim_cfg)), "batch_size": self.batch_size})


CHECKPOINT_FORMAT = "nas.classifier/1"
