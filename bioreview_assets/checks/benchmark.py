"""Checks on a benchmark split: quarantined rows are surfaced (the asset fails outright above the bad-row limit)."""

import dagster as dg


BENCHMARK_SPLIT = dg.AssetKey("benchmark_split")
BENCHMARK_CHECKS = [
    dg.AssetCheckSpec("no_quarantined_rows", asset=BENCHMARK_SPLIT,
                      description="Every row of the split file parsed and validated (quarantined rows listed)"),
]


def evaluate_benchmark_checks(n_quarantined: int, reasons: dict[str, int], quarantine_file: str,
                              label: str = "") -> list:
    """Warn (not fail the run) on quarantined rows: they are kept aside with their line numbers, never lost."""
    where = f"{label}: " if label else ""
    if n_quarantined:
        why = ", ".join(f"{n} {reason}" for reason, n in sorted(reasons.items()))
        description = f"{where}{n_quarantined} rows quarantined ({why}): kept aside in {quarantine_file}"
    else:
        description = f"{where}every row parsed and validated"
    return [dg.AssetCheckResult(
        check_name="no_quarantined_rows", passed=n_quarantined == 0, severity=dg.AssetCheckSeverity.WARN,
        description=description,
        metadata={"n_quarantined": n_quarantined, "reasons": dg.MetadataValue.json(reasons),
                  "quarantine_file": quarantine_file},
    )]
