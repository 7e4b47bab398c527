"""Durable per-article generation rows: append-only parquet shards under one folder (local or fsspec URL).

Every append writes a new shard atomically (temp + rename through ArtifactStore), so a pod killed mid-run
loses at most the rows it had not committed yet. Each row carries an `attempt` number per article; readers
take the latest attempt, so a retried article replaces its failed row without rewriting any file.
KeyedGenerationLogs keeps one such log per content key (weights, prompt, settings, backend): a retrained model
never resumes its predecessor's outputs.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import polars as pl

from bioreview_assets.core.hashing import stable_hash
from bioreview_assets.store.artifacts import ArtifactStore

SHARD_GLOB = "part-*.parquet"


class GenerationLog:
    """Append-only log of generation rows for one (system, split) partition; one writer at a time."""

    def __init__(self, root: str):
        self.store = ArtifactStore(str(root))
        self._attempts: dict[str, int] | None = None  # latest attempt per article, loaded once, then kept current

    def append(self, rows: list[dict[str, Any]]) -> str | None:
        """Commit rows as one new shard; returns its path (None for no rows). Rows need `article_id`."""
        if not rows:
            return None
        attempts = dict(self._latest_attempts())  # a copy: a failed write must not advance the numbers
        committed_at = dt.datetime.now(dt.timezone.utc)
        stamped = []
        for row in rows:
            if not row.get("article_id"):
                raise ValueError(f"generation row without article_id: {sorted(row)}")
            attempt = attempts.get(row["article_id"], 0) + 1
            attempts[row["article_id"]] = attempt
            stamped.append({**row, "attempt": attempt, "committed_at": committed_at})
        # Sortable, unique shard names: time first so a listing reads in commit order.
        name = f"part-{committed_at.strftime('%Y%m%dT%H%M%S%f')}-{uuid.uuid4().hex[:8]}.parquet"
        path = self.store.write_parquet(pl.DataFrame(stamped, infer_schema_length=None), name)
        self._attempts = attempts
        return path

    def read_all(self) -> pl.DataFrame:
        """Every attempt of every article, in commit order."""
        paths = self.store.glob(SHARD_GLOB)
        if not paths:
            return pl.DataFrame(schema={"article_id": pl.String, "attempt": pl.Int64, "error": pl.String})
        frames = [self.store.read_parquet(path.rsplit("/", 1)[-1]) for path in paths]
        # Shards may differ in columns (extra columns added later) or in null-only dtypes: align by name.
        frame = pl.concat(frames, how="diagonal_relaxed")
        if "error" not in frame.columns:
            frame = frame.with_columns(pl.lit(None, dtype=pl.String).alias("error"))
        return frame.with_columns(pl.col("error").cast(pl.String))

    def read(self) -> pl.DataFrame:
        """The latest attempt per article."""
        frame = self.read_all()
        if frame.is_empty():
            return frame
        ordered = frame.sort(["article_id", "attempt", "committed_at"])
        return ordered.unique("article_id", keep="last", maintain_order=True)

    def completed_ids(self) -> set[str]:
        """Articles whose latest attempt succeeded (no error)."""
        latest = self.read()
        return set(latest.filter(pl.col("error").is_null())["article_id"].to_list()) if len(latest) else set()

    def failed_ids(self) -> set[str]:
        """Articles whose latest attempt failed."""
        latest = self.read()
        return set(latest.filter(pl.col("error").is_not_null())["article_id"].to_list()) if len(latest) else set()

    def _latest_attempts(self) -> dict[str, int]:
        if self._attempts is None:
            frame = self.read()
            self._attempts = dict(zip(frame["article_id"].to_list(), frame["attempt"].to_list())) if len(frame) else {}
        return self._attempts



class KeyedGenerationLogs:
    """The generation logs of one partition, one folder per content key; the folder of the last key is remembered.

    A run whose key differs from the last one starts a fresh log and says which parts of the key changed; going
    back to an earlier key resumes that key's log (its outputs are exactly what that key produces).
    """

    CURRENT = "current_key.json"

    def __init__(self, root: str):
        self.root = str(root).rstrip("/")
        self.store = ArtifactStore(self.root)

    def open(self, key: dict[str, Any]) -> tuple[GenerationLog, str, str]:
        """(the log for `key`, its key hash, a one-line resume note for metadata)."""
        key_hash = stable_hash(key)
        log = GenerationLog(f"{self.root}/{key_hash}")
        done = len(log.completed_ids())
        previous = self.store.read_json(self.CURRENT) if self.store.exists(self.CURRENT) else None
        if done:
            note = f"resumed ({done} articles already generated under key {key_hash})"
        elif previous and previous["key_hash"] != key_hash:
            note = f"fresh (key changed: {', '.join(changed_fields(previous['key'], key)) or 'key format'})"
        elif self.store.glob(SHARD_GLOB):  # shards straight under the root: a log written before logs were keyed
            note = "fresh (key changed: the earlier log was not keyed by model, prompt and settings)"
        else:
            note = "fresh (no earlier log)"
        if not log.store.exists("key.json"):
            log.store.write_json(key, "key.json")
        self.store.write_json({"key_hash": key_hash, "key": key}, self.CURRENT)
        return log, key_hash, note


def changed_fields(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted paths of the leaves that differ between two JSON-like values (added and removed keys included)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for name in sorted(set(old) | set(new)):
            out += changed_fields(old.get(name), new.get(name), f"{prefix}{name}.")
        return out
    return [] if old == new else [prefix.rstrip(".") or "key"]
