"""A diverged training fails the adapter step: non-finite losses or trainable weights are never saved as an adapter.

(A loss that stays flat is the blocking asset check train_loss_fell, checks/training.py: the weights are usable,
the run just learned nothing.)
"""

from __future__ import annotations

import math


class TrainingDiverged(RuntimeError):
    """The loss or the trainable weights became NaN/inf: nothing downstream may be built from this adapter."""


def non_finite_losses(log_history: list[dict]) -> list[tuple[int, str, float]]:
    """(step, key, value) of every logged train/val loss that is NaN or infinite."""
    return [(entry.get("step", -1), key, entry[key]) for entry in log_history for key in ("loss", "eval_loss")
            if key in entry and not math.isfinite(float(entry[key]))]


def check_finite(model, log_history: list[dict], label: str) -> None:
    """Raise TrainingDiverged when a logged loss or a trainable parameter is not finite."""
    import torch

    losses = non_finite_losses(log_history)
    bad = [name for name, param in model.named_parameters()
           if param.requires_grad and not bool(torch.isfinite(param.detach()).all())]
    if losses or bad:
        where = (f"loss {losses[0][2]} ({losses[0][1]}) at step {losses[0][0]}, {len(losses)} non-finite losses"
                 if losses else "the logged losses are finite")
        raise TrainingDiverged(
            f"training of {label} diverged: {where}; {len(bad)} trainable tensors hold NaN/inf"
            + (f" (first: {bad[0]})" if bad else "")
            + ": the adapter is not saved; lower training.learning_rate or raise warmup_ratio")
