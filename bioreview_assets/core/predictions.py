"""Read a prediction file in the benchmark harness's format, with its exact rules for valid rows (docs/reference.md:
harness §3.2).

Every malformed row is an error naming the file, the line and what was expected (the harness crashes, or silently
scores a string as one concern per character); all of them are reported at once. `prediction_coverage` says which
split articles have no prediction and which predictions name ids outside the split (a warning, as upstream).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

EXPECTED_ROW = 'one JSON object per line: {"article_id": "<id>", "concerns": ["<text>", ...]}'
_MAX_LISTED = 20  # malformed rows listed in one error
_MAX_EXAMPLES = 5  # ids listed per coverage example


class BadPredictions(ValueError):
    """A prediction file with malformed rows, duplicate ids, or no article of the split."""


@dataclass
class PredictionFile:
    """The parsed rows of one prediction file: concerns per article id, the line of each id, and warnings."""

    source: str
    by_article: dict[str, list[dict]] = field(default_factory=dict)
    line_of: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


class _RowError(ValueError):
    """One malformed row (message without the file and line, which the caller adds)."""


def read_predictions(raw: bytes | str | Iterable[str], source: str = "predictions") -> PredictionFile:
    """Parse a prediction file (bytes, text, or its lines); raises BadPredictions listing every malformed row."""
    out = PredictionFile(source=source)
    errors: list[str] = []
    for number, line in _numbered_lines(raw):
        try:
            if isinstance(line, bytes):
                line = _decode(line)
            if not line.strip():
                continue
            article_id, concerns = _row(line, number, out)
        except _RowError as err:
            errors.append(f"line {number}: {err}")
            continue
        out.by_article[article_id] = concerns
        out.line_of[article_id] = number
    if errors:
        listed = "\n  ".join(errors[:_MAX_LISTED])
        more = f"\n  ... and {len(errors) - _MAX_LISTED} more" if len(errors) > _MAX_LISTED else ""
        raise BadPredictions(f"{source}: {len(errors)} malformed rows (expected {EXPECTED_ROW}):\n  {listed}{more}")
    if not out.by_article:
        raise BadPredictions(f"{source}: no predictions (the file has no rows); expected {EXPECTED_ROW}")
    return out


def prediction_coverage(predictions: PredictionFile, split_ids: Sequence[str], split: str) -> dict[str, Any]:
    """Which split articles the file covers; a file covering none is an error, unknown ids a warning."""
    known = set(split_ids)
    unknown = [aid for aid in predictions.by_article if aid not in known]
    missing = [aid for aid in split_ids if aid not in predictions.by_article]
    covered = len(split_ids) - len(missing)
    unknown_examples = [f"{aid!r} (line {predictions.line_of[aid]})" for aid in unknown[:_MAX_EXAMPLES]]
    if covered == 0:
        raise BadPredictions(
            f"{predictions.source}: none of its {len(predictions.by_article)} article ids is in the {split} split "
            f"({len(split_ids)} articles), e.g. {', '.join(unknown_examples)}; the split's ids look like "
            f"{', '.join(repr(i) for i in split_ids[:3])} (wrong --split, or ids not written as strings?)"
        )
    warnings = []
    if unknown:
        warnings.append(f"{predictions.source}: {len(unknown)} predictions are for ids not in the {split} split and "
                        f"are ignored, as the harness does: {', '.join(unknown_examples)}")
    if missing:
        examples = ", ".join(repr(i) for i in missing[:_MAX_EXAMPLES])
        warnings.append(f"{predictions.source}: {len(missing)} of {len(split_ids)} {split} articles have no prediction "
                        f"and are scored with zero concerns, e.g. {examples}")
    return {
        "split": split,
        "split_articles": len(split_ids),
        "predicted_articles": len(predictions.by_article),
        "covered_articles": covered,
        "missing_articles": len(missing),
        "missing_examples": missing[:_MAX_EXAMPLES],
        "unknown_ids": len(unknown),
        "unknown_examples": [{"id": aid, "line": predictions.line_of[aid]} for aid in unknown[:_MAX_EXAMPLES]],
        "warnings": predictions.warnings + warnings,
    }


def _numbered_lines(raw: bytes | str | Iterable[str]) -> Iterable[tuple[int, bytes | str]]:
    # Split on "\n" only: str.splitlines would also cut rows at U+2028/U+0085 inside JSON strings.
    if isinstance(raw, bytes):
        return enumerate(raw.removeprefix(b"\xef\xbb\xbf").split(b"\n"), start=1)
    if isinstance(raw, str):
        return enumerate(raw.split("\n"), start=1)
    return enumerate(raw, start=1)


def _decode(line: bytes) -> str:
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError as err:
        raise _RowError(f"invalid UTF-8 at byte {err.start} ({err.reason}); expected UTF-8 text") from None


def _row(line: str, number: int, seen: PredictionFile) -> tuple[str, list[dict]]:
    try:
        row = json.loads(line)
    except (ValueError, RecursionError) as err:
        raise _RowError(f"not JSON ({err})") from None
    if not isinstance(row, dict):
        raise _RowError(f"the row is {_kind(row)}, expected an object")
    # The harness takes `article_id`, else `id` (a falsy article_id falls through to id, as `a or b` does).
    key = "article_id" if row.get("article_id") else "id"
    article_id = row.get(key)
    if not article_id:
        raise _RowError(f'no "article_id" or "id" (keys: {sorted(row)[:8]})')
    if not isinstance(article_id, str):
        raise _RowError(f'"{key}" must be a string, got {_kind(article_id)} {article_id!r} '
                        f'(write it as "{article_id}")')
    if article_id in seen.by_article:
        raise _RowError(f"duplicate article id {article_id!r} (first on line {seen.line_of[article_id]})")
    if "concerns" not in row or row["concerns"] is None:
        seen.warnings.append(f"{seen.source} line {number}: {article_id!r} has no \"concerns\"; scored with zero")
        return article_id, []
    return article_id, _concerns(row["concerns"], number, article_id, seen)


def _concerns(items: Any, number: int, article_id: str, seen: PredictionFile) -> list[dict]:
    if not isinstance(items, list):
        hint = " (a string would be scored as one concern per character)" if isinstance(items, str) else ""
        raise _RowError(f'"concerns" must be a list of strings or of objects, got {_kind(items)}{hint}')
    if not items:
        return []
    if isinstance(items[0], str):
        bad = [i for i, item in enumerate(items) if not isinstance(item, str)]
        if bad:  # upstream crashes here (harness W10); we say where
            raise _RowError(f"a concern list that starts with a string must hold only strings; "
                            f"concerns[{bad[0]}] is {_kind(items[bad[0]])}")
        return [{"text": item.strip()} for item in items if item.strip()]
    if not isinstance(items[0], dict):
        raise _RowError(f"concerns[0] is {_kind(items[0])}, expected a string or an object with \"text\"")
    out, dropped = [], []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            dropped.append(index)  # the harness drops non-objects in an object list; we keep its rule but say so
            continue
        out.append(_concern_object(item, index))
    if dropped:
        seen.warnings.append(f"{seen.source} line {number}: {article_id!r}: {len(dropped)} non-object items in an "
                             f"object list dropped (as the harness does), e.g. concerns[{dropped[0]}]")
    return out


def _concern_object(item: dict, index: int) -> dict:
    # text, else concern_text, else "" (kept and counted, as upstream).
    text = item.get("text") or item.get("concern_text") or ""
    if not isinstance(text, str):
        raise _RowError(f"concerns[{index}].text must be a string, got {_kind(text)}")
    for key in ("category", "severity"):
        if item.get(key) is not None and not isinstance(item[key], str):
            raise _RowError(f"concerns[{index}].{key} must be a string or null, got {_kind(item[key])} {item[key]!r}")
    return {"text": text, "category": item.get("category"), "severity": item.get("severity")}


def _kind(value: Any) -> str:
    """The JSON type name of a parsed value, for messages."""
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "an array",
            dict: "an object"}.get(type(value), type(value).__name__)
