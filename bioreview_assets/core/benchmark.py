"""Load a benchmark split file: validate every row, quarantine bad ones with line numbers, hash the content."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable

from pydantic import ValidationError

from bioreview_assets.core.schema import Article


class TooManyBadRows(ValueError):
    """More rows failed validation than the configured fraction allows."""


class OverlappingSplits(ValueError):
    """Two splits share an article id."""


@dataclass(frozen=True)
class QuarantinedRow:
    line: int
    reason: str  # unparsable_json | schema | duplicate_id | not_an_object
    detail: str
    raw: str

    def to_dict(self) -> dict:
        return {"line": self.line, "reason": self.reason, "detail": self.detail, "raw": self.raw}


@dataclass
class LoadedSplit:
    split: str
    articles: list[Article]
    quarantined: list[QuarantinedRow] = field(default_factory=list)
    content_hash: str = ""
    n_lines: int = 0

    @property
    def quarantine_counts(self) -> dict[str, int]:
        return dict(Counter(row.reason for row in self.quarantined))

    @property
    def bad_fraction(self) -> float:
        total = len(self.articles) + len(self.quarantined)
        return len(self.quarantined) / total if total else 0.0


def content_hash(raw: bytes) -> str:
    """sha256 of the split file's bytes (the split's identity for every downstream comparison, W13)."""
    return hashlib.sha256(raw).hexdigest()


def parse_split(split: str, raw: bytes, max_bad_fraction: float = 0.02) -> LoadedSplit:
    """Validate every line of a JSONL split; bad rows go to quarantine; too many bad rows is an error."""
    loaded = LoadedSplit(split=split, articles=[], content_hash=content_hash(raw))
    seen_lines: dict[str, int] = {}
    for line_no, line in enumerate(raw.decode("utf-8", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        loaded.n_lines += 1
        article, problem = _parse_line(line)
        if problem:
            loaded.quarantined.append(QuarantinedRow(line_no, problem[0], problem[1], line))
            continue
        if article.id in seen_lines:
            detail = f"id {article.id!r} already on line {seen_lines[article.id]}"
            loaded.quarantined.append(QuarantinedRow(line_no, "duplicate_id", detail, line))
            continue
        seen_lines[article.id] = line_no
        loaded.articles.append(article)
    if loaded.bad_fraction > max_bad_fraction:
        raise TooManyBadRows(
            f"split {split!r}: {len(loaded.quarantined)} of {loaded.n_lines} rows are bad "
            f"({loaded.bad_fraction:.1%} > allowed {max_bad_fraction:.1%}); reasons {loaded.quarantine_counts}; "
            f"first: line {loaded.quarantined[0].line}: {loaded.quarantined[0].detail}"
        )
    return loaded


def _parse_line(line: str) -> tuple[Article | None, tuple[str, str] | None]:
    try:
        data = json.loads(line)
    except json.JSONDecodeError as err:
        return None, ("unparsable_json", str(err))
    if not isinstance(data, dict):
        return None, ("not_an_object", f"row is a JSON {type(data).__name__}, expected an object")
    try:
        return Article.model_validate(data), None
    except ValidationError as err:
        issues = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors()[:5])
        return None, ("schema", issues)


def check_disjoint(splits: Iterable[LoadedSplit]) -> None:
    """Raise when any article id appears in more than one split (leakage between train and eval)."""
    owner: dict[str, str] = {}
    clashes: list[str] = []
    for loaded in splits:
        for article in loaded.articles:
            if article.id in owner and owner[article.id] != loaded.split:
                clashes.append(f"{article.id} ({owner[article.id]} and {loaded.split})")
            owner.setdefault(article.id, loaded.split)
    if clashes:
        raise OverlappingSplits(f"{len(clashes)} article ids are in more than one split: {', '.join(clashes[:5])}")
