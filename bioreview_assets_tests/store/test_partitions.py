"""Partitions are written as a unit, checked when read, and materialised by one process at a time (issue 34)."""

import os

import numpy as np
import polars as pl
import pytest

from bioreview_assets.store.artifacts import ArtifactStore, CorruptArtifact
from bioreview_assets.store.locks import PartitionBusy, partition_lock

FOLDER = ("scores", "sys", "val")


def commit(store, n, fail_after_first=False):
    with store.partition(*FOLDER) as staged:
        store.write_parquet(pl.DataFrame({"x": list(range(n))}), *staged, "scores.parquet")
        if fail_after_first:
            raise OSError(28, "No space left on device")
        store.write_jsonl([{"article": i} for i in range(n)], *staged, "articles.jsonl")
        store.write_json({"n": n}, *staged, "metrics.json")


def test_a_failed_write_leaves_the_old_partition_whole_and_no_temp_files(tmp_path):
    store = ArtifactStore(str(tmp_path / "storage"))
    commit(store, 3)
    with pytest.raises(OSError, match="No space left"):
        commit(store, 5, fail_after_first=True)
    assert store.read_parquet(*FOLDER, "scores.parquet").height == 3  # the old partition, not half of the new one
    assert store.read_json(*FOLDER, "metrics.json") == {"n": 3}
    leftovers = [p for p in (tmp_path / "storage").rglob("*") if ".tmp-" in p.name]
    assert leftovers == []


def test_leftovers_of_a_killed_write_are_removed_on_the_next_commit(tmp_path):
    store = ArtifactStore(str(tmp_path / "storage"))
    killed = tmp_path / "storage" / ".staging" / "scores" / "sys" / "val.tmp-deadbeef"
    killed.mkdir(parents=True)
    (killed / "scores.parquet").write_bytes(b"half")
    commit(store, 2)
    assert not killed.exists() and store.read_json(*FOLDER, "metrics.json") == {"n": 2}


def test_a_file_cut_after_the_commit_is_refused_naming_it(tmp_path):
    store = ArtifactStore(str(tmp_path / "storage"))
    commit(store, 30)
    path = tmp_path / "storage" / "scores" / "sys" / "val" / "articles.jsonl"
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:20]))  # cut at a line boundary
    with pytest.raises(CorruptArtifact, match=r"articles.jsonl: .* bytes .*committed with .*cut or changed"):
        store.read_jsonl(*FOLDER, "articles.jsonl")


@pytest.mark.parametrize("damage", ["truncate", "random"])
def test_an_unreadable_parquet_names_its_file(tmp_path, damage):
    store = ArtifactStore(str(tmp_path / "storage"))
    store.write_parquet(pl.DataFrame({"x": [1, 2, 3]}), "loose", "t.parquet")  # no manifest: the parser decides
    path = tmp_path / "storage" / "loose" / "t.parquet"
    data = path.read_bytes()
    path.write_bytes(data[:20] if damage == "truncate" else np.random.bytes(len(data)))
    with pytest.raises(CorruptArtifact, match=r"loose/t.parquet: not readable as parquet"):
        store.read_parquet("loose", "t.parquet")


def test_a_failed_atomic_write_leaves_no_temp_file(tmp_path):
    store = ArtifactStore(str(tmp_path / "storage"))

    from bioreview_assets.store.atomic import fs_write_atomic

    def fail(handle):
        handle.write(b"partial")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        fs_write_atomic(store.fs, store.path("a", "b.parquet"), fail)
    assert os.listdir(tmp_path / "storage" / "a") == []


def test_a_second_materialisation_of_a_partition_is_refused_while_the_first_runs(tmp_path):
    store = ArtifactStore(str(tmp_path / "storage"))
    with partition_lock(store, "scores", "sys|val"):
        with pytest.raises(PartitionBusy, match=r"scores\[sys\|val\] is being materialised by pid \d+ since"):
            with partition_lock(store, "scores", "sys|val"):
                pass
        with partition_lock(store, "scores", "other|val"):  # other partitions are not held up
            pass
    with partition_lock(store, "scores", "sys|val"):  # released when the first one ends
        pass


def _concerns(store, n_articles=6):
    from bioreview_assets.core.generated_concern import GeneratedConcern
    from bioreview_assets.store.concern_table import write_concerns

    by_article = {f"a{i}": [GeneratedConcern.of(f"concern {i}.{k} about the sample size", "design_flaw", "major")
                            for k in range(3)] for i in range(n_articles)}
    write_concerns(store, "sys", "val", by_article, {a: "elife" for a in by_article}, {"kind": "model"})
    return by_article


