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
    assert refresh_catalog(store).views == ["scores"]
    store.write_parquet(frame.with_columns(pl.lit("b").alias("system")), "scores", "b", "val", "scores.parquet")
    assert refresh_catalog(store).status == "up to date"  # no new view: the file is not even opened
    assert "b" in query_table("SELECT system FROM scores WHERE system = 'b'", store=store)


def test_query_without_data_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no parquet partitions"):
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
    assert refresh_catalog(store).views == ["scores"]
    assert not store.exists("bioreview.duckdb")
    text = query_table("SELECT system, f1 FROM scores ORDER BY system", store=store)
    assert "a" in text and "b" in text and "0.25" in text


HOLDER = textwrap.dedent(
    """
    import sys, duckdb
    con = duckdb.connect(sys.argv[1], read_only=sys.argv[2] == "ro")
    print("holding", flush=True)
    sys.stdin.read()  # until the test closes our stdin
    """
)


def _hold(path: str, mode: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, path, mode], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdout.readline().strip() == b"holding"
    return proc


def _release(proc: subprocess.Popen) -> None:
    proc.stdin.close()
    assert proc.wait(timeout=30) == 0


def _scores_frame(system: str):
    import polars as pl

    return pl.DataFrame({"system": [system], "split": ["val"], "matcher": ["m"], "f1": [0.5]})


@pytest.mark.parametrize("mode", ["ro", "rw"])
def test_a_locked_catalog_defers_the_refresh_instead_of_failing(tmp_path, mode):
    store = ArtifactStore(str(tmp_path / "storage"))
    store.write_parquet(_scores_frame("a"), "benchmark", "val", "articles.parquet")
    assert refresh_catalog(store).status == "views written: articles"
    holder = _hold(store.path("bioreview.duckdb"), mode)  # e.g. `duckdb bioreview.duckdb` left open
    try:
        store.write_parquet(_scores_frame("a"), "scores", "a", "val", "scores.parquet")
        result = refresh_catalog(store, wait_s=0.5)
        assert result.status.startswith("deferred (locked by another process)") and result.views == [
            "articles", "scores"]
        # Readers build their views in memory: the new view is queryable while the file is locked.
        assert "0.5" in query_table("SELECT f1 FROM scores", store=store)
    finally:
        _release(holder)
    assert refresh_catalog(store).status == "views written: articles, scores"


def test_an_up_to_date_catalog_needs_no_lock(tmp_path):
    store = ArtifactStore(str(tmp_path / "storage"))
    store.write_parquet(_scores_frame("a"), "scores", "a", "val", "scores.parquet")
    refresh_catalog(store)
    holder = _hold(store.path("bioreview.duckdb"), "rw")
    try:
        store.write_parquet(_scores_frame("b"), "scores", "b", "val", "scores.parquet")
        assert refresh_catalog(store, wait_s=0).status == "up to date"
    finally:
        _release(holder)


def test_a_sql_mistake_names_the_views_with_data(tmp_path):
    store = ArtifactStore(str(tmp_path / "storage"))
    store.write_parquet(_scores_frame("a"), "scores", "a", "val", "scores.parquet")
    with pytest.raises(ValueError, match="views with data under .*: scores"):
        query_table("SELECT * FROM matches", store=store)


READER = textwrap.dedent(
    """
    import contextlib, io, json, sys
    from bioreview_assets.cli.main import main
    root, n = sys.argv[1], int(sys.argv[2])
    import os
    os.environ["BIOREVIEW_STORAGE"] = root
    errors, counts = [], []
    for i in range(n):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["sql", "SELECT count(*) AS n, sum(f1) AS total FROM scores"])
        if code != 0:
            errors.append(err.getvalue()[-300:])
            continue
        rows = [line for line in out.getvalue().splitlines() if line.startswith("│")]
        n, total = (cell.strip() for cell in rows[-1].strip("│ ").split("┆"))
        if float(total) != 0.5 * int(n):  # every partition holds one row with f1 0.5: a torn read would show
            errors.append(f"inconsistent answer: {n} rows, f1 sum {total}")
        counts.append(int(n))
    print(json.dumps({"errors": errors, "counts": counts}))
    """
)

