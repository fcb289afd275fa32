"""``probe=eval``: loss and accuracy of the trained model on the full train and test splits.

Unaugmented, normalised images; the loss is the sample mean of the cross-entropy.
"""

from __future__ import annotations

from omegaconf import DictConfig

from losslands.probes.base import ProbeContext, evaluate


def run(ctx: ProbeContext, cfg: DictConfig) -> dict:
    out = {}
    for split in ("train", "test"):
        batches = ctx.datamodule.iter_batches(split, batch_size=int(cfg.get("batch_size", 1000)))
        out[split] = evaluate(ctx.model, ctx.progress(batches, desc=f"eval {split}"), ctx.device)
    out["generalization_gap"] = out["train"]["acc"] - out["test"]["acc"]
    return out


def scalars(result: dict) -> dict[str, float]:
    return {
        "train_loss": result["train"]["loss"], "train_acc": result["train"]["acc"],
        "test_loss": result["test"]["loss"], "test_acc": result["test"]["acc"],
        "generalization_gap": result["generalization_gap"],
    }
