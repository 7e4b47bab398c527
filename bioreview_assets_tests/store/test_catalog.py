"""DuckDB views over parquet partitions written by separate processes at the same time."""

import subprocess
import sys
import textwrap

import pytest

from bioreview_assets.store.artifacts import ArtifactStore
from bioreview_assets.store.catalog import query_table, refresh_catalog

WRITER = textwrap.dedent(
    """
    import sys, polars as pl
    from bioreview_assets.store.artifacts import ArtifactStore
    from bioreview_assets.store.catalog import refresh_catalog
    store = ArtifactStore(sys.argv[1])
    system = sys.argv[2]
    store.write_parquet(pl.DataFrame({"system": [system], "split": ["val"], "matcher": ["m"], "f1": [0.5]}),
                        "scores", system, "val", "scores.parquet")
    for _ in range(20):  # hammer the catalog so the two processes overlap
        refresh_catalog(store)
    """
)


def test_views_answer_after_concurrent_writers(tmp_path):
    root = str(tmp_path / "storage")
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, root, name], stderr=subprocess.PIPE)
             for name in ("alpha", "beta")]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()[-2000:]
    text = query_table("SELECT system, f1 FROM scores ORDER BY system", store=ArtifactStore(root))
    assert "alpha" in text and "beta" in text


def test_views_pick_up_new_partitions_without_refresh(tmp_path):
    import polars as pl

    store = ArtifactStore(str(tmp_path / "storage"))
    frame = pl.DataFrame({"system": ["a"], "split": ["val"], "matcher": ["m"], "f1": [0.1]})
    store.write_parquet(frame, "scores", "a", "val", "scores.parquet")
    assert refresh_catalog(store) == ["scores"]
    store.write_parquet(frame.with_columns(pl.lit("b").alias("system")), "scores", "b", "val", "scores.parquet")
    assert "b" in query_table("SELECT system FROM scores WHERE system = 'b'", store=store)


def test_query_without_catalog_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no DuckDB catalog"):
        query_table("SELECT 1", store=ArtifactStore(str(tmp_path)))


def test_object_store_root_is_queried_through_its_own_filesystem():
    # memory:// stands in for s3://: no database file can live there, DuckDB reads through the store's fsspec fs.
    import polars as pl

    store = ArtifactStore("memory://catalog-test")
    assert not store.is_local
    with pytest.raises(FileNotFoundError, match="no parquet partitions"):
        query_table("SELECT 1", store=store)
    frame = pl.DataFrame({"system": ["a"], "split": ["val"], "matcher": ["m"], "f1": [0.25]})
    store.write_parquet(frame, "scores", "a", "val", "scores.parquet")
    store.write_parquet(frame.with_columns(pl.lit("b").alias("system")), "scores", "b", "val", "scores.parquet")
    assert refresh_catalog(store) == ["scores"]
    assert not store.exists("bioreview.duckdb")
    text = query_table("SELECT system, f1 FROM scores ORDER BY system", store=store)
    assert "a" in text and "b" in text and "0.25" in text
