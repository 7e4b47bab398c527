"""EmbeddingCache: embeds only unseen unique texts, append-only atomic shards, safe for concurrent writers."""

from __future__ import annotations

import hashlib
import multiprocessing
import time
from pathlib import Path

import numpy as np
import pytest

from bioreview_assets.core.matcher_spec import short_hash
from bioreview_assets.store.embedding_cache import EmbeddingCache, text_key


class FakeEmbedder:
    """Deterministic 4-d embeddings derived from the text hash; records every encode call."""

    def __init__(self, tag: str = "a") -> None:
        self.identity = {"model_id": f"fake/{tag}", "weights_sha256": tag}
        self.calls: list[list[str]] = []

    def encode(self, texts: list[str]) -> np.ndarray:
        self.calls.append(list(texts))
        return np.stack([vector(t) for t in texts]) if texts else np.zeros((0, 4), dtype=np.float32)


def vector(text: str) -> np.ndarray:
    """The fake embedding of one text."""
    digest = hashlib.sha256(text.encode()).digest()
    return np.frombuffer(digest[:16], dtype=np.uint32).astype(np.float32) / 2**32


def shards(root: Path, embedder: FakeEmbedder) -> list[Path]:
    """Shard files of one embedder identity."""
    return sorted((root / short_hash(embedder.identity)).glob("*.parquet"))


def test_first_call_embeds_unique_texts_once_and_returns_in_order(tmp_path):
    cache, emb = EmbeddingCache(str(tmp_path)), FakeEmbedder()
    out = cache.encode(emb, ["b", "a", "b", "c"])
    assert emb.calls == [["b", "a", "c"]]
    assert (cache.hits, cache.misses) == (0, 3)
    assert out.dtype == np.float32 and out.shape == (4, 4)
    assert np.array_equal(out, np.stack([vector(t) for t in ["b", "a", "b", "c"]]))


def test_cached_texts_are_not_embedded_again(tmp_path):
    cache, emb = EmbeddingCache(str(tmp_path)), FakeEmbedder()
    cache.encode(emb, ["a", "b"])
    out = cache.encode(emb, ["b", "new", "a"])
    assert emb.calls[1] == ["new"]
    assert (cache.hits, cache.misses) == (2, 3)
    assert np.array_equal(out[0], vector("b"))
    cache.encode(emb, ["a", "new"])
    assert len(emb.calls) == 2  # everything cached: no call at all
    assert cache.hits == 4


def test_every_write_is_a_new_shard_and_a_new_instance_reads_them_all(tmp_path):
    emb = FakeEmbedder()
    first = EmbeddingCache(str(tmp_path))
    first.encode(emb, ["a"])
    first.encode(emb, ["b"])
    assert len(shards(tmp_path, emb)) == 2
    assert not list(tmp_path.rglob("*.partial"))  # temp files were renamed away
    assert (tmp_path / short_hash(emb.identity) / "identity.json").exists()
    fresh_emb = FakeEmbedder()
    second = EmbeddingCache(str(tmp_path))
    out = second.encode(fresh_emb, ["b", "a"])
    assert fresh_emb.calls == []
    assert (second.hits, second.misses) == (2, 0)
    assert np.array_equal(out, np.stack([vector("b"), vector("a")]))


def test_large_misses_are_written_in_shard_sized_batches(tmp_path):
    cache, emb = EmbeddingCache(str(tmp_path), shard_rows=2), FakeEmbedder()
    cache.encode(emb, [f"t{k}" for k in range(5)])
    assert [len(c) for c in emb.calls] == [2, 2, 1]
    assert len(shards(tmp_path, emb)) == 3


def test_shards_are_written_while_the_next_is_embedded_and_a_failed_write_caches_nothing(tmp_path, monkeypatch):
    cache, emb = EmbeddingCache(str(tmp_path), shard_rows=2), FakeEmbedder()
    events, write = [], cache._write_shard

    def slow_write(folder, keys, vectors):
        events.append(("write starts", keys[0]))
        time.sleep(0.2)  # the next shard's encode runs meanwhile
        shard = write(folder, keys, vectors)
        events.append(("write ends", keys[0]))
        return shard

    monkeypatch.setattr(cache, "_write_shard", slow_write)
    recorded = emb.encode
    monkeypatch.setattr(emb, "encode", lambda texts: events.append(("encode", text_key(texts[0]))) or recorded(texts))
    cache.encode(emb, ["a", "b", "c"])
    a, c = text_key("a"), text_key("c")
    assert events.index(("encode", c)) < events.index(("write ends", a))  # overlapped
    assert len(shards(tmp_path, emb)) == 2  # and both on disk when encode returned

    def failing_write(folder, keys, vectors):
        raise OSError("disk full")

    monkeypatch.setattr(cache, "_write_shard", failing_write)
    with pytest.raises(OSError, match="disk full"):
        cache.encode(emb, ["d"])
    before = len(emb.calls)
    monkeypatch.setattr(cache, "_write_shard", write)
    cache.encode(emb, ["d"])  # not served from memory: the failed shard was never stored
    assert len(emb.calls) == before + 1 and len(shards(tmp_path, emb)) == 3

    def first_write_fails(folder, keys, vectors):
        if keys[0] == text_key("e"):
            raise OSError("disk full")
        return write(folder, keys, vectors)

    monkeypatch.setattr(cache, "_write_shard", first_write_fails)
    with pytest.raises(OSError, match="disk full"):
        cache.encode(emb, ["e", "f", "g"])  # shards [e, f] (fails) and [g] (stored)
    monkeypatch.setattr(cache, "_write_shard", write)
    before = len(emb.calls)
    cache.encode(emb, ["e", "f", "g"])  # the stored shard is read back from disk: only e and f are embedded again
    assert emb.calls[before:] == [["e", "f"]]


