"""The DuckDB catalog: views over the parquet partitions, so GPU pods never fight over one writer lock.

Readers never touch the database file: `query_table` (and `bioreview sql`) builds the same views in an in-memory
database, so a reader cannot block a writer or another reader. The file `<root>/bioreview.duckdb` is for people who
open it with the duckdb CLI; its views read globs at query time, so it is written only when a view first gets data
(a sidecar JSON records what the file holds), and a refresh that finds the file locked gives up after a short wait
instead of failing the asset whose data has already landed.

The query surface is read-only: only SELECT/EXPLAIN statements are run (DuckDB's parser says which), and once the
views exist the connection may read nothing outside the storage root (external access off, configuration locked),
so `bioreview sql` cannot COPY, ATTACH, read /etc/passwd or fetch a URL. The files a query's views read are checked
against their partitions' manifests first: a partition cut or changed after its commit is refused, naming the file.
A refresh rebuilds the file's views from the store whenever the file changed since it was written (a view dropped or
altered by hand does not persist).
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass

import duckdb

from bioreview_assets.store.artifacts import MANIFEST, ArtifactStore, CorruptArtifact
from bioreview_assets.store.benchmark_tables import ARTICLES_FILE, GT_FILE
from bioreview_assets.store.layout import REPORT_DIR, benchmark_dir, concerns_dir, generations_dir, scores_dir
from bioreview_assets.store.records import ScoreRow

log = logging.getLogger(__name__)

CATALOG_FILE = "bioreview.duckdb"
VIEWS_FILE = "bioreview.duckdb.views.json"  # the view statements the file holds, readable without opening it


def _every(folder: tuple[str, ...], file: str) -> str:
    """The glob of `file` in every partition of a layout folder (its partition keys given as "*")."""
    return "/".join((*folder, file))


# view name -> glob under the storage root, derived from the store's layout (a folder that moves there moves here).
# Views resolve the glob at query time: a new partition is visible without touching the database file again.
VIEWS = {
    "articles": _every(benchmark_dir("*"), ARTICLES_FILE),
    "gt_concerns": _every(benchmark_dir("*"), GT_FILE),
    "generations": _every(generations_dir("*", "*"), "generations.parquet"),
    "generated_concerns": _every(concerns_dir("*", "*"), "concerns.parquet"),
    "scores": _every(scores_dir("*", "*"), ScoreRow.FILE),
    "article_scores": _every(scores_dir("*", "*"), "articles.parquet"),
    "matches": _every(scores_dir("*", "*"), "matches.parquet"),
    # paired bootstrap differences between systems (written with the leaderboard report)
    "paired_differences": _every(REPORT_DIR, "paired.parquet"),
}
LOCK_WAIT_S = 2.0  # how long a refresh waits for another process's lock before deferring
QUERY_ATTEMPTS = 3  # a partition replaced between glob and read is retried, not reported
# Statements a query may hold (DESCRIBE, SHOW, SUMMARIZE and FROM-first queries parse as SELECT).
QUERY_STATEMENTS = (duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN)


class ReadOnlyQuery(ValueError):
    """A statement other than a query was given to the read-only SQL surface."""


@dataclass(frozen=True)
class RefreshResult:
    """Which views have data, and what the refresh did to the database file (for asset metadata)."""

    views: list[str]
    status: str


def catalog_path(store: ArtifactStore) -> str:
    return store.path(CATALOG_FILE)


def view_statements(store: ArtifactStore, names: list[str] | None = None) -> dict[str, str]:
    """View name -> CREATE VIEW statement, for every view (of `names`, default all) whose files exist."""
    statements = {}
    for view, pattern in VIEWS.items():
        if (names is None or view in names) and store.glob(pattern):
            source = f"read_parquet('{store.url(pattern)}', union_by_name = true, filename = true)"
            statements[view] = f"CREATE OR REPLACE VIEW {view} AS SELECT * FROM {source}"
    return statements


def refresh_catalog(store: ArtifactStore, wait_s: float = LOCK_WAIT_S, force: bool = False) -> RefreshResult:
    """Create the views that have data in <root>/bioreview.duckdb when the file lacks them; never raises.

    An object-store root (s3://...) holds no database file (DuckDB needs a local, lockable file): `query_table`
    builds the views in memory there, so this only reports which views exist.
    """
    statements = view_statements(store)
    if not store.is_local:
        return RefreshResult(list(statements), "in memory (object-store root: no database file)")
    if not force and store.exists(CATALOG_FILE) and _installed(store) == _record(store, statements):
        return RefreshResult(list(statements), "up to date")  # the common case: no lock taken at all
    deadline = time.monotonic() + wait_s
    while True:
        try:
            with duckdb.connect(catalog_path(store)) as con:
                _drop_everything(con)  # rebuilt from the store: nothing added or dropped by hand survives
                for statement in statements.values():
                    con.execute(statement)
            store.write_json(_record(store, statements), VIEWS_FILE)
            return RefreshResult(list(statements), f"views written: {', '.join(statements) or 'none'}")
        except (duckdb.Error, OSError) as err:
            locked = "lock" in str(err).lower()
            if locked and time.monotonic() < deadline:
                time.sleep(0.1)
                continue
            # The partition's parquet is already written and `bioreview sql` never needs this file: report, go on.
            reason = "locked by another process" if locked else f"{type(err).__name__}: {err}"
            log.warning("catalog %s not updated (%s); a later refresh will add the views", catalog_path(store), reason)
            return RefreshResult(list(statements), f"deferred ({reason}); `bioreview sql` sees the data already")


def _record(store: ArtifactStore, statements: dict[str, str]) -> dict:
    """What the sidecar records: the views, and the file's size and mtime (an edit by hand changes them; a reader
    that only queries does not)."""
    stat = store.fs.info(catalog_path(store)) if store.exists(CATALOG_FILE) else {}
    return {"views": statements, "file": [stat.get("size"), str(stat.get("mtime"))]}


def _drop_everything(con: duckdb.DuckDBPyConnection) -> None:
    for name, kind in con.execute(
            "SELECT view_name, 'VIEW' FROM duckdb_views() WHERE NOT internal AND database_name = current_database() "
            "UNION ALL SELECT table_name, 'TABLE' FROM duckdb_tables() WHERE database_name = current_database()"
    ).fetchall():
        con.execute(f'DROP {kind} IF EXISTS "{name}" CASCADE')


def _installed(store: ArtifactStore) -> dict | None:
    try:
        return store.read_json(VIEWS_FILE)
    except (OSError, ValueError):
        return None


def _connect(store: ArtifactStore, sql: str) -> duckdb.DuckDBPyConnection:
    """An in-memory database holding the views the query names (all when it names none), read through the store."""
    mentioned = [name for name in VIEWS if re.search(rf"\b{name}\b", sql, re.IGNORECASE)]
    statements = view_statements(store, mentioned or None)
    if not statements and not view_statements(store):
        raise FileNotFoundError(f"no parquet partitions under {store.root}: materialise some scores first "
                                f"(`make demo`)")
    con = duckdb.connect()
    try:
        _check_read_only(con, sql)
        _check_committed(store, list(statements))
    except (ReadOnlyQuery, duckdb.Error, CorruptArtifact):
        con.close()
        raise
    if not store.is_local:
        # DuckDB reads s3://... through the same fsspec filesystem (and credentials) the store writes with.
        con.register_filesystem(store.fs)
    for statement in statements.values():
        con.execute(statement)
    # From here on the query may read the storage root only, and cannot switch that back on.
    root = store.url("").rstrip("/") + "/"
    con.execute(f"SET allowed_directories = ['{_quoted(root)}']")
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    return con


def _check_committed(store: ArtifactStore, views: list[str]) -> None:
    """The files these views read, as their partitions were committed: a file cut or changed after its commit is a
    CorruptArtifact naming it (store.read_bytes checks it against the partition's manifest), never answered from.
    Files of partitions without a manifest (written before partitions were committed as a unit) are read as is."""
    for view in views:
        for path in store.glob(VIEWS[view]):
            parts = store.parts_of(path)
            if store.exists(*parts[:-1], MANIFEST):
                store.read_bytes(*parts)


def _quoted(text: str) -> str:
    return text.replace("'", "''")


def _check_read_only(con: duckdb.DuckDBPyConnection, sql: str) -> None:
    """Refuse anything but queries (COPY, ATTACH, CREATE, DROP, SET, INSTALL...), named by DuckDB's own parser."""
    refused = [statement.type.name for statement in con.extract_statements(sql)
               if statement.type not in QUERY_STATEMENTS]
    if refused:
        raise ReadOnlyQuery(f"bioreview sql is read-only: {', '.join(refused)} statements are refused "
                            f"(only SELECT and EXPLAIN queries over the views)")


def query_table(sql: str, max_rows: int = 50, *, store: ArtifactStore) -> str:
    """Run SQL against the catalog views and format the result as a text table."""
    import polars as pl

    frame = query_frame(sql, store)
    with pl.Config(tbl_rows=max_rows, tbl_cols=30, fmt_str_lengths=60, tbl_width_chars=200):
        return str(frame)


def query_frame(sql: str, store: ArtifactStore):
    """Run SQL against the catalog views (in memory, no lock on any file) and return a polars frame."""
    for attempt in range(QUERY_ATTEMPTS):
        try:
            with _connect(store, sql) as con:
                return con.sql(sql).pl()
        except duckdb.CatalogException as err:
            with_data = ", ".join(view_statements(store)) or "none yet"
            raise ValueError(f"{err}\nviews with data under {store.root}: {with_data}") from err
        except (duckdb.IOException, CorruptArtifact):
            # A partition written or replaced between the glob and the read (or between a file and its manifest):
            # the next attempt sees the new one; a file that is still not what was committed is the error.
            if attempt == QUERY_ATTEMPTS - 1:
                raise
            time.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable: the last attempt returns or raises")
