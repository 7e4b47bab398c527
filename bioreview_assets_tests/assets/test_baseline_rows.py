"""The checklist and the reviewer ceiling are rows wherever BM25 is one: scores, SQL, leaderboard, verdict inputs."""

import dagster as dg
import polars as pl
import pytest

from bioreview_assets.core.reviewer_ceiling import reviewer_units
from bioreview_assets.definitions import build_assets, build_resources
from bioreview_assets.store.artifacts import ArtifactStore
from bioreview_assets.store.catalog import query_frame
from bioreview_assets.store.concern_table import read_concerns
from bioreview_assets.store.layout import read_articles

BASELINES = ("bm25", "checklist", "reviewers")


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("BIOREVIEW_STORAGE", str(tmp_path_factory.mktemp("baselines") / "storage"))
    instance = dg.DagsterInstance.ephemeral()

    def run(asset, partition):
        result = dg.materialize(build_assets(), selection=[asset], partition_key=partition, instance=instance,
                                resources=build_resources())
        assert result.success, (asset, partition)
        return result

    for split in ("train", "val"):
        run("benchmark_split", split)
    results = {}
    for system in BASELINES:
        key = dg.MultiPartitionKey({"system": system, "split": "val"})
        run("concerns", key)
        results[system] = run("scores", key)
    results["leaderboard"] = run("leaderboard", None)
    yield ArtifactStore(), results
    mp.undo()


def test_every_baseline_has_a_score_row_in_sql(scored):
    store, _ = scored
    rows = query_frame("SELECT system, f1, null_f1, n_articles FROM scores WHERE matcher = 'minilm' AND split = 'val'",
                       store)
    assert set(rows["system"]) == set(BASELINES)
    board = pl.read_json(store.read_bytes("reports", "leaderboard.json"))
    assert set(BASELINES) <= set(board["system"])


def test_the_checklist_is_one_list_and_its_null_is_its_f1(scored):
    store, _ = scored
    concerns = read_concerns(store, "checklist", "val")
    lists = {tuple(c.text for c in items) for items in concerns.values()}
    assert len(lists) == 1 and 1 <= len(next(iter(lists))) <= 20
    meta = store.read_json("concerns", "checklist", "val", "meta.json")
    assert meta["k"] == len(next(iter(lists))) and meta["matcher"]["hash"]
    row = query_frame("SELECT f1, null_f1 FROM scores WHERE system = 'checklist' AND matcher = 'minilm'", store).row(0)
    # The same list everywhere: the shuffled null pairs the same concerns with a permutation of the references.
    assert row[0] == pytest.approx(row[1])


def test_the_reviewer_ceiling_scores_units_of_multi_reviewer_articles(scored):
    store, results = scored
    units = reviewer_units(read_articles(store, "val"))
    metrics = store.read_json("scores", "reviewers", "val", "metrics.json")["minilm"]
    assert metrics["n_articles"] == len(units) and metrics["n_clusters"] == len({u.article_id for u in units})
    assert 0 < metrics["f1_micro"] < 1 and metrics["null_f1"] < metrics["f1_micro"]
    meta = results["reviewers"].get_asset_materialization_events()[0].materialization.metadata
    assert "reviewer units of" in meta["summary"].value
