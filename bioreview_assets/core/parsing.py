"""Typed parser of model output into concerns, with an explicit parse method per row (fixes W11).

Stages, first success wins, after `<think>` reasoning has been removed:

    strict        the whole text is a JSON array (or a JSON object holding one under a key of
                  CONTAINER_KEYS, e.g. {"concerns": [...]})
    fenced        a ```json fenced block holds such an array
    salvaged      a complete array embedded in prose, or a truncated array whose complete items are kept
    bare_objects  concern objects without an enclosing array: {...}, {...}
    prose         a numbered/bulleted list (only list items of >= 6 words; preambles dropped)

Before the prose stage, repetition loops are detected and reported as "repetition_loop" with no
concerns: a degenerate generation must never be turned into concerns. "empty" means nothing was
left after removing reasoning; "unparsable" means no stage found anything.

Labels are stripped and lower-cased; JSON null stays None. Labels outside the vocabulary are kept
as given (so they can be counted) but flagged invalid; figure_issue is not a valid generated
category because the model is told never to produce figure concerns.
"""

from __future__ import annotations

import bisect
import json
import re
from typing import Any

from bioreview_assets.core.generated_concern import GeneratedConcern, ParseResult
from bioreview_assets.core.prose_parsing import describe_repetition_loop, parse_prose

# Bump when parse_concerns changes what it returns for some text: concerns re-parse the stored raw generations
# (never regenerate) and the concerns asset's code and data versions change, so the UI shows what is stale.
PARSER_VERSION = "1"
# Keys under which a top-level JSON object may carry the concern list ({"concerns": [...]}).
CONTAINER_KEYS: tuple[str, ...] = ("concerns", "review_concerns")
TEXT_KEYS: tuple[str, ...] = ("text", "concern_text")

_DECODER = json.JSONDecoder()
_THINK_BLOCK = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_THINK_OPEN = re.compile(r"<think>", re.IGNORECASE)
_THINK_CLOSE = re.compile(r"</think>", re.IGNORECASE)
_FENCE = re.compile(r"```[ \t]*[A-Za-z0-9_-]*[ \t]*\n?(.*?)```", re.DOTALL)


def strip_reasoning(raw: str) -> tuple[str, bool]:
    """Remove <think> blocks (closed, prompt-opened, or never closed); return (text, whether anything was removed)."""
    text = _THINK_BLOCK.sub("", raw)
    # Qwen3-style templates put the opening <think> in the prompt, so the output starts inside it.
    closes = list(_THINK_CLOSE.finditer(text))
    if closes:
        text = text[closes[-1].end() :]
    # A block that never closed ran out of tokens while reasoning: nothing after it is an answer.
    opened = _THINK_OPEN.search(text)
    if opened:
        text = text[: opened.start()]
    return text, text != raw


def parse_concerns(raw: str) -> ParseResult:
    """Parse one raw model output into concerns; never raises on any text."""
    if not isinstance(raw, str):
        raise TypeError(f"raw output must be str, got {type(raw).__name__}")
    text, had_reasoning = strip_reasoning(raw)
    text = text.strip()
    result = _parse_stripped(text, had_reasoning)
    if had_reasoning and result.method != "empty":
        return ParseResult(result.concerns, result.method, result.ok, result.detail + "; reasoning removed")
    return result


def _parse_stripped(text: str, had_reasoning: bool) -> ParseResult:
    if not text:
        detail = "nothing left after removing reasoning" if had_reasoning else "empty output"
        return ParseResult((), "empty", False, detail)
    for stage in (_parse_strict, _parse_fenced, _parse_salvaged, _parse_bare_objects):
        result = stage(text)
        if result is not None:
            return result
    loop = describe_repetition_loop(text)
    if loop is not None:
        return ParseResult((), "repetition_loop", False, loop)
    return parse_prose(text) or ParseResult((), "unparsable", False, "no JSON array, concern objects or list found")


# ----------------------------------------------------------------------------------------------
# JSON stages


def _parse_strict(text: str) -> ParseResult | None:
    items = _as_concern_list(_load_json(text))
    if items is None:
        return None
    return _result_from_items(items, "strict", "whole text is JSON")


def _parse_fenced(text: str) -> ParseResult | None:
    for block in _FENCE.findall(text):
        items = _as_concern_list(_load_json(block.strip()))
        if items is not None:
            return _result_from_items(items, "fenced", "fenced JSON block")
    return None


