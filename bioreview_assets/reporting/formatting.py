"""The one place numbers, confidence intervals and tables become text: the Dagster UI, the report, the model card
and the terminal summary all print through these (standard library only, no I/O).

    number(0.39215)                          '0.392'
    with_ci(0.392, (0.343, 0.443))           '0.392 [0.343, 0.443]'
    labelled_ci("F1", 0.392, (0.343, 0.443)) 'F1 0.392 [0.343, 0.443]'
    markdown_table(["a", "b"], [["1", "2"]]) '| a | b |\\n|---|---|\\n| 1 | 2 |'
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

DIGITS = 3
NO_ROWS = "_no rows_"


def number(value: Any, digits: int = DIGITS, missing: str = "n/a") -> str:
    """A float with `digits` decimals, anything else as str; `missing` for None ('n/a' in the UI, '-' in the card)."""
    if value is None:
        return missing
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def with_ci(value: Any, interval: Sequence | None, digits: int = DIGITS, missing: str = "n/a") -> str:
    """'0.392 [0.343, 0.443]'; the value alone when the interval or either bound is missing."""
    lo, hi = interval if interval else (None, None)
    if lo is None or hi is None:
        return number(value, digits, missing)
    return f"{number(value, digits, missing)} [{number(lo, digits, missing)}, {number(hi, digits, missing)}]"


def labelled_ci(name: str, value: Any, interval: Sequence | None, digits: int = DIGITS) -> str:
    """'F1 0.392 [0.343, 0.443]' (the interval left out when there is none)."""
    return f"{name} {with_ci(value, interval, digits)}"


def signed(value: float | None, base: float, digits: int = DIGITS) -> str:
    """value - base with its sign, or n/a when value is undefined."""
    return "n/a" if value is None else f"{value - base:+.{digits}f}"


def rounded(value: Any, digits: int = DIGITS) -> Any:
    """Floats rounded in nested dicts and lists; None entries of dicts dropped (they mean 'not measured here')."""
    if isinstance(value, float):
        return round(value, digits)
    if type(value) is dict:  # plain containers only: metadata values are records
        return {k: rounded(v, digits) for k, v in value.items() if v is not None}
    if type(value) in (list, tuple):
        return [rounded(v, digits) for v in value]
    return value


def cell(value: Any, width: int | None = 140, digits: int = DIGITS) -> str:
    """One markdown table cell: a number as `number` gives it, None empty, no pipes or newlines, cut to width."""
    if value is None:
        return ""
    text = number(value, digits)
    if width is None:
        return text
    text = " ".join(text.replace("|", "/").split())
    return text if len(text) <= width else text[: width - 1] + "…"


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence[str]], empty: str = NO_ROWS) -> str:
    """A GitHub markdown table of already formatted cells (`cell`, `number`, `with_ci`); `empty` when no rows."""
    if not rows:
        return empty
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def record_table(records: Sequence[dict], columns: Sequence[str], width: int | None = 140,
                 digits: int = DIGITS) -> str:
    """A markdown table of dicts (missing keys empty), each value through `cell`."""
    return markdown_table(columns, [[cell(r.get(c), width, digits) for c in columns] for r in records])


def aligned_table(columns: Sequence[str], rows: Sequence[Sequence[Any]], digits: int = DIGITS) -> list[str]:
    """A plain-text table for a terminal: the first column left-aligned (names), the rest right-aligned (numbers)."""
    cells = [[number(v, digits, missing="None") for v in row] for row in rows]
    widths = [max(len(c) for c in column) for column in zip(list(columns), *cells)]

    def line(row: Sequence[str]) -> str:
        return "  ".join(value.ljust(w) if i == 0 else value.rjust(w) for i, (value, w) in enumerate(zip(row, widths)))

    return [line(list(columns)), *(line(row) for row in cells)]


def frame_table(frame, digits: int = DIGITS) -> str:
    """A polars frame as a markdown table: floats rounded, None empty, cells as they are (no cutting)."""
    return markdown_table(frame.columns, [[number(v, digits, missing="") for v in row] for row in frame.iter_rows()])


def aligned_frame(frame, digits: int = DIGITS) -> list[str]:
    """A polars frame as `aligned_table` lines."""
    return aligned_table(frame.columns, list(frame.iter_rows()), digits)
