"""Checks on adapters: the loss on the fixed val subset went down over training (W18), and the train loss fell."""

import dagster as dg


ADAPTER = dg.AssetKey("adapter")
ADAPTER_CHECKS = [
    dg.AssetCheckSpec("val_loss_improved", asset=ADAPTER,
                      description="Loss on the fixed val subset is lower at the end than at the first evaluation"),
    # Blocking: an adapter whose train loss stayed flat (a learning rate far too high, a broken corpus) learned
    # nothing, and nothing downstream (merge, generations, scores) is built from it.
    dg.AssetCheckSpec("train_loss_fell", asset=ADAPTER, blocking=True,
                      description="Train loss over the last quarter of logged steps is below training."
                                  "loss_fall_fraction of its mean over the first quarter"),
]


def evaluate_adapter_checks(val_history: list, label: str = "") -> list[dg.AssetCheckResult]:
    """From the recorded (step, val loss) points; fewer than two points cannot show learning, so they warn."""
    points = [(int(step), float(loss)) for step, loss in val_history]
    where = f"{label}: " if label else ""
    if len(points) < 2:
        return [dg.AssetCheckResult(
            check_name="val_loss_improved", passed=False, severity=dg.AssetCheckSeverity.WARN,
            description=f"{where}{len(points)} val evaluation(s): fewer than 2 cannot show learning "
                        "(raise eval_subset or lower save_steps)",
            metadata={"val_points": len(points),
                      "reason": "fewer than 2 val evaluations: raise eval_subset or lower save_steps"},
        )]
    (first_step, first), (last_step, last) = points[0], points[-1]
    change = (last - first) / first if first else 0.0
    verdict = "the adapter learned the task" if last < first else "no learning on held-out data (or overfitting)"
    return [dg.AssetCheckResult(
        check_name="val_loss_improved", passed=last < first, severity=dg.AssetCheckSeverity.WARN,
        description=f"{where}val loss {first:.3f} at step {first_step} -> {last:.3f} at step {last_step} "
                    f"({change:+.1%}): {verdict}",
        metadata={"first_val_loss": first, "first_step": first_step, "last_val_loss": last, "last_step": last_step,
                  "best_val_loss": min(loss for _, loss in points), "val_points": len(points)},
    )]


def evaluate_train_loss_fell(train_history: list, fraction: float, label: str = "") -> dg.AssetCheckResult:
    """The mean train loss of the last quarter of logged steps against `fraction` x the mean of the first quarter
    (quarters, not single points: a loss logged per step of one row is noisy). Fewer than 4 points warn."""
    losses = [float(loss) for _, loss in train_history]
    where = f"{label}: " if label else ""
    if len(losses) < 4:
        return dg.AssetCheckResult(
            check_name="train_loss_fell", passed=False, severity=dg.AssetCheckSeverity.WARN,
            description=f"{where}{len(losses)} logged train losses: fewer than 4 cannot show a fall "
                        "(lower training.logging_steps)", metadata={"train_points": len(losses)})
    quarter = len(losses) // 4
    start, end = sum(losses[:quarter]) / quarter, sum(losses[-quarter:]) / quarter
    passed = end < fraction * start
    verdict = ("the loss fell" if passed
               else "the loss did not fall: the adapter learned nothing, nothing downstream is built")
    return dg.AssetCheckResult(
        check_name="train_loss_fell", passed=passed, severity=dg.AssetCheckSeverity.ERROR,
        description=f"{where}mean train loss {start:.3f} over the first {quarter} logged steps -> {end:.3f} over the "
                    f"last {quarter} (must end below {fraction:g} x the start): {verdict}",
        metadata={"start_train_loss": start, "end_train_loss": end, "required_fraction": fraction,
                  "train_points": len(losses)})
