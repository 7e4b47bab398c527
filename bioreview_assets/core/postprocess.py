"""Post-processing policies for a list of concerns: exact dedup -> semantic dedup -> cap/selection (W15).

The reference pipeline only had exact dedup and "first N in generation order"; since targets are in
reviewer order that cap cuts later reviewers' points and late categories first. Selection is
therefore a parameter. Every policy keeps the original relative order of the concerns it keeps, so
the output of a policy is always a sub-sequence of its input.

Concerns are any objects with `text`, `category` and `severity` attributes (GeneratedConcern,
EnsembleConcern), so singles and ensembles go through the same code.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal, Protocol, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict, model_validator

from bioreview_assets.core.schema import SEVERITIES

SELECTIONS: tuple[str, ...] = ("first", "severity_first", "category_diverse")
STEPS: tuple[str, ...] = ("exact_dedup", "semantic_dedup", "cap")

SimilarityFn = Callable[[list[str], list[str]], np.ndarray]


class ConcernLike(Protocol):
    text: str
    category: str | None
    severity: str | None


C = TypeVar("C", bound=ConcernLike)


class PostprocessPolicy(BaseModel):
    """A named post-processing recipe (configs/project.yaml postprocess); the reference's "dedup_cap20" is
    PostprocessPolicy("dedup_cap20", cap=20)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    exact_dedup: bool = True
    semantic_dedup_threshold: float | None = None
    cap: int | None = None
    selection: Literal["first", "severity_first", "category_diverse"] = "first"

    def __init__(self, name: str | None = None, /, **data) -> None:
        super().__init__(**({"name": name} if name is not None else {}), **data)

    @model_validator(mode="after")
    def _check(self) -> "PostprocessPolicy":
        _check_cap(self.cap)
        threshold = self.semantic_dedup_threshold
        if threshold is not None and not -1.0 <= threshold <= 1.0:
            raise ValueError(f"semantic_dedup_threshold {threshold} is not a cosine similarity in [-1, 1]")
        return self


def normalise_text(text: str) -> str:
    """Exact-dedup key: lower-cased, whitespace runs collapsed, stripped."""
    return " ".join(text.lower().split())


def exact_dedup(concerns: Sequence[C]) -> list[C]:
    """Keep the first concern of each normalised text; labels are ignored, as in the reference."""
    seen: set[str] = set()
    kept = []
    for concern in concerns:
        key = normalise_text(concern.text)
        if key not in seen:
            seen.add(key)
            kept.append(concern)
    return kept


def semantic_dedup(concerns: Sequence[C], similarity: np.ndarray, threshold: float) -> list[C]:
    """Drop a concern >= threshold similar to an earlier KEPT one (no chaining through dropped ones)."""
    _check_square(similarity, len(concerns))
    kept_idx: list[int] = []
    for i in range(len(concerns)):
        if not any(similarity[i, j] >= threshold for j in kept_idx):
            kept_idx.append(i)
    return [concerns[i] for i in kept_idx]


def select(concerns: Sequence[C], cap: int | None, selection: str = "first") -> list[C]:
    """Keep at most cap concerns chosen by the selection rule, in their original order."""
    if selection not in SELECTIONS:
        raise ValueError(f"selection {selection!r} is not one of {SELECTIONS}")
    _check_cap(cap)
    if cap is None or len(concerns) <= cap:
        return list(concerns)
    if selection == "first":
        chosen = list(range(cap))
    elif selection == "severity_first":
        chosen = _severity_first(concerns)[:cap]
    else:
        chosen = _category_round_robin(concerns)[:cap]
    return [concerns[i] for i in sorted(chosen)]


def apply_policy(
    concerns: Sequence[C],
    policy: PostprocessPolicy,
    similarity_fn: SimilarityFn | None = None,
) -> tuple[list[C], dict[str, int]]:
    """Run the policy's steps in order; return kept concerns and how many each step removed."""
    if policy.semantic_dedup_threshold is not None and similarity_fn is None:
        raise ValueError(f"policy {policy.name!r} uses semantic dedup but no similarity_fn was given")
    removed = dict.fromkeys(STEPS, 0)
    kept = list(concerns)
    if policy.exact_dedup:
        kept, removed["exact_dedup"] = _counted(kept, exact_dedup(kept))
    if policy.semantic_dedup_threshold is not None and len(kept) > 1:
        assert similarity_fn is not None  # checked above; narrows the type
        texts = [c.text for c in kept]
        deduped = semantic_dedup(kept, similarity_fn(texts, texts), policy.semantic_dedup_threshold)
        kept, removed["semantic_dedup"] = _counted(kept, deduped)
    kept, removed["cap"] = _counted(kept, select(kept, policy.cap, policy.selection))
    return kept, removed


def _counted(before: list[C], after: list[C]) -> tuple[list[C], int]:
    return after, len(before) - len(after)


def _severity_first(concerns: Sequence[ConcernLike]) -> list[int]:
    # Stable: within a severity, generation order decides. Unknown/invalid severities go last.
    rank = {severity: i for i, severity in enumerate(SEVERITIES)}
    return sorted(range(len(concerns)), key=lambda i: rank.get(concerns[i].severity or "", len(SEVERITIES)))


def _category_round_robin(concerns: Sequence[ConcernLike]) -> list[int]:
    # Groups are the labels as given (None and out-of-vocabulary labels are groups of their own),
    # visited in order of first appearance; each round takes the next concern of every group.
    groups: dict[str | None, list[int]] = {}
    for i, concern in enumerate(concerns):
        groups.setdefault(concern.category, []).append(i)
    order: list[int] = []
    for round_ in range(max(len(members) for members in groups.values())):
        order.extend(members[round_] for members in groups.values() if round_ < len(members))
    return order


def _check_cap(cap: int | None) -> None:
    # cap=0 meant "no cap" in the reference CLI; here "no cap" is None, and 0 is refused as ambiguous.
    if cap is not None and cap < 1:
        raise ValueError(f"cap must be None (no cap) or >= 1, got {cap}")


def _check_square(similarity: np.ndarray, n: int) -> None:
    if np.shape(similarity) != (n, n):
        raise ValueError(f"similarity matrix has shape {np.shape(similarity)}, expected ({n}, {n})")
