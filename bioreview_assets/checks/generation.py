"""Checks on generations: parse failure rate under the configured limit, no failed generations left."""

import dagster as dg
import polars as pl

GENERATIONS = dg.AssetKey("generations")
GENERATION_CHECKS = [
    dg.AssetCheckSpec("parse_failure_rate", asset=GENERATIONS, description="Share of outputs with no parsed concern"),
    dg.AssetCheckSpec("no_failed_generations", asset=GENERATIONS, description="Every article produced an output"),
]


def evaluate_generation_checks(table: pl.DataFrame, max_rate: float) -> list[dg.AssetCheckResult]:
    """Derived from the stored rows (never from in-memory counters, W12)."""
    rate = float((~table["parse_ok"]).mean()) if len(table) else 1.0
    failed = int(table["error"].is_not_null().sum())
    return [
        dg.AssetCheckResult(
            check_name="parse_failure_rate",
            passed=rate <= max_rate,
            metadata={"parse_failure_rate": round(rate, 4), "max_rate": max_rate},
        ),
        dg.AssetCheckResult(check_name="no_failed_generations", passed=failed == 0, metadata={"failed": failed}),
    ]
