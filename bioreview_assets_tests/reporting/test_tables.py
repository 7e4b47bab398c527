"""Leaderboard table rules on hand-made score rows: ranking, val->test delta, and refusing to mix versions."""

import polars as pl
import pytest

from bioreview_assets.reporting.tables import LEADERBOARD_COLUMNS, leaderboard, probe_table


def _row(system: str, split: str, f1: float, **overrides) -> dict:
    row = {column: 0.0 for column in LEADERBOARD_COLUMNS} | {"articles_in_output": 10, "n_articles": 10}
    row |= {"system": system, "split": split, "f1": f1, "matcher": "minilm", "matcher_id": "m1",
            "split_hash": f"{split}-hash", "gt_filter": "v1"}
    return row | overrides


def test_ranked_by_f1_ties_by_name_with_the_val_to_test_delta():
    scores = pl.DataFrame([_row("b", "val", 0.5), _row("a", "val", 0.5), _row("c", "val", 0.7),
                           _row("c", "test", 0.6), _row("a", "test", 0.55)])
    board = leaderboard(scores, "minilm")
    assert board.filter(pl.col("split") == "val")["system"].to_list() == ["c", "a", "b"]
    delta = dict(zip(board.filter(pl.col("split") == "test")["system"], board.filter(pl.col("split") == "test")[
        "test_minus_val_f1"]))
    assert delta == {"c": pytest.approx(-0.1), "a": pytest.approx(0.05)}
    assert board.filter(pl.col("system") == "b")["test_minus_val_f1"].to_list() == [None]  # no test row


def test_two_identities_of_one_matcher_are_refused():
    scores = pl.DataFrame([_row("a", "val", 0.5), _row("b", "val", 0.4, matcher_id="m2")])
    with pytest.raises(ValueError, match="several identities"):
        leaderboard(scores, "minilm")


def test_scores_over_two_versions_of_a_split_are_refused_naming_the_stale_systems():
    scores = pl.DataFrame([_row("a", "val", 0.5), _row("b", "val", 0.4, split_hash="old-hash"),
                           _row("a", "test", 0.5, gt_filter="v0")] + [_row("b", "test", 0.4)])
    with pytest.raises(ValueError, match=r"split '(val|test)' was scored on 2 versions") as err:
        leaderboard(scores, "minilm")
    assert "rescore_stale_schedule" in str(err.value)
    only_val = scores.filter(pl.col("split") == "val")
    with pytest.raises(ValueError, match=r"old-hash.*: b"):
        leaderboard(only_val, "minilm")


def test_probe_table_orders_steps_and_puts_the_final_adapter_last():
    board = leaderboard(pl.DataFrame([_row("m@step4", "val", 0.2), _row("m@step2", "val", 0.1),
                                      _row("m", "val", 0.3), _row("other", "val", 0.9)]), "minilm")
    table = probe_table(board)
    assert table["step"].to_list() == [2, 4, None] and table["f1"].to_list() == [0.1, 0.2, 0.3]
