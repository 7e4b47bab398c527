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


def test_verdict_reads_paired_differences_and_the_reviewer_ceiling():
    board = pl.concat([_board(), pl.DataFrame([
        {"system": "reviewers", "split": "val", "f1": 0.52, "f1_ci_lo": 0.45, "f1_ci_hi": 0.6, "null_f1": 0.05,
         "recall": 0.5, "precision": 0.5, "count_oracle_f1": 0.9, "concerns_per_article": 4.0,
         "articles_in_output": 40, "n_articles": 40}])])
    paired = pl.DataFrame([
        {"split": "val", "comparison": "fine-tuned vs base", "system_a": "ft", "system_b": "base", "f1_a": 0.39,
         "f1_b": 0.0, "diff": 0.39, "diff_ci_lo": 0.33, "diff_ci_hi": 0.45, "share_not_above_zero": 0.0,
         "outcome": "ft better", "n_articles": 30},
        {"split": "val", "comparison": "fine-tuned vs bm25", "system_a": "ft", "system_b": "bm25", "f1_a": 0.39,
         "f1_b": 0.48, "diff": -0.09, "diff_ci_lo": -0.16, "diff_ci_hi": 0.01, "share_not_above_zero": 0.96,
         "outcome": "no clear difference", "n_articles": 30},
        {"split": "val", "comparison": "ensemble vs best member", "system_a": "union", "system_b": "bm25",
         "f1_a": 0.5, "f1_b": 0.48, "diff": 0.02, "diff_ci_lo": -0.01, "diff_ci_hi": 0.05,
         "share_not_above_zero": 0.2, "outcome": "no clear difference", "n_articles": 30},
    ])
    line, ensemble = verdict_lines(board, [("ft", "base")], ["bm25", "reviewers"], ["val"], paired)
    assert "(ft) (paired over 30 articles: +0.39 [+0.33, +0.45], ft better)" in line
    assert "model's 0.28 (paired over 30 articles: -0.09 [-0.16, +0.01], no clear difference)" in line
    assert "reviewers scores" not in line  # the ceiling is not a baseline to beat
    assert line.endswith("reach 0.52 [0.45, 0.60] with a null of 0.05, the human ceiling: the fine-tuned model "
                         "reaches 75% of it.")
    assert ensemble == ("val: ensemble union against its best member bm25: F1 0.50 vs 0.48 (paired over 30 articles: "
                        "+0.02 [-0.01, +0.05], no clear difference).")


def test_a_split_without_references_gets_no_comparison_of_undefined_scores():
    import polars as pl

    from bioreview_assets.reporting.verdict import verdict_lines

    row = {"split": "val", "f1": None, "f1_ci_lo": None, "f1_ci_hi": None, "null_f1": None, "matcher": "minilm"}
    board = pl.DataFrame([{**row, "system": name} for name in ("tuned", "base", "bm25")])
    assert verdict_lines(board, [("tuned", "base")], ["bm25"], ["val"]) == [
        "val: F1 is undefined (n/a): the split has no reference concerns."]
