"""Checks on generations: parse failure rate under the configured limit, no failed generations left."""

import dagster as dg
import polars as pl


GENERATIONS = dg.AssetKey("generations")
GENERATION_CHECKS = [
    dg.AssetCheckSpec("parse_failure_rate", asset=GENERATIONS, description="Share of outputs with no parsed concern"),
    dg.AssetCheckSpec("no_failed_generations", asset=GENERATIONS, description="Every article produced an output"),
]


def evaluate_generation_checks(table: pl.DataFrame, max_rate: float, label: str = "") -> list[dg.AssetCheckResult]:
    """Derived from the stored rows (never from in-memory counters, W12). label: the partition (model / split)."""
    n = len(table)
    rate = float((~table["parse_ok"]).mean()) if n else 1.0
    unparsed = int((~table["parse_ok"]).sum()) if n else 0
    failed = int(table["error"].is_not_null().sum())
    who = label or "this model"
    if not n:
        rate_text = f"{who}: no outputs at all, so nothing parsed"
    elif rate <= max_rate:
        rate_text = f"{who}: {unparsed} of {n} outputs ({rate:.1%}) had no parsable concern (limit {max_rate:.0%})"
    else:
        rate_text = (f"{who}: {unparsed} of {n} outputs ({rate:.1%}) had no parsable concern (limit {max_rate:.0%}): "
                     "the model does not follow the output format; its scores undercount it")
    failed_text = (f"{who}: {failed} of {n} articles failed to generate (errors kept in the log; re-run retries them)"
                   if failed else f"{who}: all {n} articles produced an output")
    return [
        dg.AssetCheckResult(
            check_name="parse_failure_rate",
            passed=rate <= max_rate,
            description=rate_text,
            metadata={"parse_failure_rate": round(rate, 4), "max_rate": max_rate, "outputs": n},
        ),
        dg.AssetCheckResult(check_name="no_failed_generations", passed=failed == 0, description=failed_text,
                            metadata={"failed": failed}),
    ]
