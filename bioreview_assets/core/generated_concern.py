"""A generated concern and the result of parsing one model output: labels checked against the vocabulary, the
parse method named (core/parsing.py finds them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from bioreview_assets.core.schema import SCORED_CATEGORIES, SEVERITIES

PARSE_METHODS: tuple[str, ...] = (
    "strict",
    "fenced",
    "salvaged",
    "bare_objects",
    "prose",
    "empty",
    "repetition_loop",
    "unparsable",
)


@dataclass(frozen=True)
class GeneratedConcern:
    """One concern produced by a model, with its labels checked against the vocabulary."""

    text: str
    category: str | None
    severity: str | None
    category_valid: bool
    severity_valid: bool

    def __post_init__(self) -> None:
        # The flags are derived data; a mismatch means a caller built the object by hand wrongly.
        if not self.text.strip():
            raise ValueError("concern text is empty")
        if self.category_valid != _is_valid(self.category, SCORED_CATEGORIES):
            raise ValueError(f"category_valid={self.category_valid} disagrees with category {self.category!r}")
        if self.severity_valid != _is_valid(self.severity, SEVERITIES):
            raise ValueError(f"severity_valid={self.severity_valid} disagrees with severity {self.severity!r}")

    @classmethod
    def of(cls, text: str, category: Any = None, severity: Any = None) -> GeneratedConcern:
        """Build a concern from raw values: strip the text, normalise labels, derive the validity flags."""
        cat = normalise_label(category)
        sev = normalise_label(severity)
        return cls(
            text=text.strip(),
            category=cat,
            severity=sev,
            category_valid=_is_valid(cat, SCORED_CATEGORIES),
            severity_valid=_is_valid(sev, SEVERITIES),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict with labels and validity flags."""
        return {
            "text": self.text,
            "category": self.category,
            "severity": self.severity,
            "category_valid": self.category_valid,
            "severity_valid": self.severity_valid,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GeneratedConcern:
        """Inverse of to_dict; flags, when present, must agree with the labels."""
        concern = cls.of(data["text"], data.get("category"), data.get("severity"))
        for flag in ("category_valid", "severity_valid"):
            if flag in data and data[flag] != getattr(concern, flag):
                raise ValueError(f"{flag}={data[flag]!r} disagrees with the labels of {dict(data)!r}")
        return concern


@dataclass(frozen=True)
class ParseResult:
    """Concerns parsed from one raw output, and how they were found."""

    concerns: tuple[GeneratedConcern, ...]
    method: str
    ok: bool
    detail: str

    def __post_init__(self) -> None:
        if self.method not in PARSE_METHODS:
            raise ValueError(f"unknown parse method {self.method!r}")
        if self.ok != bool(self.concerns):
            raise ValueError("ok must be True exactly when at least one concern was parsed")


def normalise_label(value: Any) -> str | None:
    """Strip + lower-case a label; None and blank stay None (never the string "None")."""
    if value is None:
        return None
    label = str(value).strip().lower()
    return label or None


def _is_valid(label: str | None, vocabulary: tuple[str, ...]) -> bool:
    return label is not None and label in vocabulary
