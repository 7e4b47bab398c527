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


def _key(adapter: str = "a1", temperature: float = 0.0) -> dict:
    return {"weights": {"kind": "merged", "merged": "m-" + adapter, "adapter": adapter}, "prompt_hash": "p",
            "backend": "transformers", "sampling": {"temperature": temperature}, "generation": {}}


def test_keyed_logs_start_fresh_on_a_changed_key_and_say_what_changed(tmp_path: Path) -> None:
    from bioreview_assets.store.generation_log import KeyedGenerationLogs

    logs = KeyedGenerationLogs(str(tmp_path / "log"))
    log, first_hash, note = logs.open(_key())
    assert note == "fresh (no earlier log)"
    log.append([_row("a"), _row("b")])
    assert logs.open(_key())[2] == f"resumed (2 articles already generated under key {first_hash})"
    retrained, new_hash, note = logs.open(_key(adapter="a2"))
    assert new_hash != first_hash and retrained.completed_ids() == set()
    assert note == "fresh (key changed: weights.adapter, weights.merged)"
    assert logs.open(_key(adapter="a2", temperature=0.7))[2] == "fresh (key changed: sampling.temperature)"
    assert logs.open(_key())[2].startswith("resumed (2 articles")  # back to the first key: its outputs still fit


def test_an_unkeyed_log_from_before_is_not_resumed(tmp_path: Path) -> None:
    from bioreview_assets.store.generation_log import KeyedGenerationLogs

    GenerationLog(str(tmp_path / "log")).append([_row("a")])  # the old layout: shards straight under log/
    log, _, note = KeyedGenerationLogs(str(tmp_path / "log")).open(_key())
    assert log.completed_ids() == set()
    assert note == "fresh (key changed: the earlier log was not keyed by model, prompt and settings)"


def test_the_runner_refuses_a_log_holding_another_keys_rows(tmp_path: Path) -> None:
    from bioreview_assets.services.generation_runner import check_log_key

    log = GenerationLog(str(tmp_path))
    log.append([_row("a", generation_key="k1")])
    check_log_key(log, "k1")
    with pytest.raises(ValueError, match=r"holds rows of other keys \['k1'\], not k2"):
        check_log_key(log, "k2")


def test_folder_hash_tracks_content_not_provenance(tmp_path: Path, monkeypatch) -> None:
    from bioreview_assets.store.content_identity import folder_hash

    monkeypatch.setenv("BIOREVIEW_STORAGE", str(tmp_path / "storage"))  # where the hash memo lives
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.safetensors").write_bytes(b"weights-1")
    (model / "config.json").write_text("{}")
    first = folder_hash(model)
    (model / "merge_meta.json").write_text('{"adapter_dir": "/somewhere"}')  # provenance: not content
    assert folder_hash(model) == first
    (model / "model.safetensors").write_bytes(b"weights-2")  # retrained weights
    assert folder_hash(model) != first
    (model / "model.safetensors").write_bytes(b"weights-1")
    assert folder_hash(model) == first
