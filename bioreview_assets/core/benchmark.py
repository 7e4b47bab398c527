"""Load a benchmark split file: validate every row, quarantine bad ones with line numbers, hash the content."""

from __future__ import annotations

import base64
import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Iterator

from pydantic import ValidationError

from bioreview_assets.core.schema import Article

BAD_ROW_CONFIG_KEY = "max_bad_row_fraction (configs/project.yaml)"
_BOM = b"\xef\xbb\xbf"


class TooManyBadRows(ValueError):
    """More rows failed validation than the configured fraction allows."""


class EmptySplit(ValueError):
    """A split file with no rows at all."""


class OverlappingSplits(ValueError):
    """Two splits share an article id."""


@dataclass(frozen=True)
class QuarantinedRow:
    line: int
    reason: str  # invalid_utf8 | unparsable_json | not_an_object | invalid_unicode | schema | duplicate_id
    detail: str
    raw: str
    raw_base64: str | None = None  # the exact bytes, when `raw` could not hold them (invalid UTF-8)

    def to_dict(self) -> dict:
        out = {"line": self.line, "reason": self.reason, "detail": self.detail, "raw": self.raw}
        if self.raw_base64 is not None:
            out["raw_base64"] = self.raw_base64
        return out


@dataclass
class LoadedSplit:
    split: str
    articles: list[Article]
    quarantined: list[QuarantinedRow] = field(default_factory=list)
    content_hash: str = ""
    n_lines: int = 0
    source: str = ""  # the file the rows came from, for messages
    line_of: dict[str, int] = field(default_factory=dict)  # article id -> line number

    @property
    def quarantine_counts(self) -> dict[str, int]:
        return dict(Counter(row.reason for row in self.quarantined))

    @property
    def bad_fraction(self) -> float:
        total = len(self.articles) + len(self.quarantined)
        return len(self.quarantined) / total if total else 0.0

    @property
    def name(self) -> str:
        """The source file when known, else the split name (for messages)."""
        return self.source or f"split {self.split!r}"


def content_hash(raw: bytes) -> str:
    """sha256 of the split file's bytes (the split's identity for every downstream comparison, W13)."""
    return hashlib.sha256(raw).hexdigest()


def split_lines(raw: bytes) -> Iterator[tuple[int, bytes]]:
    """(line number, bytes) of every line, split on b"\\n" only.

    Not str.splitlines: it also breaks on U+2028, U+0085 and friends, which are legal inside JSON strings, so a
    valid row would be cut into fragments and every later line number would shift.
    """
    for number, line in enumerate(raw.split(b"\n"), start=1):
        if number == 1:
            line = line.removeprefix(_BOM)  # a BOM written by some editors is not part of the first row
        yield number, line.removesuffix(b"\r")  # CRLF files: the \r belongs to the line break


def load_split(split: str, raw: bytes, source: str = "") -> LoadedSplit:
    """Validate every line of a JSONL split; bad rows go to quarantine with their line number (never raises)."""
    loaded = LoadedSplit(split=split, articles=[], content_hash=content_hash(raw), source=source)
    for line_no, data in split_lines(raw):
        if not data.strip():
            continue
        loaded.n_lines += 1
        try:
            line = data.decode("utf-8")
        except UnicodeDecodeError as err:
            # Never replace bad bytes silently: the row is set aside, its exact bytes kept in base64.
            detail = f"invalid UTF-8 at byte {err.start} ({err.reason}); expected UTF-8 encoded JSON"
            loaded.quarantined.append(QuarantinedRow(line_no, "invalid_utf8", detail,
                                                     data.decode("utf-8", errors="backslashreplace"),
                                                     base64.b64encode(data).decode("ascii")))
            continue
        article, problem = _parse_line(line)
        if problem:
            loaded.quarantined.append(QuarantinedRow(line_no, problem[0], problem[1], line))
            continue
        if article.id in loaded.line_of:
            detail = f"id {article.id!r} already on line {loaded.line_of[article.id]}"
            loaded.quarantined.append(QuarantinedRow(line_no, "duplicate_id", detail, line))
            continue
        loaded.line_of[article.id] = line_no
        loaded.articles.append(article)
    return loaded


def enforce_bad_row_limit(loaded: LoadedSplit, max_bad_fraction: float, quarantine_file: str | None = None) -> None:
    """Raise when the file is empty or more rows are bad than `max_bad_fraction` allows (naming file, reasons, key)."""
    if loaded.n_lines == 0:
        raise EmptySplit(f"{loaded.name}: no rows (empty file); expected one JSON article object per line")
    if loaded.bad_fraction <= max_bad_fraction:
        return
    reasons = ", ".join(f"{reason}={n}" for reason, n in sorted(loaded.quarantine_counts.items()))
    first = loaded.quarantined[0]
    where = f"; every bad row with its line and reason is in {quarantine_file}" if quarantine_file else ""
    raise TooManyBadRows(
        f"{loaded.name}: {len(loaded.quarantined)} of {loaded.n_lines} rows are bad ({loaded.bad_fraction:.1%}), "
        f"more than {BAD_ROW_CONFIG_KEY} = {max_bad_fraction:.1%} allows; reasons: {reasons}; "
        f"first: line {first.line} ({first.reason}): {first.detail[:300]}{where}"
    )


def parse_split(split: str, raw: bytes, max_bad_fraction: float = 0.02, source: str = "") -> LoadedSplit:
    """load_split, then enforce the bad-row limit (for callers that need no quarantine file in between)."""
    loaded = load_split(split, raw, source)
    enforce_bad_row_limit(loaded, max_bad_fraction)
    return loaded


def _parse_line(line: str) -> tuple[Article | None, tuple[str, str] | None]:
    try:
        data = json.loads(line)
    except (ValueError, RecursionError) as err:  # ValueError: JSONDecodeError, or an integer over the digit limit
        return None, ("unparsable_json", f"{err}; expected one JSON object per line")
    if not isinstance(data, dict):
        return None, ("not_an_object", f"row is a JSON {_json_type(data)}, expected an object")
    try:
        # A \ud800-style escape decodes to a lone surrogate, which no UTF-8 file (articles.jsonl) can hold.
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as err:
        return None, ("invalid_unicode", f"lone surrogate {err.object[err.start:err.end]!r} from a \\u escape; "
                                         f"expected valid Unicode text")
    try:
        return Article.model_validate(data), None
    except ValidationError as err:
        issues = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors()[:5])
        return None, ("schema", issues)


def _json_type(value) -> str:
    return {list: "array", str: "string", bool: "boolean", int: "number", float: "number"}.get(type(value), "null")


def check_disjoint(splits: Iterable[LoadedSplit]) -> None:
    """Raise when any article id appears in more than one split (leakage between train and eval), naming both files."""
    owner: dict[str, LoadedSplit] = {}
    clashes: list[str] = []
    for loaded in splits:
        for article in loaded.articles:
            first = owner.get(article.id)
            if first is not None and first.split != loaded.split:
                clashes.append(f"{article.id!r} in {first.split} ({first.name} line {first.line_of.get(article.id)}) "
                               f"and {loaded.split} ({loaded.name} line {loaded.line_of.get(article.id)})")
            owner.setdefault(article.id, loaded)
    if clashes:
        raise OverlappingSplits(f"{len(clashes)} article ids are in more than one split: {'; '.join(clashes[:5])}")
