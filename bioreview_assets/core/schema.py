"""Benchmark row schema (bioreview-bench OpenPeerReviewEntry / ReviewerConcern, v3 and v4 rows)."""

from __future__ import annotations

import datetime as _dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SOURCES: tuple[str, ...] = ("elife", "plos", "nature", "peerj", "f1000")
SPLITS: tuple[str, ...] = ("train", "val", "test")

# The 8 categories a model is asked to produce; figure_issue exists in the data but is never scored.
SCORED_CATEGORIES: tuple[str, ...] = (
    "design_flaw",
    "statistical_methodology",
    "missing_experiment",
    "prior_art_novelty",
    "writing_clarity",
    "reagent_method_specificity",
    "interpretation",
    "other",
)
FIGURE_CATEGORY = "figure_issue"
ALL_CATEGORIES: tuple[str, ...] = SCORED_CATEGORIES[:3] + (FIGURE_CATEGORY,) + SCORED_CATEGORIES[3:]
SEVERITIES: tuple[str, ...] = ("major", "minor", "optional")
STANCES: tuple[str, ...] = ("conceded", "rebutted", "partial", "unclear", "no_response")

Category = Literal[
    "design_flaw",
    "statistical_methodology",
    "missing_experiment",
    "figure_issue",
    "prior_art_novelty",
    "writing_clarity",
    "reagent_method_specificity",
    "interpretation",
    "other",
]
Severity = Literal["major", "minor", "optional"]
Stance = Literal["conceded", "rebutted", "partial", "unclear", "no_response"]


class Concern(BaseModel):
    """One reference ("ground truth") reviewer concern."""

    model_config = ConfigDict(extra="allow")

    concern_id: str
    reviewer_num: int = Field(ge=1)
    concern_text: str = Field(min_length=10, max_length=2000)
    category: Category
    severity: Severity
    author_response_text: str | None = None
    author_stance: Stance
    evidence_of_change: bool | None = None
    # Optional here (required upstream) so that a missing value reaches the GT filter, whose rule for it is explicit.
    resolution_confidence: float | None = Field(default=None, ge=0.0, le=1.0)
    resolution: Stance | None = None
    was_valid: bool | None = None
    raised_by_multiple: bool = False
    requires_figure_reading: bool = False
    extraction_trace_id: str
    extraction_manifest_id: str
    source: str
    article_doi: str

    @model_validator(mode="before")
    @classmethod
    def _derive_resolution(cls, data: Any) -> Any:
        # Upstream pre-validator: resolution defaults to the stance; was_valid is always recomputed from it.
        if isinstance(data, dict) and data.get("author_stance"):
            data = dict(data)
            data.setdefault("resolution", data["author_stance"])
            if data.get("resolution") is None:
                data["resolution"] = data["author_stance"]
            data["was_valid"] = data["author_stance"] in ("conceded", "partial") and data.get(
                "evidence_of_change"
            ) is not False
        return data


class Article(BaseModel):
    """One benchmark article: task input (title, abstract, sections) plus its reference concerns."""

    model_config = ConfigDict(extra="allow")

    id: str
    source: Literal["elife", "plos", "nature", "peerj", "f1000"]
    doi: str
    title: str
    abstract: str = Field(min_length=50)
    subjects: list[str] = Field(default_factory=list)
    editorial_decision: Literal["accept", "major_revision", "minor_revision", "reject", "unknown"] = "unknown"
    revision_round: int = Field(default=1, ge=1)
    published_date: _dt.date
    review_format: Literal["journal", "reviewed_preprint", "unknown"] = "unknown"
    has_author_response: bool = False
    paper_text_sections: dict[str, str] = Field(default_factory=dict)
    structured_references: list[dict[str, Any]] = Field(default_factory=list)
    decision_letter_raw: str = ""
    author_response_raw: str = ""
    concerns: list[Concern] = Field(default_factory=list)
    extraction_manifest_id: str = ""
    schema_version: str = "1.1"

    @model_validator(mode="before")
    @classmethod
    def _accept_legacy_sections(cls, data: Any) -> Any:
        # v3-era rows (and the reference prep script) carry the paper under `sections`.
        if isinstance(data, dict) and "paper_text_sections" not in data and isinstance(data.get("sections"), dict):
            data = dict(data)
            data["paper_text_sections"] = data.pop("sections")
        return data

    @field_validator("id")
    @classmethod
    def _id_has_source_prefix(cls, value: str) -> str:
        if ":" not in value or not value.split(":", 1)[1]:
            raise ValueError(f"id {value!r} is not of the form '<source>:<token>'")
        return value

    @model_validator(mode="after")
    def _id_matches_source(self) -> "Article":
        prefix = self.id.split(":", 1)[0]
        if prefix != self.source:
            raise ValueError(f"id prefix {prefix!r} does not match source {self.source!r}")
        return self

    def to_row(self) -> dict[str, Any]:
        """Canonical JSON-ready dict (upstream `model_dump(mode="json")` order)."""
        return self.model_dump(mode="json")


class ScorableConcern(BaseModel):
    """A reference concern that survived the GT filter: what training targets and scoring both use."""

    model_config = ConfigDict(frozen=True)

    concern_id: str
    article_id: str
    source: str
    text: str
    category: str
    severity: str
