"""Checks on the leaderboard: the configured success gate, and fine-tuned systems beating their base model."""

import dagster as dg
import polars as pl

LEADERBOARD = dg.AssetKey("leaderboard")
REPORT_CHECKS = [
    dg.AssetCheckSpec("success_gate", asset=LEADERBOARD,
                      description="Best fine-tuned system passes the configured gate (reference: F1>=0.58 or R>=0.45)"),
    dg.AssetCheckSpec("beats_base", asset=LEADERBOARD,
                      description="Every fine-tuned model with a base_system scores above it on the same split"),
]


def gate_passes(row: dict, gate) -> bool:
    # An undefined F1/recall (no reference concerns) reaches no threshold.
    hits = [row["f1"] is not None and row["f1"] >= gate.f1_min,
            row["recall"] is not None and row["recall"] >= gate.recall_min]
    return any(hits) if gate.rule == "any" else all(hits)


def evaluate_report_checks(board: pl.DataFrame, gate, fine_tuned: dict[str, str | None]) -> list[dg.AssetCheckResult]:
    """Gate and beats-base verdicts per system, derived from the leaderboard rows.

    gate: the project's GateConfig; fine_tuned: every fine-tuned model system -> its model's base_system (or None),
    in the systems' order.
    """
    split = gate.split
    rows = board.filter((pl.col("split") == split) & pl.col("system").is_in(list(fine_tuned))).to_dicts()
    verdicts = {r["system"]: "pass" if gate_passes(r, gate) else "hold" for r in rows}
    gate_text = f"F1>={gate.f1_min} {'or' if gate.rule == 'any' else 'and'} recall>={gate.recall_min} on {split}"
    best = max(rows, key=lambda r: r["f1"], default=None)
    if best is None:
        gate_description = f"no fine-tuned system scored on {split} yet: the gate ({gate_text}) cannot be judged"
    else:
        passing = sorted(s for s, v in verdicts.items() if v == "pass")
        gate_description = (f"best fine-tuned system {best['system']}: F1 {best['f1']:.3f}, recall "
                            f"{best['recall']:.3f} on {split}; gate {gate_text}: "
                            + (f"passed by {', '.join(passing)}" if passing else "not reached by any system"))
    gate_result = dg.AssetCheckResult(
        check_name="success_gate",
        passed=any(v == "pass" for v in verdicts.values()),
        severity=dg.AssetCheckSeverity.WARN,
        description=gate_description,
        metadata={"gate": f"F1>={gate.f1_min} {'or' if gate.rule == 'any' else 'and'} recall>={gate.recall_min} "
                          f"on {split}", "verdicts": dg.MetadataValue.json(verdicts)},
    )
    f1 = {(r["system"], r["split"]): r["f1"] for r in board.to_dicts()}
    comparisons = {}
    for system, base in fine_tuned.items():
        for split_name in ("val", "test"):
            if base and (system, split_name) in f1 and (base, split_name) in f1:
                comparisons[f"{system} vs {base} ({split_name})"] = round(
                    f1[(system, split_name)] - f1[(base, split_name)], 3)
    losers = {k: v for k, v in comparisons.items() if v <= 0}
    if not comparisons:
        base_description = "no fine-tuned system with a scored base_system: nothing to compare"
    elif losers:
        base_description = "; ".join(f"{k}: F1 {v:+.3f}" for k, v in losers.items()) + \
            f" - {len(losers)} of {len(comparisons)} comparisons do not beat the base model"
    else:
        base_description = (f"all {len(comparisons)} fine-tuned systems beat their base model (F1 gain "
                            f"{min(comparisons.values()):+.3f} to {max(comparisons.values()):+.3f})")
    base_result = dg.AssetCheckResult(
        check_name="beats_base",
        description=base_description,
        passed=bool(comparisons) and all(delta > 0 for delta in comparisons.values()),
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"f1_delta_over_base": dg.MetadataValue.json(comparisons),
                  "note": "no fine-tuned system with a scored base_system" if not comparisons else ""},
    )
    return [gate_result, base_result]
