"""The LightningModule that trains a classifier with a given optimizer."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import lightning as L
import torch
from torch import Tensor, nn
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy


class DivergenceError(FloatingPointError):
    """Raised when the training loss becomes NaN or infinite."""


OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]


class Classifier(L.LightningModule):
    """Cross-entropy classification with a configurable optimizer.

    Logs ``train/loss``, ``train/acc``, ``val/loss`` and ``val/acc`` once per epoch and keeps
    the per-epoch ``history`` (stored in checkpoints, so a resumed run keeps it).

    Args:
        model: the network; its parameters are all trained.
        optimizer: a factory ``params -> torch.optim.Optimizer`` (e.g. a Hydra partial); its
            ``weight_decay`` reaches the optimizer unchanged.
        num_classes: number of classes for the accuracy metric.
    """

    def __init__(self, model: nn.Module, optimizer: OptimizerFactory, num_classes: int = 10):
        super().__init__()
        self.model = model
        self.optimizer_factory = optimizer
        self.loss_fn = nn.CrossEntropyLoss()
        self.train_loss, self.val_loss = MeanMetric(), MeanMetric()
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.history: list[dict] = []
        self._val: dict = {}
        self._epoch_start = 0.0

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer_factory(self.model.parameters())

    def on_train_epoch_start(self) -> None:
        self._epoch_start = time.perf_counter()

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        logits = self.model(x)
        loss = self.loss_fn(logits.float(), y)
        if not torch.isfinite(loss):
            raise DivergenceError(
                f"training loss is {loss.item()} at epoch {self.current_epoch}, step "
                f"{self.global_step}: lower optimizer.lr or check the data"
            )
        self.train_loss.update(loss.detach(), weight=y.shape[0])
        self.train_acc.update(logits.detach(), y)
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        logits = self.model(x)
        self.val_loss.update(self.loss_fn(logits.float(), y), weight=y.shape[0])
        self.val_acc.update(logits, y)

    def on_validation_epoch_end(self) -> None:
        self._val = {"val/loss": self.val_loss.compute().item(), "val/acc": self.val_acc.compute().item()}
        self.val_loss.reset()
        self.val_acc.reset()
        self.log_dict(self._val)

    def on_train_epoch_end(self) -> None:
        train = {"train/loss": self.train_loss.compute().item(), "train/acc": self.train_acc.compute().item()}
        self.train_loss.reset()
        self.train_acc.reset()
        self.log_dict(train)
        self.history.append(
            {"epoch": self.current_epoch + 1, **train, **self._val,
             "seconds": time.perf_counter() - self._epoch_start}
        )

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["losslands_history"] = list(self.history)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.history = list(checkpoint.get("losslands_history", []))
