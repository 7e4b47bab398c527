"""The last parse stages: repetition loops (never turned into concerns) and numbered/bulleted prose lists."""

from __future__ import annotations

import re
from collections import Counter

from bioreview_assets.core.generated_concern import GeneratedConcern, ParseResult
from bioreview_assets.core.schema import SCORED_CATEGORIES

MIN_PROSE_WORDS = 6
PROSE_PREAMBLES: tuple[str, ...] = ("here are", "here is", "sure", "certainly", "below are", "output", "json")
LOOP_MIN_LINE_CHARS = 21  # "the same line of more than 20 characters..."
LOOP_MIN_LINE_REPEATS = 10  # "...repeated at least 10 times"
LOOP_MIN_WORDS = 80  # below this, repeated n-grams are normal phrasing, not a loop
LOOP_NGRAM = 6
LOOP_MAX_DISTINCT_NGRAM_RATIO = 0.5  # at most half the word 6-grams are new: the text is mostly repeats
_LIST_MARKER = re.compile(r"^\s*(?:\d{1,3}[.)]|\(\d{1,3}\)|[-*•])\s+")
_LEADING_LABEL = re.compile(r"^\s*(?:\*\*)?\s*([A-Za-z_ ]{3,40}?)\s*(?:\*\*)?\s*:\s*(?:\*\*)?\s*")


def describe_repetition_loop(text: str) -> str | None:
    """Say why text looks like a repetition loop, or None when it does not."""
    lines = Counter(line.strip() for line in text.splitlines() if len(line.strip()) >= LOOP_MIN_LINE_CHARS)
    if lines:
        line, count = lines.most_common(1)[0]
        if count >= LOOP_MIN_LINE_REPEATS:
            return f"line repeated {count} times: {line[:60]!r}"
    words = text.split()
    if len(words) < LOOP_MIN_WORDS:
        return None
    ngrams = [tuple(words[i : i + LOOP_NGRAM]) for i in range(len(words) - LOOP_NGRAM + 1)]
    ratio = len(set(ngrams)) / len(ngrams)
    if ratio <= LOOP_MAX_DISTINCT_NGRAM_RATIO:
        return f"only {ratio:.0%} of the {len(words)} words' {LOOP_NGRAM}-grams are distinct"
    return None


def parse_prose(text: str) -> ParseResult | None:
    concerns = [_concern_from_prose(item) for item in _list_items(text)]
    concerns = [c for c in concerns if c is not None]
    if not concerns:
        return None
    return ParseResult(tuple(concerns), "prose", True, f"list items: {len(concerns)} concerns")


def _list_items(text: str) -> list[str]:
    """Numbered/bulleted items with their continuation lines; unmarked paragraphs are not items."""
    items: list[list[str]] = []
    current: list[str] | None = None
    for line in text.splitlines():
        marker = _LIST_MARKER.match(line)
        if marker:
            current = [line[marker.end() :].strip()]
            items.append(current)
        elif not line.strip():
            current = None  # a blank line ends the item; what follows unmarked is commentary
        elif current is not None:
            current.append(line.strip())
    return [" ".join(parts).strip() for parts in items]


def _concern_from_prose(item: str) -> GeneratedConcern | None:
    """A list item of >= MIN_PROSE_WORDS words that is not a preamble; a leading category label is used."""
    text, category = _split_category_label(item)
    text = text.replace("**", "").strip()
    if text.lower().startswith(PROSE_PREAMBLES) or len(text.split()) < MIN_PROSE_WORDS:
        return None
    return GeneratedConcern.of(text, category)


def _split_category_label(item: str) -> tuple[str, str | None]:
    # "**Statistical methodology:** ..." carries a category; any other text before a colon is content.
    label = _LEADING_LABEL.match(item)
    if label:
        category = label.group(1).strip().lower().replace(" ", "_")
        if category in SCORED_CATEGORIES:
            return item[label.end() :], category
    return item, None
