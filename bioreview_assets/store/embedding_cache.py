"""Content-addressed embedding cache on a local folder or fsspec URL, safe for concurrent writers."""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bioreview_assets.store.atomic import fs_write_atomic

from bioreview_assets.core.matcher_spec import short_hash

log = logging.getLogger(__name__)

_SHARD_GLOB = "*.parquet"
# Partial files never match _SHARD_GLOB, so a reader cannot see a half-written shard.
_PARTIAL_SUFFIX = ".parquet.partial"


def _read_shard(fs, path: str) -> tuple[list[str], np.ndarray]:
    with fs.open(path, "rb") as handle:
        table = pq.read_table(handle)
    column = table.column("embedding").combine_chunks()
    dim = column.type.list_size
    matrix = column.values.to_numpy(zero_copy_only=False).reshape(-1, dim)
    keys = table.column("key").to_pylist()
    if len(keys) != len(matrix):
        raise ValueError(f"{len(keys)} keys for {len(matrix)} vectors")
    return keys, matrix


class SupportsEncode(Protocol):
    """What the cache needs from an embedder: a stable identity and an encode function."""

    identity: dict[str, Any]

    def encode(self, texts: list[str]) -> np.ndarray: ...


def text_key(text: str) -> str:
    """sha256 of the UTF-8 text: the per-text cache key."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class _Vectors:
    """The cached vectors of one embedder identity: key -> row of a matrix that grows by whole shards."""

    def __init__(self) -> None:
        self.row_of: dict[str, int] = {}
        self._blocks: list[np.ndarray] = []
        self._matrix: np.ndarray | None = None

    def add(self, keys: Sequence[str], matrix: np.ndarray) -> None:
        """Append a shard's rows; a key already present keeps its first vector, so every reader agrees."""
        base = sum(len(block) for block in self._blocks)
        for offset, key in enumerate(keys):
            self.row_of.setdefault(key, base + offset)
        self._blocks.append(matrix)
        self._matrix = None

    def rows(self, keys: Sequence[str]) -> np.ndarray:
        """Vectors of `keys` in order (every key must be present)."""
        if self._matrix is None:
            self._matrix = np.concatenate(self._blocks) if len(self._blocks) > 1 else self._blocks[0]
            self._blocks = [self._matrix]
        return self._matrix[np.fromiter((self.row_of[k] for k in keys), dtype=np.int64, count=len(keys))]


class EmbeddingCache:
    """Embeddings keyed by (embedder identity hash, text sha256), stored as append-only parquet shards."""

    def __init__(self, root: str, shard_rows: int = 8192) -> None:
        if shard_rows < 1:
            raise ValueError("shard_rows must be >= 1")
        self.root = root
        self.shard_rows = shard_rows
        self.fs, self._root_path = fsspec.core.url_to_fs(root)
        self.hits = 0  # unique texts served from the cache
        self.misses = 0  # unique texts that had to be embedded
        self._vectors: dict[str, _Vectors] = {}
        self._loaded_shards: dict[str, set[str]] = {}

    def folder(self, identity: dict[str, Any]) -> str:
        """Shard folder of one embedder identity."""
        return f"{self._root_path.rstrip('/')}/{short_hash(identity)}"

    def encode(self, embedder: SupportsEncode, texts: Sequence[str]) -> np.ndarray:
        """Embeddings of `texts` in order; only unique texts missing from the cache are embedded and stored."""
        folder = self.folder(embedder.identity)
        vectors = self._refresh(folder)
        keys = [text_key(t) for t in texts]
        unique: dict[str, str] = {}
        for key, text in zip(keys, texts):
            unique.setdefault(key, text)
        missing = {key: text for key, text in unique.items() if key not in vectors.row_of}
        self.hits += len(unique) - len(missing)
        self.misses += len(missing)
        if missing:
            self._ensure_identity_file(folder, embedder.identity)
            items = list(missing.items())
            # A worker thread writes each shard while the embedder computes the next (pyarrow's writes leave the
            # GIL), so a GPU does not wait for the disk. Vectors join the in-memory index only once their shard is
            # stored, and this call returns only when every shard is: a failed write fails the call and leaves no
            # vector that a later call would take for cached.
            with ThreadPoolExecutor(max_workers=1) as writer:
                written = []
                for start in range(0, len(items), self.shard_rows):
                    chunk = items[start:start + self.shard_rows]
                    emb = np.asarray(embedder.encode([t for _, t in chunk]), dtype=np.float32)
                    if emb.ndim != 2 or emb.shape[0] != len(chunk):
                        raise ValueError(f"embedder returned shape {emb.shape} for {len(chunk)} texts")
                    chunk_keys = [k for k, _ in chunk]
                    written.append((chunk_keys, emb, writer.submit(self._write_shard, folder, chunk_keys, emb)))
                for chunk_keys, emb, write in written:
                    shard = write.result()
                    vectors.add(chunk_keys, emb)
                    # Marked here, not by the writer: a shard stored after an earlier one failed stays unmarked,
                    # so the next call reads it from disk instead of embedding its texts again.
                    self._loaded_shards[folder].add(shard)
        if not keys:
            return np.asarray(embedder.encode([]), dtype=np.float32)
        return vectors.rows(keys)

    def _refresh(self, folder: str) -> _Vectors:
        # Pick up shards written since the last call, by this or another process.
        vectors = self._vectors.setdefault(folder, _Vectors())
        loaded = self._loaded_shards.setdefault(folder, set())
        paths = sorted(self.fs.glob(f"{folder}/{_SHARD_GLOB}")) if self.fs.exists(folder) else []
        for path in paths:
            if path in loaded:
                continue
            try:
                keys, matrix = _read_shard(self.fs, path)
            except (pa.ArrowException, OSError, KeyError, ValueError) as err:
                # A cache entry is only a saving: a shard that cannot be read (cut, overwritten) is dropped and its
                # texts are embedded again, instead of failing every later scoring run.
                log.warning("embedding cache: discarding unreadable shard %s (%s: %s); its texts are embedded again",
                            path, type(err).__name__, err)
                try:
                    self.fs.rm(path)
                except FileNotFoundError:  # another reader discarded it first
                    pass
                continue
            # Shards are read in name order, so every reader settles on the same vector for a text.
            vectors.add(keys, matrix)
            loaded.add(path)
        return vectors

    def _write_shard(self, folder: str, keys: list[str], emb: np.ndarray) -> str:
        """Store one shard atomically; returns its path."""
        dim = emb.shape[1]
        table = pa.table({
            "key": pa.array(keys, type=pa.string()),
            "embedding": pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1), type=pa.float32()), dim),
        })
        name = uuid.uuid4().hex
        final = f"{folder}/{name}.parquet"
        # float32 vectors do not compress and sha256 keys never repeat: plain encoding writes ~5x faster.
        self._atomic_write(f"{folder}/.{name}{_PARTIAL_SUFFIX}", final, lambda h: pq.write_table(
            table, h, compression="none", use_dictionary=False, write_statistics=False))
        return final

    def _ensure_identity_file(self, folder: str, identity: dict[str, Any]) -> None:
        # Human-readable record of what the hashed folder name stands for.
        path = f"{folder}/identity.json"
        if not self.fs.exists(path):
            body = json.dumps(identity, sort_keys=True, indent=2).encode("utf-8")
            self._atomic_write(f"{folder}/.identity-{uuid.uuid4().hex}.json.partial", path, lambda h: h.write(body))

    def _atomic_write(self, temp: str, final: str, write) -> None:
        fs_write_atomic(self.fs, final, write, temp=temp)