def _parse_salvaged(text: str) -> ParseResult | None:
    # A complete array anywhere beats a truncated one; candidates are tried left to right so that
    # a prose bracket such as "[1]" is skipped instead of grabbed (first-[ / last-] slicing did that).
    starts = _array_starts(text)
    for start in starts:
        value, _ = _decode_at(text, start)
        if isinstance(value, list):
            concerns, dropped = _convert_items(value)
            if concerns:
                return _result(concerns, dropped, "salvaged", f"complete array at char {start}")
    # A truncated array is decoded item by item, from starts outside string literals: a "[" inside a cut-off
    # concern's text (say "text": "[") would otherwise decode the rest of that item as items of its own.
    in_string = _string_spans(text, starts[0]) if starts else []
    for start in starts:
        if _inside(in_string, start):
            continue
        items, stop = _decode_items_progressively(text, start)
        concerns, dropped = _convert_items(items)
        if concerns:
            return _result(concerns, dropped, "salvaged", f"array at char {start} decoded item by item ({stop})")
    return None


def _parse_bare_objects(text: str) -> ParseResult | None:
    objects: list[Any] = []
    pos = text.find("{")
    while pos != -1:
        value, end = _decode_at(text, pos)
        if isinstance(value, dict) and any(key in value for key in TEXT_KEYS):
            objects.append(value)
            pos = text.find("{", end)
        else:
            pos = text.find("{", pos + 1)
    concerns, dropped = _convert_items(objects)
    if not concerns:
        return None
    return _result(concerns, dropped, "bare_objects", f"{len(objects)} objects outside an array")


def _load_json(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def _decode_at(text: str, pos: int) -> tuple[Any, int]:
    """Decode one JSON value starting at pos; (None, pos) when there is none."""
    try:
        return _DECODER.raw_decode(text, pos)
    except (ValueError, RecursionError):
        return None, pos


def _as_concern_list(value: Any) -> list[Any] | None:
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        for key in CONTAINER_KEYS:
            if isinstance(value.get(key), list):
                return value[key]
    return None


def _array_starts(text: str) -> list[int]:
    # Only "[" followed by an object, a string or "]" can open a concern array; requiring that keeps
    # pathological inputs such as "[[[[..." from costing one deep decode per bracket.
    return [m.start() for m in re.finditer(r'\[(?=\s*[{"\]])', text)]


_STRING_LITERAL = re.compile(r'"(?:[^"\\]|\\.)*(?:"|$)', re.DOTALL)


def _string_spans(text: str, begin: int) -> list[tuple[int, int]]:
    """(open quote, end) of each JSON string literal from begin on; the last may run to the end of a cut text."""
    return [(m.start(), m.end()) for m in _STRING_LITERAL.finditer(text, begin)]


def _inside(spans: list[tuple[int, int]], pos: int) -> bool:
    index = bisect.bisect_right(spans, (pos, float("inf"))) - 1  # the last literal opened at or before pos
    return index >= 0 and spans[index][0] < pos < spans[index][1]


def _decode_items_progressively(text: str, start: int) -> tuple[list[Any], str]:
    """Decode array items one by one from the "[" at start; keep every complete item."""
    items: list[Any] = []
    pos = start + 1
    while True:
        while pos < len(text) and (text[pos].isspace() or text[pos] == ","):
            pos += 1
        if pos >= len(text):
            return items, "ended without ]"
        if text[pos] == "]":
            return items, "closed by ]"
        value, end = _decode_at(text, pos)
        if end == pos:
            leftover = len(text) - pos
            return items, f"stopped at an incomplete or undecodable item ({leftover} chars left)"
        items.append(value)
        pos = end


# ----------------------------------------------------------------------------------------------
# Items -> concerns


def _convert_items(items: list[Any]) -> tuple[list[GeneratedConcern], int]:
    concerns = [c for c in (_concern_from_item(item) for item in items) if c is not None]
    return concerns, len(items) - len(concerns)


def _concern_from_item(item: Any) -> GeneratedConcern | None:
    if isinstance(item, str):
        return GeneratedConcern.of(item) if item.strip() else None
    if not isinstance(item, dict):
        return None
    text = next((item[key] for key in TEXT_KEYS if isinstance(item.get(key), str) and item[key].strip()), None)
    if text is None:
        return None
    return GeneratedConcern.of(text, item.get("category"), item.get("severity"))


def _result_from_items(items: list[Any], method: str, detail: str) -> ParseResult:
    if not items:
        return ParseResult((), method, False, "empty array")
    concerns, dropped = _convert_items(items)
    return _result(concerns, dropped, method, detail)


def _result(concerns: list[GeneratedConcern], dropped: int, method: str, detail: str) -> ParseResult:
    detail = f"{detail}: {len(concerns)} concerns"
    if dropped:
        detail += f", {dropped} items dropped (no text)"
    return ParseResult(tuple(concerns), method, bool(concerns), detail)
