"""Asset-check verdicts on hand-made inputs: each check fails exactly when its rule is broken."""

import polars as pl

from bioreview_assets.checks.benchmark import evaluate_benchmark_checks
from bioreview_assets.checks.generation import evaluate_generation_checks
from bioreview_assets.checks.systems import evaluate_cap


def test_cap_check_names_the_articles_over_the_cap():
    (ok,) = evaluate_cap({"a": [1, 2], "b": [1]}, cap=2)
    assert ok.passed and ok.metadata["max_per_article"].value == 2
    (over,) = evaluate_cap({"a": [1, 2, 3], "b": [1], "c": [1, 2, 3]}, cap=2)
    assert not over.passed and over.metadata["examples"].value == ["a", "c"]
    (uncapped,) = evaluate_cap({"a": list(range(50))}, cap=None)
    assert uncapped.passed and uncapped.metadata["max_per_article"].value == 50


def test_quarantine_check_warns_with_the_reasons():
    (clean,) = evaluate_benchmark_checks(0, {}, "q.jsonl")
    (dirty,) = evaluate_benchmark_checks(2, {"missing_field": 2}, "q.jsonl")
    assert clean.passed and not dirty.passed and dirty.metadata["reasons"].value == {"missing_field": 2}


def test_generation_checks_come_from_the_stored_rows():
    rows = pl.DataFrame({"parse_ok": [True, True, False, True], "error": [None, None, None, "timeout"]},
                        schema_overrides={"error": pl.String})
    rate, failed = evaluate_generation_checks(rows, max_rate=0.3)
    assert rate.passed and rate.metadata["parse_failure_rate"].value == 0.25
    assert not failed.passed and failed.metadata["failed"].value == 1
    (strict, _) = evaluate_generation_checks(rows, max_rate=0.2)
    assert not strict.passed


def test_val_loss_check_needs_two_points_and_a_lower_last_loss():
    from bioreview_assets.checks.training import evaluate_adapter_checks

    (down,) = evaluate_adapter_checks([[2, 3.1], [4, 2.7], [6, 2.8]])
    assert down.passed and down.metadata["best_val_loss"].value == 2.7
    (up,) = evaluate_adapter_checks([[2, 2.0], [4, 2.5]])
    assert not up.passed and up.metadata["last_step"].value == 4
    (single,) = evaluate_adapter_checks([[2, 2.0]])
    assert not single.passed and "fewer than 2" in single.metadata["reason"].value
