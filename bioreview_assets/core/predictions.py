"""Read a prediction file in the benchmark harness's format (BENCHMARK.md §3.2), with its exact rules."""

from __future__ import annotations

import json
from collections.abc import Iterable


class BadPredictions(ValueError):
    """A prediction file the harness would also reject (duplicate ids, unreadable rows)."""


def read_predictions(lines: Iterable[str]) -> dict[str, list[dict]]:
    """{article_id: [{text, category, severity}]}; `article_id` else `id`; string lists drop blank strings."""
    out: dict[str, list[dict]] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise BadPredictions(f"line {number}: not JSON ({err})") from err
        article_id = row.get("article_id") or row.get("id")
        if not article_id:
            raise BadPredictions(f"line {number}: no article_id or id")
        if article_id in out:
            raise BadPredictions(f"line {number}: duplicate article id {article_id!r}")
        out[article_id] = _concerns(row.get("concerns") or [], number)
    return out


def _concerns(items: list, number: int) -> list[dict]:
    if items and isinstance(items[0], str):
        if any(not isinstance(item, str) for item in items):
            # Upstream crashes here (W10); we say where.
            raise BadPredictions(f"line {number}: a concern list that starts with strings must hold only strings")
        return [{"text": item.strip()} for item in items if item.strip()]
    # Dict lists: text, else concern_text, else "" (kept and counted, as upstream); non-dicts dropped, as upstream.
    return [
        {"text": str(item.get("text") or item.get("concern_text") or ""), "category": item.get("category"),
         "severity": item.get("severity")}
        for item in items
        if isinstance(item, dict)
    ]
