"""``probe=eval``: loss and accuracy of the trained model on the full train and test splits.

Unaugmented, normalised images; the loss is the sample mean of the cross-entropy.
"""

from __future__ import annotations

from dataclasses import dataclass

from losslands.evaluate import evaluate
from losslands.probes.base import ProbeConfig, ProbeContext, ProbeInfo, Scalar


@dataclass
class Config(ProbeConfig):
    """Options of ``probe=eval``."""

    name: str = "eval"
    batch_size: int = 1000

    def check(self) -> None:
        self.at_least("batch_size", 1)


INFO = ProbeInfo(
    title="Evaluation on the full splits",
    order=0,
    scalars={
        "train_loss": Scalar("mean cross-entropy on the whole (unaugmented) training split", "nats"),
        "train_acc": Scalar("accuracy on the whole training split"),
        "test_loss": Scalar("mean cross-entropy on the test split", "nats"),
        "test_acc": Scalar("accuracy on the test split"),
        "generalization_gap": Scalar("train_acc - test_acc"),
    },
    table=["train_acc", "test_acc", "train_loss", "test_loss", "generalization_gap"],
)


def run(ctx: ProbeContext, cfg: Config) -> dict:
    out = {}
    for split in ("train", "test"):
        batches = ctx.data.iter_batches(split, cfg.batch_size)
        out[split] = evaluate(ctx.model, ctx.progress(batches, desc=f"eval {split}"), ctx.device)
    out["generalization_gap"] = out["train"]["acc"] - out["test"]["acc"]
    return out


def scalars(result: dict) -> dict[str, float]:
    return {
        "train_loss": result["train"]["loss"], "train_acc": result["train"]["acc"],
        "test_loss": result["test"]["loss"], "test_acc": result["test"]["acc"],
        "generalization_gap": result["generalization_gap"],
    }
