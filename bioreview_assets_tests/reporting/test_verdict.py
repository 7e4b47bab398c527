"""The demo's verdict names the base, the fine-tuned F1 with its CI, and how much of each F1 the null reaches."""

import polars as pl

from bioreview_assets.reporting.tables import headline
from bioreview_assets.reporting.verdict import verdict_lines


def _board():
    rows = [
        ("ft", 0.39, 0.34, 0.44, 0.11, 4.9), ("base", 0.0, 0.0, 0.0, 0.0, 0.0), ("bm25", 0.48, 0.42, 0.53, 0.34, 12.0),
        ("ft~raw", 0.35, 0.3, 0.4, 0.1, 6.0),
    ]
    return pl.DataFrame([
        {"system": s, "split": "val", "f1": f, "f1_ci_lo": lo, "f1_ci_hi": hi, "null_f1": n, "recall": f,
         "precision": f, "count_oracle_f1": 0.8, "concerns_per_article": c, "articles_in_output": 30, "n_articles": 30}
        for s, f, lo, hi, n, c in rows])


def test_verdict_sentence_reads_the_table():
    (line,) = verdict_lines(_board(), [("ft", "base")], ["bm25"], ["val"])
    assert line.startswith("val: fine-tuning raised F1 from 0.00 (base) to 0.39 [0.34, 0.44] (ft)")
    assert "null reaches 28% of the fine-tuned F1" in line and "bm25 scores 0.48, but its null reaches 71%" in line
    assert line.endswith("above the null it scores 0.14 against the fine-tuned model's 0.28.")


def test_verdict_says_when_fine_tuning_did_not_help():
    board = _board().with_columns(pl.when(pl.col("system") == "ft").then(0.0).otherwise(pl.col("f1")).alias("f1"))
    (line,) = verdict_lines(board, [("ft", "base")], [], ["val"])
    assert line.startswith("val: fine-tuning did not raise F1 from 0.00 (base) to 0.00")


def test_headline_has_default_rows_only_and_marks_empty_systems():
    table = headline(_board(), "val")
    assert table["system"].to_list() == ["ft", "base (produced nothing)", "bm25"]
    assert table["F1 [95% CI]"][0] == "0.390 [0.340, 0.440]"
    assert table["F1 above null"][2] == 0.48 - 0.34 and table["articles"][0] == "30/30"


def test_a_split_without_references_gets_no_comparison_of_undefined_scores():
    import polars as pl

    from bioreview_assets.reporting.verdict import verdict_lines

    row = {"split": "val", "f1": None, "f1_ci_lo": None, "f1_ci_hi": None, "null_f1": None, "matcher": "minilm"}
    board = pl.DataFrame([{**row, "system": name} for name in ("tuned", "base", "bm25")])
    assert verdict_lines(board, [("tuned", "base")], ["bm25"], ["val"]) == [
        "val: F1 is undefined (n/a): the split has no reference concerns."]
