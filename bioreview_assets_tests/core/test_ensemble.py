from __future__ import annotations

import numpy as np
import pytest

from bioreview_assets.core.ensemble import EnsembleConcern, merge_members
from bioreview_assets.core.generated_concern import GeneratedConcern
from bioreview_assets.core.postprocess import select


def gc(text: str, category: str | None = None, severity: str | None = None) -> GeneratedConcern:
    return GeneratedConcern.of(text, category, severity)


def table_similarity(pairs: dict[tuple[str, str], float]):
    """Symmetric lookup-table similarity; identical texts are 1.0, unknown pairs 0.0."""
    table = {frozenset(pair): value for pair, value in pairs.items()}
    calls: list[tuple[list[str], list[str]]] = []

    def similarity(left: list[str], right: list[str]) -> np.ndarray:
        calls.append((left, right))
        return np.array([[1.0 if a == b else table.get(frozenset((a, b)), 0.0) for b in right] for a in left])

    similarity.calls = calls  # type: ignore[attr-defined]
    return similarity


def summary(merged: list[EnsembleConcern]) -> list[tuple[str, tuple[str, ...]]]:
    return [(c.text, c.members) for c in merged]


def test_chain_does_not_merge_transitively():
    # a~b and b~c but a!~c: c cannot join the {a, b} cluster under complete linkage.
    sim = table_similarity({("a", "b"): 0.9, ("b", "c"): 0.9, ("a", "c"): 0.2})
    merged = merge_members({"m1": [gc("a")], "m2": [gc("b")], "m3": [gc("c")]}, sim, 0.8, "union")
    assert summary(merged) == [("a", ("m1", "m2")), ("c", ("m3",))]


def test_complete_linkage_joins_when_similar_to_all_members():
    sim = table_similarity({("a", "b"): 0.9, ("b", "c"): 0.9, ("a", "c"): 0.85})
    merged = merge_members({"m1": [gc("a")], "m2": [gc("b")], "m3": [gc("c")]}, sim, 0.8, "union")
    assert summary(merged) == [("a", ("m1", "m2", "m3"))]


def test_matching_is_one_to_one():
    # Both of m2's concerns resemble a1; only the better one joins, the other opens its own cluster.
    sim = table_similarity({("a1", "b1"): 0.85, ("a1", "b2"): 0.95})
    merged = merge_members({"m1": [gc("a1")], "m2": [gc("b1"), gc("b2")]}, sim, 0.8, "union")
    assert summary(merged) == [("a1", ("m1", "m2")), ("b1", ("m2",))]


def test_assignment_maximises_matches_not_greedy_best_pair():
    # Greedy would pair b1-a1 (0.95) and leave a2 alone; the optimal 1:1 pairs b1-a2 and b2-a1.
    sim = table_similarity({("a1", "b1"): 0.95, ("a2", "b1"): 0.85, ("a1", "b2"): 0.9})
    merged = merge_members({"m1": [gc("a1"), gc("a2")], "m2": [gc("b1"), gc("b2")]}, sim, 0.8, "union")
    assert summary(merged) == [("a1", ("m1", "m2")), ("a2", ("m1", "m2"))]


def test_same_member_concerns_are_never_merged():
    sim = table_similarity({("a1", "a2"): 0.99})
    merged = merge_members({"m1": [gc("a1"), gc("a2")]}, sim, 0.5, "union")
    assert summary(merged) == [("a1", ("m1",)), ("a2", ("m1",))]
    assert sim.calls == []  # a single member needs no similarity at all


def test_representative_is_highest_priority_member():
    sim = table_similarity({("long detailed text from m2", "short m1"): 0.9})
    members = {
        "m1": [gc("short m1", "design_flaw", "minor")],
        "m2": [gc("long detailed text from m2", "interpretation", "major")],
    }
    (merged,) = merge_members(members, sim, 0.8, "union")
    assert (merged.text, merged.category, merged.severity, merged.representative_of) == (
        "short m1",
        "design_flaw",
        "minor",
        "m1",
    )
    # Reversing the priority order flips the representative.
    (flipped,) = merge_members(dict(reversed(members.items())), sim, 0.8, "union")
    assert (flipped.text, flipped.representative_of) == ("long detailed text from m2", "m2")
    assert flipped.members == ("m2", "m1")


def test_cluster_opened_by_later_member_is_represented_by_it():
    sim = table_similarity({("b", "c"): 0.9})
    merged = merge_members({"m1": [gc("a")], "m2": [gc("b")], "m3": [gc("c")]}, sim, 0.8, "union")
    assert [(c.text, c.members, c.representative_of) for c in merged] == [
        ("b", ("m2", "m3"), "m2"),
        ("a", ("m1",), "m1"),
    ]


VOTE_SIM = table_similarity(
    {("a", "b"): 0.9, ("a", "c"): 0.9, ("b", "c"): 0.9, ("x", "y"): 0.9}
)
VOTE_MEMBERS = {"m1": [gc("x"), gc("a"), gc("solo1")], "m2": [gc("b"), gc("y")], "m3": [gc("c"), gc("solo3")]}


def test_union_orders_by_votes_then_creation():
    merged = merge_members(VOTE_MEMBERS, VOTE_SIM, 0.8, "union")
    assert summary(merged) == [
        ("a", ("m1", "m2", "m3")),
        ("x", ("m1", "m2")),
        ("solo1", ("m1",)),
        ("solo3", ("m3",)),
    ]


@pytest.mark.parametrize(("min_votes", "expected"), [(1, ["a", "x", "solo1", "solo3"]), (2, ["a", "x"]), (3, ["a"])])
def test_vote_thresholds(min_votes, expected):
    merged = merge_members(VOTE_MEMBERS, VOTE_SIM, 0.8, "vote", min_votes=min_votes)
    assert [c.text for c in merged] == expected


def test_threshold_is_inclusive():
    sim = table_similarity({("a", "b"): 0.8})
    assert len(merge_members({"m1": [gc("a")], "m2": [gc("b")]}, sim, 0.8, "union")) == 1
    assert len(merge_members({"m1": [gc("a")], "m2": [gc("b")]}, sim, 0.81, "union")) == 2


def test_empty_members_are_fine():
    sim = table_similarity({})
    merged = merge_members({"m1": [], "m2": [gc("b")], "m3": []}, sim, 0.8, "union")
    assert summary(merged) == [("b", ("m2",))]


def test_caller_caps_with_the_single_model_selection():
    merged = merge_members(VOTE_MEMBERS, VOTE_SIM, 0.8, "union")
    assert [c.text for c in select(merged, 2, "first")] == ["a", "x"]


def test_argument_validation():
    sim = table_similarity({})
    with pytest.raises(ValueError, match="strategy"):
        merge_members({"m1": []}, sim, 0.8, "intersection")
    with pytest.raises(ValueError, match="min_votes"):
        merge_members({"m1": [], "m2": []}, sim, 0.8, "vote", min_votes=3)
    with pytest.raises(ValueError, match="member"):
        merge_members({}, sim, 0.8, "union")


def test_bad_similarity_shape_is_an_error():
    with pytest.raises(ValueError, match="shape"):
        merge_members({"m1": [gc("a")], "m2": [gc("b")]}, lambda left, right: np.zeros((2, 2)), 0.8, "union")


def test_representative_must_be_a_member():
    with pytest.raises(ValueError, match="representative"):
        EnsembleConcern("t", None, None, members=("m1",), representative_of="m2")