REFRESHER = textwrap.dedent(
    """
    import sys, time, polars as pl
    from bioreview_assets.store.artifacts import ArtifactStore
    from bioreview_assets.store.catalog import refresh_catalog
    store = ArtifactStore(sys.argv[1])
    i = 0
    while not store.exists("stop"):
        i += 1
        name = f"{sys.argv[2]}-{i}"
        store.write_parquet(pl.DataFrame({"system": [name], "split": ["val"], "matcher": ["m"], "f1": [0.5]}),
                            "scores", name, "val", "scores.parquet")
        status = refresh_catalog(store, force=True).status  # force: take the write lock every time
        assert status.startswith(("views written", "deferred")), status
        time.sleep(0.05)
    print(i)
    """
)


def test_three_readers_x_150_queries_during_refreshes_see_no_error_and_no_corruption(tmp_path):
    import json

    import duckdb

    root = str(tmp_path / "storage")
    store = ArtifactStore(root)
    store.write_parquet(_scores_frame("s0"), "scores", "s0", "val", "scores.parquet")
    refresh_catalog(store)
    refreshers = [subprocess.Popen([sys.executable, "-c", REFRESHER, root, name], stdout=subprocess.PIPE)
                  for name in ("r1", "r2")]
    readers = [subprocess.Popen([sys.executable, "-c", READER, root, "150"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE) for _ in range(3)]
    results = []
    for proc in readers:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err.decode()[-2000:]
        results.append(json.loads(out))
    store.write_bytes(b"", "stop")
    written = [int(proc.communicate(timeout=120)[0]) for proc in refreshers]
    assert all(proc.returncode == 0 for proc in refreshers)
    assert [r["errors"] for r in results] == [[], [], []]
    assert all(len(r["counts"]) == 150 for r in results)
    for r in results:  # every answer is a whole number of partitions, growing as partitions land
        assert r["counts"] == sorted(r["counts"]) and r["counts"][0] >= 1
    assert sum(written) > 2  # the refreshes really overlapped the queries
    with duckdb.connect(store.path("bioreview.duckdb"), read_only=True) as con:  # the file is intact
        assert con.execute("SELECT count(*) FROM scores").fetchone()[0] == 1 + sum(written)


def test_a_split_without_reference_concerns_keeps_the_gt_view_working(tmp_path):
    """gt_concerns.parquet of a split whose articles have no concerns keeps its columns (issue 34): the view over
    every split's file still answers."""
    from bioreview_assets.store.benchmark_tables import gt_table as _gt_table
    from bioreview_assets.core.schema import Article
    from bioreview_assets.sample.generator import generate_sample_splits

    store = ArtifactStore(str(tmp_path / "storage"))
    samples = generate_sample_splits()
    full = [Article.model_validate(a) for a in samples["val"][:2]]
    empty = [Article.model_validate({**a, "concerns": []}) for a in samples["test"][:2]]
    store.write_parquet(_gt_table(full, "val"), "benchmark", "val", "gt_concerns.parquet")
    empty_table = _gt_table(empty, "test")
    assert empty_table.height == 0 and "concern_id" in empty_table.columns
    store.write_parquet(empty_table, "benchmark", "test", "gt_concerns.parquet")
    text = query_table("SELECT split, count(concern_id) AS n FROM gt_concerns GROUP BY split", store=store)
    assert "val" in text


@pytest.mark.parametrize("sql, refused", [
    ("COPY (SELECT 1) TO '{tmp}/x.csv'", "COPY"),
    ("COPY (SELECT 'x' AS system) TO '{root}/scores/a/val/scores.parquet'", "COPY"),
    ("ATTACH '{root}/bioreview.duckdb' AS c", "ATTACH"),
    ("DROP VIEW scores", "DROP"),
    ("SET enable_external_access = true", "SET"),
    ("SELECT * FROM read_csv('/etc/passwd')", "Permission"),
    ("SELECT * FROM read_csv('http://127.0.0.1:9/x.csv')", "Permission"),
])
def test_the_sql_surface_is_read_only(tmp_path, sql, refused):
    import duckdb
    import polars as pl

    store = ArtifactStore(str(tmp_path / "storage"))
    store.write_parquet(_scores_frame("a"), "scores", "a", "val", "scores.parquet")
    with pytest.raises((ValueError, duckdb.Error), match=refused):
        query_table(sql.format(tmp=tmp_path, root=store.root), store=store)
    assert not (tmp_path / "x.csv").exists()
    assert pl.read_parquet(store.path("scores", "a", "val", "scores.parquet"))["system"].to_list() == ["a"]
    assert "0.5" in query_table("SELECT f1 FROM scores", store=store)


def test_a_view_dropped_in_the_catalog_file_is_rebuilt_on_refresh(tmp_path):
    import duckdb

    store = ArtifactStore(str(tmp_path / "storage"))
    store.write_parquet(_scores_frame("a"), "scores", "a", "val", "scores.parquet")
    refresh_catalog(store)
    with duckdb.connect(store.path("bioreview.duckdb")) as con:  # someone with the duckdb CLI
        con.execute("DROP VIEW scores")
        con.execute("CREATE TABLE junk AS SELECT 1 AS x")
    assert refresh_catalog(store).status == "views written: scores"
    with duckdb.connect(store.path("bioreview.duckdb"), read_only=True) as con:
        assert con.execute("SELECT f1 FROM scores").fetchall() == [(0.5,)]
        assert con.execute("SELECT count(*) FROM duckdb_tables()").fetchone() == (0,)


def test_a_partition_cut_or_changed_after_its_commit_is_refused_by_sql(tmp_path, capsys, monkeypatch):
    """Issue 34 item 3 on the SQL surface: the views read committed partitions only as they were committed (a
    concerns table cut from 6 rows to 2, a score edited in place) -- the query is refused naming the file, never
    answered from the cut file. Partitions without a manifest (written before issue 34) are read as they are."""
    import polars as pl

    from bioreview_assets.cli import main as cli
    from bioreview_assets.store.artifacts import CorruptArtifact

    store = ArtifactStore(str(tmp_path / "storage"))
    for system in ("a", "b"):
        with store.partition("concerns", system, "val") as staged:
            store.write_parquet(pl.DataFrame({"system": [system] * 6, "text": [f"c{i}" for i in range(6)]}), *staged,
                                "concerns.parquet")
        with store.partition("scores", system, "val") as staged:
            store.write_parquet(_scores_frame(system), *staged, "scores.parquet")
    store.write_parquet(_scores_frame("old"), "scores", "old", "val", "scores.parquet")  # no manifest
    assert "12" in query_table("SELECT count(*) AS n FROM generated_concerns", store=store)
    cut = store.path("concerns", "a", "val", "concerns.parquet")
    pl.read_parquet(cut).head(2).write_parquet(cut)
    with pytest.raises(CorruptArtifact, match=r"concerns/a/val/concerns.parquet: .*cut or changed after it was"):
        query_table("SELECT count(*) AS n FROM generated_concerns", store=store)
    assert "0.5" in query_table("SELECT f1 FROM scores WHERE system = 'old'", store=store)  # other views still answer
    edited = store.path("scores", "b", "val", "scores.parquet")
    pl.read_parquet(edited).with_columns(pl.lit(0.99).alias("f1")).write_parquet(edited)
    monkeypatch.setenv("BIOREVIEW_STORAGE", store.root)
    assert cli.main(["sql", "SELECT system, f1 FROM scores"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"bioreview sql: error: {edited}: ") and "Traceback" not in err
