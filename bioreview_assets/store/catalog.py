"""The DuckDB catalog: views over the parquet partitions, so GPU pods never fight over one writer lock."""

from __future__ import annotations

import time

import duckdb

from bioreview_assets.store.artifacts import ArtifactStore

CATALOG_FILE = "bioreview.duckdb"
# view name -> glob under the storage root. Views resolve the glob at query time: a new partition is visible
# without touching the database file again.
VIEWS = {
    "articles": "benchmark/*/articles.parquet",
    "gt_concerns": "benchmark/*/gt_concerns.parquet",
    "generations": "generations/*/*/generations.parquet",
    "generated_concerns": "concerns/*/*/concerns.parquet",
    "scores": "scores/*/*/scores.parquet",
    "article_scores": "scores/*/*/articles.parquet",
    "matches": "scores/*/*/matches.parquet",
}


def catalog_path(store: ArtifactStore) -> str:
    return store.path(CATALOG_FILE)


def view_statements(store: ArtifactStore) -> dict[str, str]:
    """View name -> CREATE VIEW statement, for every view whose files exist under the store's root."""
    statements = {}
    for view, pattern in VIEWS.items():
        if store.glob(pattern):
            source = f"read_parquet('{store.url(pattern)}', union_by_name = true, filename = true)"
            statements[view] = f"CREATE OR REPLACE VIEW {view} AS SELECT * FROM {source}"
    return statements


def refresh_catalog(store: ArtifactStore, attempts: int = 40) -> list[str]:
    """(Re)create the views that have data in <root>/bioreview.duckdb; retried while another process holds the lock.

    An object-store root (s3://...) holds no database file (DuckDB needs a local, lockable file):
    `query_table` builds the same views in memory there, so this only reports which views exist.
    """
    statements = view_statements(store)
    if not store.is_local:
        return list(statements)
    for attempt in range(attempts):
        try:
            with duckdb.connect(catalog_path(store)) as con:
                for statement in statements.values():
                    con.execute(statement)
            return list(statements)
        except duckdb.IOException as err:  # "Could not set lock on file": another pod is refreshing right now
            if "lock" not in str(err).lower() or attempt == attempts - 1:
                raise
            time.sleep(0.25)
    raise AssertionError("unreachable: the last attempt returns or raises")


def _connect(store: ArtifactStore) -> duckdb.DuckDBPyConnection:
    """Read-only connection to the catalog file, or (object-store root) in-memory views read through the store's fs."""
    if store.is_local:
        path = catalog_path(store)
        if not store.exists(CATALOG_FILE):
            raise FileNotFoundError(f"no DuckDB catalog at {path}: materialise some scores first (`make demo`)")
        return duckdb.connect(path, read_only=True)
    statements = view_statements(store)
    if not statements:
        raise FileNotFoundError(f"no parquet partitions under {store.root}: materialise some scores first")
    con = duckdb.connect()
    # DuckDB reads s3://... through the same fsspec filesystem (and credentials) the store writes with.
    con.register_filesystem(store.fs)
    for statement in statements.values():
        con.execute(statement)
    return con


def query_table(sql: str, max_rows: int = 50, store: ArtifactStore | None = None) -> str:
    """Run SQL against the catalog views and format the result as a text table."""
    with _connect(store or ArtifactStore()) as con:
        frame = con.sql(sql).pl()
    import polars as pl

    with pl.Config(tbl_rows=max_rows, tbl_cols=30, fmt_str_lengths=60, tbl_width_chars=200):
        return str(frame)
