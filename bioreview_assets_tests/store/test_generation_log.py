"""GenerationLog: atomic shards, attempt numbers, latest attempt wins, local and fsspec roots."""

from __future__ import annotations

import uuid
from pathlib import Path

import polars as pl
import pytest

from bioreview_assets.store.generation_log import GenerationLog


def _row(article_id: str, text: str = "[]", error: str | None = None, **extra) -> dict:
    return {"article_id": article_id, "text": text, "prompt_tokens": 10, "completion_tokens": 3,
            "seconds": 0.5, "error": error, **extra}


def test_append_writes_one_shard_per_call_and_numbers_attempts(tmp_path: Path) -> None:
    log = GenerationLog(str(tmp_path / "gen"))
    log.append([_row("a"), _row("b", error="boom")])
    log.append([_row("b", text="[ok]")])
    shards = sorted(p.name for p in (tmp_path / "gen").iterdir())
    assert len(shards) == 2 and all(name.startswith("part-") and name.endswith(".parquet") for name in shards)
    history = log.read_all().sort(["article_id", "attempt"])
    assert history.select("article_id", "attempt").rows() == [("a", 1), ("b", 1), ("b", 2)]
    latest = log.read().sort("article_id")
    assert latest.select("article_id", "attempt", "text", "error").rows() == [
        ("a", 1, "[]", None),
        ("b", 2, "[ok]", None),
    ]
    assert log.completed_ids() == {"a", "b"} and log.failed_ids() == set()


def test_latest_attempt_wins_also_when_it_failed(tmp_path: Path) -> None:
    log = GenerationLog(str(tmp_path))
    log.append([_row("a")])
    log.append([_row("a", error="CUDA out of memory")])
    assert log.completed_ids() == set()
    assert log.failed_ids() == {"a"}
    assert log.read()["attempt"].to_list() == [2]


def test_a_new_instance_continues_attempt_numbers_from_stored_rows(tmp_path: Path) -> None:
    GenerationLog(str(tmp_path)).append([_row("a", error="x")])
    GenerationLog(str(tmp_path)).append([_row("a", error="y")])
    GenerationLog(str(tmp_path)).append([_row("a")])
    assert GenerationLog(str(tmp_path)).read_all().sort("attempt")["attempt"].to_list() == [1, 2, 3]


def test_shards_with_different_columns_and_null_only_errors_concatenate(tmp_path: Path) -> None:
    log = GenerationLog(str(tmp_path))
    log.append([_row("a")])  # error column is all-null here (Null dtype in this shard)
    log.append([_row("b", error="bad", prompt_hash="h1")])  # a column the first shard lacks
    table = log.read().sort("article_id")
    assert table["error"].dtype == pl.String
    assert table.select("article_id", "prompt_hash").rows() == [("a", None), ("b", "h1")]


def test_failed_write_leaves_no_visible_shard(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = GenerationLog(str(tmp_path))
    log.append([_row("a")])

    def crash(*args, **kwargs):
        raise OSError("disk went away during rename")

    monkeypatch.setattr(log.store.fs, "mv", crash)
    with pytest.raises(OSError):
        log.append([_row("b")])
    monkeypatch.undo()
    assert len(list(tmp_path.glob("part-*.parquet"))) == 1
    assert GenerationLog(str(tmp_path)).read()["article_id"].to_list() == ["a"]
    log.append([_row("b")])  # the failed write did not use up attempt 1
    assert log.read().filter(pl.col("article_id") == "b")["attempt"].to_list() == [1]


def test_fsspec_memory_root() -> None:
    root = f"memory://bioreview-test-{uuid.uuid4().hex}/generations/tiny/val"
    log = GenerationLog(root)
    log.append([_row("a", error="503")])
    log.append([_row("a"), _row("b")])
    again = GenerationLog(root)
    assert again.completed_ids() == {"a", "b"}
    assert again.read().filter(pl.col("article_id") == "a")["attempt"].to_list() == [2]


def test_empty_log_reads_empty(tmp_path: Path) -> None:
    log = GenerationLog(str(tmp_path / "nothing-yet"))
    assert log.read().is_empty()
    assert log.completed_ids() == set() and log.failed_ids() == set()
    assert log.append([]) is None


def test_rows_need_an_article_id(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="article_id"):
        GenerationLog(str(tmp_path)).append([{"text": "x"}])