def test_identities_do_not_share_entries(tmp_path):
    cache = EmbeddingCache(str(tmp_path))
    a, b = FakeEmbedder("a"), FakeEmbedder("b")
    cache.encode(a, ["same text"])
    cache.encode(b, ["same text"])
    assert b.calls == [["same text"]]
    assert shards(tmp_path, a) != shards(tmp_path, b)


def test_shards_written_by_another_instance_are_picked_up_between_calls(tmp_path):
    emb = FakeEmbedder()
    reader, writer = EmbeddingCache(str(tmp_path)), EmbeddingCache(str(tmp_path))
    reader.encode(emb, ["a"])
    writer.encode(emb, ["late"])
    calls_before = len(emb.calls)
    reader.encode(emb, ["late"])
    assert len(emb.calls) == calls_before
    assert reader.hits == 1


def test_fsspec_urls_work(tmp_path):
    cache, emb = EmbeddingCache("memory://bioreview-test-cache"), FakeEmbedder("mem")
    cache.encode(emb, ["x", "y"])
    again = EmbeddingCache("memory://bioreview-test-cache")
    out = again.encode(emb, ["y"])
    assert len(emb.calls) == 1
    assert np.array_equal(out[0], vector("y"))


def test_empty_input_and_bad_embedder_output(tmp_path):
    cache, emb = EmbeddingCache(str(tmp_path)), FakeEmbedder()
    assert cache.encode(emb, []).shape == (0, 4)

    class Short(FakeEmbedder):
        def encode(self, texts):
            return super().encode(texts)[:-1]

    with pytest.raises(ValueError, match="shape"):
        cache.encode(Short("s"), ["p", "q"])


def test_text_key_is_sha256_of_utf8():
    assert text_key("é") == hashlib.sha256("é".encode("utf-8")).hexdigest()


def _write_many(root: str, worker: int) -> None:
    """Write overlapping shards, then leave without interpreter teardown.

    The exit code reports only the writes: a spawned child that had imported pyarrow once aborted (SIGABRT) while
    its thread pools shut down at interpreter exit, after every write had completed; the cache was intact.
    """
    import os
    import traceback

    try:
        cache, emb = EmbeddingCache(root, shard_rows=3), FakeEmbedder()
        for k in range(10):
            # Overlapping texts between workers: both may write the same key; readers must cope.
            cache.encode(emb, [f"shared {k}", f"w{worker} {k}", f"w{worker} {k} b"])
    except BaseException:  # noqa: BLE001 - reported through the exit code the test asserts
        traceback.print_exc()
        os._exit(1)
    os._exit(0)


def test_concurrent_writers_never_corrupt_the_cache(tmp_path):
    # spawn, not fork: the test process may already hold pyarrow/torch thread pools.
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_write_many, args=(str(tmp_path), w)) for w in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0, f"writer exited {p.exitcode}"
    emb = FakeEmbedder()
    reader = EmbeddingCache(str(tmp_path))
    texts = [f"shared {k}" for k in range(10)] + [f"w{w} {k}" for w in range(2) for k in range(10)]
    out = reader.encode(emb, texts)
    assert emb.calls == []  # every shard was complete and readable
    assert np.array_equal(out, np.stack([vector(t) for t in texts]))


def test_retrained_embedder_weights_are_never_served_old_vectors(tmp_path):
    class Retrained(FakeEmbedder):
        """Same model id and pooling, new weights: other vectors for the same text."""

        def __init__(self):
            super().__init__("a")
            self.identity = {**self.identity, "weights_sha256": "a-retrained"}

        def encode(self, texts):
            return super().encode(texts)[:, ::-1].copy()

    cache = EmbeddingCache(str(tmp_path))
    old = cache.encode(FakeEmbedder("a"), ["same text"])
    new = cache.encode(Retrained(), ["same text"])
    assert not np.array_equal(old, new) and np.array_equal(new[0], vector("same text")[::-1])


@pytest.mark.parametrize("damage", ["truncate", "random"])
def test_a_corrupt_shard_is_discarded_and_recomputed_with_a_warning(tmp_path, caplog, damage):
    """Issue 34: a cut or overwritten shard fails no later run; its texts are embedded again."""
    root = tmp_path / "cache"
    texts = ["alpha", "beta", "gamma"]
    EmbeddingCache(str(root), shard_rows=2).encode(FakeEmbedder(), texts)
    broken = shards(root, FakeEmbedder())[0]
    data = broken.read_bytes()
    broken.write_bytes(data[: len(data) // 2] if damage == "truncate" else np.random.bytes(len(data)))
    again = FakeEmbedder()
    with caplog.at_level("WARNING"):
        out = EmbeddingCache(str(root), shard_rows=2).encode(again, texts)
    assert np.allclose(out, np.stack([vector(t) for t in texts]))
    assert "discarding unreadable shard" in caplog.text and broken.name in caplog.text
    assert again.calls and 0 < len(again.calls[0]) < len(texts)  # only the lost shard's texts
    third = FakeEmbedder()
    EmbeddingCache(str(root), shard_rows=2).encode(third, texts)
    assert third.calls == []  # the recomputed vectors are cached again
