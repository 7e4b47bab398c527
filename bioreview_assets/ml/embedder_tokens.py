"""Tokenising for the embedders: the model's Rust tokenizer (truncating, unpadded), its thread pool switched on only
where that is safe, and token ids of many texts in flat arrays cut into padded batches."""

from __future__ import annotations

import contextlib
import itertools
import os
from typing import Any

import numpy as np


def truncating_rust_tokenizer(model):
    """A private copy of the model's Rust tokenizer that truncates at max_seq_length; None if it has none."""
    backend = getattr(getattr(model, "tokenizer", None), "backend_tokenizer", None)
    if backend is None:
        return None
    backend = type(backend).from_str(backend.to_str())
    backend.no_padding()
    if model.max_seq_length is not None:
        backend.enable_truncation(int(model.max_seq_length))
    return backend


# Whether the Rust tokenizer may use its own thread pool (rayon) in this process. Our images set
# TOKENIZERS_PARALLELISM=false because a process forked after rayon has run deadlocks on its first parallel call;
# so the pool is switched on only around the embedder's own calls, and never in a child forked after one.
_RUST_POOL = {"used": False, "allowed": True}


def _after_fork_in_child() -> None:
    if _RUST_POOL["used"]:
        _RUST_POOL["allowed"] = False


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


@contextlib.contextmanager
def rust_tokeniser_pool():
    """Yield True with TOKENIZERS_PARALLELISM=true inside (one tokeniser call then spreads over every core), or
    False where that is unsafe (a child forked after this process used the pool); the variable is restored after.
    """
    if not _RUST_POOL["allowed"]:
        yield False
        return
    before = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "true"
    _RUST_POOL["used"] = True
    try:
        yield True
    finally:
        if before is None:
            os.environ.pop("TOKENIZERS_PARALLELISM", None)
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = before


def tokeniser_threads() -> int:
    """Threads that tokenise at once: the cores this process may use, at most 8 (short texts: more buys nothing)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(8, cores))


def tokenise(tokenizer: Any, texts: list[str]) -> "FlatTokens":
    """One tokeniser call and its conversion to flat arrays, on a worker thread (off the thread that embeds)."""
    return FlatTokens(tokenizer.encode_batch(texts))


class FlatTokens:
    """Token ids of many texts in flat arrays, cut into padded batches without a Python loop per text."""

    def __init__(self, encodings: list[Any] | None = None) -> None:
        encodings = encodings or []
        ids = [e.ids for e in encodings]  # each .ids access builds a new Python list: take it once
        self.lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
        total = int(self.lengths.sum())
        self._ids = np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int64, count=total)
        self._types = np.fromiter(itertools.chain.from_iterable(e.type_ids for e in encodings), dtype=np.int64,
                                  count=total)
        self._starts = np.concatenate([[0], np.cumsum(self.lengths)[:-1]]).astype(np.int64)

    @classmethod
    def joined(cls, pieces: list["FlatTokens"]) -> "FlatTokens":
        """The pieces' texts in order, as one FlatTokens."""
        out = cls()
        out.lengths = np.concatenate([p.lengths for p in pieces])
        out._ids = np.concatenate([p._ids for p in pieces])
        out._types = np.concatenate([p._types for p in pieces])
        out._starts = np.concatenate([[0], np.cumsum(out.lengths)[:-1]]).astype(np.int64)
        return out

    def padded(self, rows: np.ndarray, pad_id: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(input ids, attention mask, token type ids) of `rows`, right-padded to their longest text."""
        lengths = self.lengths[rows]
        width = int(lengths.max())
        valid = np.arange(width) < lengths[:, None]
        positions = (self._starts[rows][:, None] + np.arange(width))[valid]
        ids = np.full((len(rows), width), pad_id, dtype=np.int64)
        types = np.zeros((len(rows), width), dtype=np.int64)
        ids[valid] = self._ids[positions]
        types[valid] = self._types[positions]
        return ids, valid.astype(np.int64), types
