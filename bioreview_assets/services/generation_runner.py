"""Resumable generation: skip what the log holds, retry failures, commit results in small batches."""

from __future__ import annotations

import logging
from typing import Any, Callable, Sequence

import polars as pl

from bioreview_assets.ml.generation.base import Backend, GenerationRequest, GenerationResult
from bioreview_assets.store.generation_log import GenerationLog

logger = logging.getLogger(__name__)

Progress = Callable[[int, int], None]  # (results received in this run, requests pending in this run)


class IncompleteGeneration(RuntimeError):
    """The backend returned without a result for some pending articles."""


def pending_requests(
    requests: Sequence[GenerationRequest], generation_log: GenerationLog, *, retry_failed: bool = True
) -> list[GenerationRequest]:
    """Requests still to run: not completed in the log (and, unless retry_failed, not failed either)."""
    ids = [r.article_id for r in requests]
    if len(set(ids)) != len(ids):
        duplicated = sorted({i for i in ids if ids.count(i) > 1})
        raise ValueError(f"duplicate article ids in generation requests: {duplicated[:5]}")
    done = generation_log.completed_ids()
    skip = done | (set() if retry_failed else generation_log.failed_ids())
    return [r for r in requests if r.article_id not in skip]


def check_log_key(generation_log: GenerationLog, key: str | None) -> None:
    """Refuse to resume from a log holding rows of another generation key (outputs of other weights or settings)."""
    if key is None:
        return
    frame = generation_log.read_all()
    if "generation_key" in frame.columns:
        foreign = sorted(set(frame["generation_key"].drop_nulls().to_list()) - {key})
        if foreign:
            raise ValueError(f"generation log {generation_log.store.root} holds rows of other keys {foreign[:3]}, "
                             f"not {key}: open the log through KeyedGenerationLogs, one folder per key")


def run_generation(
    requests: Sequence[GenerationRequest],
    backend: Backend,
    log: GenerationLog,
    *,
    commit_every: int = 8,
    retry_failed: bool = True,
    extra_columns: dict[str, Any] | None = None,
    progress: Progress | None = None,
) -> pl.DataFrame:
    """Generate what the log lacks and return the log's latest row for every request, in request order."""
    if commit_every < 1:
        raise ValueError(f"commit_every must be >= 1, got {commit_every}")
    extra = dict(extra_columns or {})
    check_log_key(log, extra.get("generation_key"))
    pending = pending_requests(requests, log, retry_failed=retry_failed)
    wanted = {r.article_id for r in pending}
    clash = set(extra) & (set(GenerationResult.__dataclass_fields__) | {"attempt", "committed_at"})
    if clash:
        raise ValueError(f"extra_columns may not override generation columns: {sorted(clash)}")
    logger.info("generation: %d requested, %d pending", len(requests), len(pending))

    buffer: list[dict[str, Any]] = []
    received: set[str] = set()

    def on_result(result: GenerationResult) -> None:
        if result.article_id not in wanted or result.article_id in received:
            raise RuntimeError(f"backend returned an unexpected or repeated article id {result.article_id!r}")
        received.add(result.article_id)
        buffer.append({**result.to_dict(), **extra})
        if len(buffer) >= commit_every:
            _commit(log, buffer)
        if progress is not None:
            progress(len(received), len(pending))

    try:
        if pending:
            backend.generate(pending, on_result)
    finally:
        # Whatever streamed in before a crash or preemption is kept: the next run skips it.
        _commit(log, buffer)
    missing = wanted - received
    if missing:
        raise IncompleteGeneration(
            f"backend returned no result for {len(missing)} articles, e.g. {sorted(missing)[:5]}"
        )
    return _in_request_order(log.read(), [r.article_id for r in requests])


def summarize(table: pl.DataFrame) -> dict[str, Any]:
    """Run facts derived from stored rows (never from in-memory counters), for asset metadata."""
    if table.is_empty():
        return {"articles": 0, "ok": 0, "failed": 0}
    ok = table.filter(pl.col("error").is_null())
    seconds = float(ok["seconds"].sum()) if len(ok) else 0.0
    completion = int(ok["completion_tokens"].sum()) if len(ok) else 0
    return {
        "articles": len(table),
        "ok": len(ok),
        "failed": len(table) - len(ok),
        "retried_articles": int((table["attempt"] > 1).sum()),
        "seconds_per_article": seconds / len(ok) if len(ok) else None,
        "completion_tokens_per_s": completion / seconds if seconds > 0 else None,
        "prompt_tokens_mean": float(ok["prompt_tokens"].mean()) if len(ok) else None,
        "completion_tokens_mean": completion / len(ok) if len(ok) else None,
    }


def _commit(generation_log: GenerationLog, buffer: list[dict[str, Any]]) -> None:
    if buffer:
        generation_log.append(list(buffer))
        buffer.clear()


def _in_request_order(frame: pl.DataFrame, ids: list[str]) -> pl.DataFrame:
    if frame.is_empty():
        return frame
    order = pl.DataFrame({"article_id": ids}).with_row_index("_order")
    return frame.join(order, on="article_id", how="inner").sort("_order").drop("_order")