def test_concerns_cut_behind_the_manifest_are_refused_by_their_content_hash(tmp_path):
    """The content hash in the concerns' meta.json is checked on read (a table cut from 18 to 5 rows, manifest
    and all, is not scored as if whole)."""
    from bioreview_assets.store.concern_table import read_concerns

    store = ArtifactStore(str(tmp_path / "storage"))
    written = _concerns(store)
    assert {k: len(v) for k, v in read_concerns(store, "sys", "val").items()} == {k: 3 for k in written}
    (tmp_path / "storage" / "concerns" / "sys" / "val" / "manifest.json").unlink()  # an older partition
    frame = store.read_parquet("concerns", "sys", "val", "concerns.parquet")
    store.write_parquet(frame.head(5), "concerns", "sys", "val", "concerns.parquet")
    with pytest.raises(CorruptArtifact,
                       match=r"concerns.parquet: 5 rows whose content hash \w+ is not the \w+ of .*meta.json"):
        read_concerns(store, "sys", "val")


def test_articles_cut_at_a_line_boundary_are_refused_by_the_article_count(tmp_path):
    from bioreview_assets.store.layout import read_articles

    from bioreview_assets.sample.generator import generate_sample_splits

    store = ArtifactStore(str(tmp_path / "storage"))
    rows = generate_sample_splits()["val"][:5]
    store.write_jsonl(rows[:3], "benchmark", "val", "articles.jsonl")  # written without a manifest
    store.write_json({"n_articles": 5}, "benchmark", "val", "meta.json")
    with pytest.raises(CorruptArtifact, match=r"articles.jsonl: 3 articles, but its meta.json says 5"):
        read_articles(store, "val")


def test_a_commit_killed_while_removing_the_old_partition_leaves_no_second_copy_to_read(tmp_path, monkeypatch):
    """The replaced partition is moved aside under .staging, not beside the new one: a process killed before it is
    deleted leaves nothing that the report's and the catalog's globs (scores/*/*/...) read as a second partition,
    and the next commit removes it."""
    import types

    from bioreview_assets.store import atomic

    store = ArtifactStore(str(tmp_path / "storage"))
    commit(store, 3)

    def killed(path, *args, **kwargs):  # the process dies here: nothing after this line runs
        raise SystemExit("killed while removing the old partition")

    monkeypatch.setattr(atomic, "shutil", types.SimpleNamespace(rmtree=killed))
    with pytest.raises(SystemExit):
        commit(store, 4)
    monkeypatch.undo()
    assert store.read_json(*FOLDER, "metrics.json") == {"n": 4}  # the new partition is in place
    assert store.glob("scores/*/*/scores.parquet") == [store.path(*FOLDER, "scores.parquet")]
    commit(store, 5)
    assert [p for p in (tmp_path / "storage").rglob("*") if ".old" in p.name or ".tmp-" in p.name] == []


def test_generations_cut_after_they_were_written_are_refused_by_their_data_version(tmp_path):
    """generations.parquet is rewritten beside its resume log, not committed with a manifest: its meta.json's
    data_version (the hash of the raw texts under the generation key) is checked when concerns are parsed from it,
    so a table cut to 1 of its 3 articles is refused instead of scoring the missing articles as empty outputs."""
    from bioreview_assets.core.hashing import stable_hash
    from bioreview_assets.store.generation_table import generated_concerns, parsed_columns
    from bioreview_assets.store.layout import generations_dir

    store = ArtifactStore(str(tmp_path / "storage"))
    folder = generations_dir("m", "val")
    table = parsed_columns(pl.DataFrame({"article_id": ["a1", "a2", "a3"],
                                         "text": ['[{"text": "The sample size is small."}]'] * 3,
                                         "error": [None, None, None]}, schema_overrides={"error": pl.String}))
    store.write_parquet(table, *folder, "generations.parquet")
    version = stable_hash(["key1", table.select("article_id", "text", "error").rows()])
    store.write_json({"generation_key": "key1", "data_version": version}, *folder, "meta.json")
    by_article, lineage = generated_concerns(store, "m", "val")
    assert sorted(by_article) == ["a1", "a2", "a3"] and lineage["generations_data_version"] == version
    store.write_parquet(table.head(1), *folder, "generations.parquet")
    with pytest.raises(CorruptArtifact, match=r"generations/m/val/generations.parquet: 1 rows whose content hash "
                                              r"\w+ is not the data_version \w+ of .*meta.json"):
        generated_concerns(store, "m", "val")
