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


def test_every_check_result_says_whose_it_is_and_why():
    import polars as pl

    from bioreview_assets.checks.scoring import evaluate_score_checks
    from bioreview_assets.checks.training import evaluate_adapter_checks

    rows = pl.DataFrame({"parse_ok": [True, False, False, False], "error": [None, None, None, "boom"]})
    rate, failed = evaluate_generation_checks(rows, max_rate=0.3, label="smollm2-135m / val")
    assert rate.description.startswith("smollm2-135m / val: 3 of 4 outputs (75.0%) had no parsable concern")
    assert "does not follow the output format" in rate.description
    assert failed.description == ("smollm2-135m / val: 1 of 4 articles failed to generate (errors kept in the log; "
                                  "re-run retries them)")
    (score,) = evaluate_score_checks({"f1_micro": 0.477, "null_f1": 0.341, "count_oracle_f1": 0.8}, label="bm25 / val")
    assert not score.passed
    assert score.description == ("bm25 / val: null F1 0.341 is 71% of F1 0.477 (limit 50%): most of this F1 is "
                                 "earned by the concern count alone")
    (empty,) = evaluate_score_checks({"f1_micro": 0.0, "null_f1": 0.0, "count_oracle_f1": 0.5}, label="base / val")
    assert empty.passed and "not applicable" in empty.description
    (cap,) = evaluate_cap({"a": [1, 2, 3]}, cap=2, label="x / val")
    assert cap.description.startswith("x / val: 1 of 1 articles exceed the cap of 2")
    (loss,) = evaluate_adapter_checks([[2, 3.0], [4, 2.4]], label="tiny-random")
    assert loss.description == ("tiny-random: val loss 3.000 at step 2 -> 2.400 at step 4 (-20.0%): the adapter "
                                "learned the task")
    (quarantine,) = evaluate_benchmark_checks(2, {"missing_field": 2}, "q.jsonl", label="val")
    assert quarantine.description == "val: 2 rows quarantined (2 missing_field): kept aside in q.jsonl"


def test_train_loss_check_blocks_a_flat_loss_and_passes_a_falling_one():
    import dagster as dg

    from bioreview_assets.checks.training import ADAPTER_CHECKS, evaluate_train_loss_fell

    assert {spec.name: spec.blocking for spec in ADAPTER_CHECKS}["train_loss_fell"] is True
    falling = evaluate_train_loss_fell([[i, 3.0 - 0.2 * i] for i in range(8)], fraction=0.9)
    start, end = falling.metadata["start_train_loss"].value, falling.metadata["end_train_loss"].value
    assert falling.passed and end < 0.9 * start
    flat = evaluate_train_loss_fell([[i, 2.0 + 0.01 * (-1) ** i] for i in range(8)], fraction=0.9, label="m")
    assert not flat.passed and flat.severity == dg.AssetCheckSeverity.ERROR and "learned nothing" in flat.description
    short = evaluate_train_loss_fell([[1, 3.0], [2, 1.0]], fraction=0.9)
    assert not short.passed and short.severity == dg.AssetCheckSeverity.WARN
