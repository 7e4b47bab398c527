from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bioreview_assets.core.generated_concern import GeneratedConcern
from bioreview_assets.core.postprocess import (
    PostprocessPolicy,
    apply_policy,
    exact_dedup,
    normalise_text,
    select,
    semantic_dedup,
)


def gc(text: str, category: str | None = None, severity: str | None = None) -> GeneratedConcern:
    return GeneratedConcern.of(text, category, severity)


def table_similarity(pairs: dict[frozenset[str], float]):
    """Similarity function from a lookup table; identical texts are 1.0, unknown pairs 0.0."""

    def similarity(left: list[str], right: list[str]) -> np.ndarray:
        return np.array([[1.0 if a == b else pairs.get(frozenset((a, b)), 0.0) for b in right] for a in left])

    return similarity


def test_normalise_text():
    assert normalise_text("  The  Sample\tSIZE\n is small ") == "the sample size is small"


def test_exact_dedup_keeps_first_and_ignores_labels():
    concerns = [gc("Sample size is small.", "design_flaw"), gc("sample  size is SMALL.", "other"), gc("Other.")]
    kept = exact_dedup(concerns)
    assert kept == [concerns[0], concerns[2]]


def test_semantic_dedup_does_not_chain():
    concerns = [gc("a"), gc("b"), gc("c")]
    sim = np.array([[1.0, 0.9, 0.1], [0.9, 1.0, 0.9], [0.1, 0.9, 1.0]])
    # b is dropped as a duplicate of a; c resembles only the dropped b, so it stays.
    assert [c.text for c in semantic_dedup(concerns, sim, 0.8)] == ["a", "c"]


def test_semantic_dedup_threshold_is_inclusive():
    concerns = [gc("a"), gc("b")]
    sim = np.array([[1.0, 0.8], [0.8, 1.0]])
    assert [c.text for c in semantic_dedup(concerns, sim, 0.8)] == ["a"]
    assert [c.text for c in semantic_dedup(concerns, sim, 0.81)] == ["a", "b"]


def test_semantic_dedup_rejects_wrong_shape():
    with pytest.raises(ValueError, match="shape"):
        semantic_dedup([gc("a"), gc("b")], np.eye(3), 0.5)


SEVERITY_MIX = [
    gc("c0", "design_flaw", "minor"),
    gc("c1", "design_flaw", None),
    gc("c2", "interpretation", "major"),
    gc("c3", "design_flaw", "optional"),
    gc("c4", "writing_clarity", "major"),
    gc("c5", "interpretation", "minor"),
]


def test_select_first_n():
    assert [c.text for c in select(SEVERITY_MIX, 3, "first")] == ["c0", "c1", "c2"]


def test_select_severity_first_keeps_original_order():
    # majors c2, c4 then the first minor c0; output back in generation order.
    assert [c.text for c in select(SEVERITY_MIX, 3, "severity_first")] == ["c0", "c2", "c4"]
    # unknown severity (None) ranks after optional.
    assert [c.text for c in select(SEVERITY_MIX, 5, "severity_first")] == ["c0", "c2", "c3", "c4", "c5"]


def test_select_category_diverse_round_robin():
    # round 1 visits design_flaw (c0), interpretation (c2), writing_clarity (c4).
    assert [c.text for c in select(SEVERITY_MIX, 3, "category_diverse")] == ["c0", "c2", "c4"]
    # round 2 takes the next of design_flaw (c1) then interpretation (c5).
    assert [c.text for c in select(SEVERITY_MIX, 5, "category_diverse")] == ["c0", "c1", "c2", "c4", "c5"]


def test_select_without_cap_or_under_cap_keeps_everything():
    assert select(SEVERITY_MIX, None, "severity_first") == SEVERITY_MIX
    assert select(SEVERITY_MIX, 10, "category_diverse") == SEVERITY_MIX


def test_select_rejects_bad_arguments():
    with pytest.raises(ValueError, match="selection"):
        select(SEVERITY_MIX, 2, "random")
    with pytest.raises(ValueError, match="cap"):
        select(SEVERITY_MIX, 0, "first")


def test_policy_validation():
    with pytest.raises(ValueError, match="selection"):
        PostprocessPolicy("bad", selection="mmr")
    with pytest.raises(ValueError, match="cap"):
        PostprocessPolicy("bad", cap=0)
    with pytest.raises(ValueError, match="threshold"):
        PostprocessPolicy("bad", semantic_dedup_threshold=1.5)


def test_apply_policy_counts_every_step():
    concerns = [gc("alpha one"), gc("Alpha  one"), gc("beta"), gc("beta prime"), gc("gamma"), gc("delta")]
    sim = table_similarity({frozenset(("beta", "beta prime")): 0.95})
    policy = PostprocessPolicy("full", semantic_dedup_threshold=0.9, cap=2)
    kept, removed = apply_policy(concerns, policy, sim)
    assert [c.text for c in kept] == ["alpha one", "beta"]
    assert removed == {"exact_dedup": 1, "semantic_dedup": 1, "cap": 2}


def test_apply_policy_reference_recipe_has_no_semantic_step():
    concerns = [gc(f"concern {i % 25}") for i in range(30)]
    kept, removed = apply_policy(concerns, PostprocessPolicy("dedup_cap20", cap=20))
    assert len(kept) == 20 and kept[0].text == "concern 0" and kept[-1].text == "concern 19"
    assert removed == {"exact_dedup": 5, "semantic_dedup": 0, "cap": 5}


def test_apply_policy_without_exact_dedup_keeps_duplicates():
    concerns = [gc("same"), gc("same")]
    kept, removed = apply_policy(concerns, PostprocessPolicy("raw", exact_dedup=False))
    assert len(kept) == 2 and removed["exact_dedup"] == 0


def test_apply_policy_requires_similarity_fn_for_semantic_dedup():
    with pytest.raises(ValueError, match="similarity_fn"):
        apply_policy([], PostprocessPolicy("sem", semantic_dedup_threshold=0.9))


def test_apply_policy_rejects_bad_similarity_shape():
    policy = PostprocessPolicy("sem", semantic_dedup_threshold=0.9)
    with pytest.raises(ValueError, match="shape"):
        apply_policy([gc("a"), gc("b")], policy, lambda left, right: np.eye(3))


@settings(max_examples=100, deadline=None)
@given(
    labels=st.lists(
        st.tuples(
            st.sampled_from(["design_flaw", "interpretation", "other", None, "weird"]),
            st.sampled_from(["major", "minor", "optional", None]),
        ),
        max_size=15,
    ),
    cap=st.none() | st.integers(min_value=1, max_value=10),
    selection=st.sampled_from(["first", "severity_first", "category_diverse"]),
)
def test_every_selection_keeps_a_subsequence_of_cap_size(labels, cap, selection):
    concerns = [gc(f"concern {i}", cat, sev) for i, (cat, sev) in enumerate(labels)]
    kept = select(concerns, cap, selection)
    positions = [concerns.index(c) for c in kept]
    assert positions == sorted(set(positions))
    assert len(kept) == (len(concerns) if cap is None else min(cap, len(concerns)))
