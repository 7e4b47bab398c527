"""Durable per-article generation rows: append-only parquet shards under one folder (local or fsspec URL).

Every append writes a new shard atomically (temp + rename through ArtifactStore), so a pod killed mid-run
loses at most the rows it had not committed yet. Each row carries an `attempt` number per article; readers
take the latest attempt, so a retried article replaces its failed row without rewriting any file.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import polars as pl

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

