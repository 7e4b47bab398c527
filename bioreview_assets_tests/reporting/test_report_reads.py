"""The report reads the stored scores as the graph does (issue 34): a scores partition cut or changed after its commit
is refused naming its file, never ranked; an unreadable one is an error naming its file, without a traceback from
`bioreview report`; a split without reference concerns (F1 undefined) is reported as n/a, not a crash."""

import polars as pl
import pytest

from bioreview_assets.cli import main as cli
from bioreview_assets.config.loader import load_snapshot
from bioreview_assets.reporting.report import write_report
from bioreview_assets.store.artifacts import ArtifactStore, CorruptArtifact
from bioreview_assets.store.layout import scores_dir
from bioreview_assets.store.records import ScoreRow

MATCHER = "minilm"


def _row(system, split, f1, n_gt=10):
    defined = f1 is not None
    return ScoreRow(system=system, split=split, matcher=MATCHER, matcher_id="m1", split_hash=f"h-{split}",
                    gt_filter="1", f1=f1, recall=f1, precision=0.5, recall_major=f1, null_f1=f1 and f1 / 2,
                    count_oracle_f1=f1 and 0.9, f1_ci_lo=f1 and f1 - 0.05, f1_ci_hi=f1 and f1 + 0.05,
                    recall_ci_lo=f1 and f1 - 0.05, recall_ci_hi=f1 and f1 + 0.05, precision_ci_lo=0.4,
                    precision_ci_hi=0.6, n_articles=2, n_gt=n_gt if defined else 0, n_tool=8, n_matched=4 if defined
                    else 0, concerns_per_article=4.0, articles_in_output=2, articles_missing_from_output=0,
                    unknown_prediction_ids=0)


def _scores_partition(store, system, split, f1):
    """One committed scores partition as the scores asset writes it (scores, per-article rows, metrics)."""
    defined = f1 is not None
    with store.partition(*scores_dir(system, split)) as staged:
        ScoreRow.write(store, [_row(system, split, f1)], *staged)
        store.write_parquet(pl.DataFrame({
            "system": [system] * 2, "split": [split] * 2, "matcher": [MATCHER] * 2, "matcher_id": ["m1"] * 2,
            "article_id": ["a1", "a2"], "source": ["elife"] * 2, "n_gt": [5, 5] if defined else [0, 0],
            "n_tool": [4, 4], "n_matched": [2, 2] if defined else [0, 0],
            "recall": [0.4, 0.4] if defined else [None, None], "precision": [0.5, 0.5],
            "f1": [0.44, 0.44] if defined else [None, None], "soft_credit": [0.0, 0.0], "in_output": [True, True],
            "n_figure_excluded": [0, 0]}), *staged, "articles.parquet")
        store.write_json({MATCHER: {"per_source_micro": {}, "per_category_micro": {}}}, *staged, "metrics.json")


def _report(store):
    snapshot = load_snapshot()
    return write_report(store, snapshot.project, snapshot.project_models(), snapshot.project_ensembles())


@pytest.fixture
def store(storage_root):
    return ArtifactStore(str(storage_root))


def test_a_scores_file_changed_after_its_commit_is_refused_not_ranked(store):
    _scores_partition(store, "bm25", "val", 0.46)
    _scores_partition(store, "checklist", "val", 0.44)
    path = store.path(*scores_dir("bm25", "val"), ScoreRow.FILE)
    pl.read_parquet(path).with_columns(pl.lit(0.99).alias("f1")).write_parquet(path)  # edited by hand
    with pytest.raises(CorruptArtifact, match=r"scores/bm25/val/scores.parquet: .*cut or changed after it was"):
        _report(store)


@pytest.mark.parametrize("name", [ScoreRow.FILE, "articles.parquet"])
def test_an_unreadable_scores_file_is_named_by_bioreview_report_without_a_traceback(store, capsys, name):
    _scores_partition(store, "bm25", "val", 0.46)
    folder = store.path(*scores_dir("bm25", "val"))
    store.fs.rm(f"{folder}/manifest.json")  # an older partition: the parser decides
    with open(f"{folder}/{name}", "r+b") as handle:
        handle.truncate(20)
    assert cli.main(["report"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"bioreview report: error: {folder}/{name}: not readable as parquet")
    assert "Traceback" not in err


def test_scores_of_a_split_without_reference_concerns_keep_float_columns(store):
    _scores_partition(store, "bm25", "val", None)
    schema = pl.read_parquet(store.path(*scores_dir("bm25", "val"), ScoreRow.FILE)).schema
    assert schema["f1"] == pl.Float64 and schema["recall"] == pl.Float64 and schema["f1_ci_lo"] == pl.Float64


def test_a_split_without_reference_concerns_is_reported_as_undefined_not_a_crash(store):
    """Every scored split without references (F1 None in every row, written as columns of nulls by an older
    version): the report shows n/a instead of failing in polars on a column of nulls."""
    for system in ("bm25", "checklist"):
        _scores_partition(store, system, "val", None)
        folder = scores_dir(system, "val")
        store.fs.rm(store.path(*folder, "manifest.json"))
        store.write_parquet(pl.DataFrame([_row(system, "val", None).to_json()]), *folder, ScoreRow.FILE)
        assert store.read_parquet(*folder, ScoreRow.FILE).schema["f1"] == pl.Null
    report = _report(store)
    assert report.leaderboard["f1"].to_list() == [None, None]
    assert "bm25" in store.read_bytes("reports", "leaderboard.md").decode()


def test_a_split_without_references_beside_a_scored_one(store):
    _scores_partition(store, "bm25", "val", 0.46)
    _scores_partition(store, "bm25", "test", None)
    board = _report(store).leaderboard
    assert board.filter(pl.col("split") == "test")["f1"].to_list() == [None]
    assert board.filter(pl.col("split") == "val")["f1"].to_list() == [0.46]
