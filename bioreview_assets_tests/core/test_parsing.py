from __future__ import annotations

import json

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from bioreview_assets.core.generated_concern import PARSE_METHODS, GeneratedConcern, ParseResult
from bioreview_assets.core.parsing import parse_concerns, strip_reasoning
from bioreview_assets.core.prompts import target_text
from bioreview_assets.core.schema import SCORED_CATEGORIES, SEVERITIES, ScorableConcern

A = {"text": "The sample size (n=3) is too small.", "category": "statistical_methodology", "severity": "major"}
B = {"text": "Controls for off-target effects are missing.", "category": "missing_experiment", "severity": "minor"}
C = {"text": "Cite prior work on [Ca2+] imaging.", "category": "prior_art_novelty", "severity": "optional"}


def texts(result: ParseResult) -> list[str]:
    return [c.text for c in result.concerns]


# ---------------------------------------------------------------------------------------------
# Stages


def test_strict_array_of_dicts_keeps_labels():
    result = parse_concerns(json.dumps([A, B]))
    assert (result.method, result.ok) == ("strict", True)
    assert result.concerns[0] == GeneratedConcern.of(A["text"], "statistical_methodology", "major")
    assert result.concerns[1].severity == "minor" and result.concerns[1].severity_valid


def test_empty_array_is_strict_but_not_ok():
    result = parse_concerns("[]")
    assert (result.method, result.ok, result.detail, result.concerns) == ("strict", False, "empty array", ())


def test_container_object_is_accepted_as_strict():
    result = parse_concerns(json.dumps({"concerns": [A]}))
    assert result.method == "strict" and texts(result) == [A["text"]]


def test_fenced_block_after_preamble():
    raw = f"Here is my review.\n```json\n{json.dumps([A, B], indent=2)}\n```\nHope this helps."
    result = parse_concerns(raw)
    assert result.method == "fenced" and texts(result) == [A["text"], B["text"]]


def test_prose_brackets_before_the_array_are_skipped():
    raw = f"As noted in [1] and [Smith et al.], the issues are: {json.dumps([A, C])} [end]"
    result = parse_concerns(raw)
    assert result.method == "salvaged" and texts(result) == [A["text"], C["text"]]


def test_truncated_array_keeps_complete_items_only():
    full = json.dumps([A, B, C])
    raw = full[: full.index(C["text"]) + 10]
    result = parse_concerns(raw)
    assert result.method == "salvaged" and result.ok
    assert texts(result) == [A["text"], B["text"]]
    assert "incomplete" in result.detail


def test_trailing_comma_array_is_salvaged_whole():
    result = parse_concerns(json.dumps([A, B])[:-1] + ",]")
    assert result.method == "salvaged" and texts(result) == [A["text"], B["text"]]


def test_bare_objects_without_array():
    raw = json.dumps(A) + ",\n" + json.dumps(B) + "]"
    result = parse_concerns(raw)
    assert result.method == "bare_objects" and texts(result) == [A["text"], B["text"]]


def test_deepseek_r1_reasoning_then_bare_objects():
    """DeepSeek-R1's prompt opens <think>: the output is reasoning (with a decoy array), </think>, then bare objects."""
    raw = ('Okay, the reviewer would flag ["decoy concern in the reasoning"] first.\n</think>\n\n'
           + json.dumps(A) + ", " + json.dumps(C) + "]")
    result = parse_concerns(raw)
    assert result.method == "bare_objects" and texts(result) == [A["text"], C["text"]]
    assert result.detail.endswith("reasoning removed")


def test_string_items_and_concern_text_key():
    raw = json.dumps(["  Plain string concern.  ", {"concern_text": "Uses concern_text.", "category": "other"}])
    result = parse_concerns(raw)
    assert texts(result) == ["Plain string concern.", "Uses concern_text."]
    assert result.concerns[0].category is None and not result.concerns[0].category_valid
    assert result.concerns[1].category == "other" and result.concerns[1].category_valid


def test_empty_texts_and_non_concern_items_are_dropped_and_reported():
    raw = json.dumps([A, {"text": "   "}, "", 42, None, {"category": "other"}])
    result = parse_concerns(raw)
    assert texts(result) == [A["text"]]
    assert "5 items dropped" in result.detail


def test_only_unusable_items_is_not_ok():
    result = parse_concerns("[1, 2, 3]")
    assert (result.method, result.ok) == ("strict", False)


# ---------------------------------------------------------------------------------------------
# Labels


def test_null_labels_become_none_not_the_string_none():
    result = parse_concerns('[{"text": "Something is wrong here.", "category": null, "severity": null}]')
    concern = result.concerns[0]
    assert concern.category is None and concern.severity is None
    assert not concern.category_valid and not concern.severity_valid


def test_labels_are_normalised_and_unknown_ones_kept_but_invalid():
    raw = json.dumps(
        [
            {"text": "x1", "category": " Design_Flaw ", "severity": "MAJOR"},
            {"text": "x2", "category": "interpretion", "severity": "critical"},
            {"text": "x3", "category": "figure_issue", "severity": "minor"},
        ]
    )
    first, typo, figure = parse_concerns(raw).concerns
    assert (first.category, first.category_valid, first.severity, first.severity_valid) == (
        "design_flaw",
        True,
        "major",
        True,
    )
    assert (typo.category, typo.category_valid, typo.severity, typo.severity_valid) == (
        "interpretion",
        False,
        "critical",
        False,
    )
    # figure_issue exists in the data but a model must never produce it.
    assert figure.category == "figure_issue" and not figure.category_valid


def test_generated_concern_dict_round_trip_and_flag_check():
    concern = GeneratedConcern.of("Text.", "Other", "minor")
    assert GeneratedConcern.from_dict(concern.to_dict()) == concern
    with pytest.raises(ValueError, match="category_valid"):
        GeneratedConcern.from_dict({"text": "Text.", "category": "bogus", "category_valid": True})
    with pytest.raises(ValueError, match="disagrees"):
        GeneratedConcern("Text.", "other", None, False, False)


# ---------------------------------------------------------------------------------------------
# Reasoning blocks


def test_think_block_with_decoy_array_is_removed():
    raw = '<think>Maybe ["Decoy concern from reasoning"]? No.</think>\n' + json.dumps([A])
    result = parse_concerns(raw)
    assert result.method == "strict" and texts(result) == [A["text"]]
    assert "reasoning removed" in result.detail


def test_prompt_opened_think_block_is_removed():
    raw = 'I should list ["decoy one two"] things.\n</think>\n\n' + json.dumps([B])
    assert texts(parse_concerns(raw)) == [B["text"]]


def test_unclosed_think_block_leaves_nothing():
    result = parse_concerns("<think>First, the statistics " + json.dumps([A]))
    assert (result.method, result.ok) == ("empty", False)
    assert "reasoning" in result.detail


def test_strip_reasoning_reports_whether_it_changed_anything():
    assert strip_reasoning("[]") == ("[]", False)
    assert strip_reasoning("<THINK>x</THINK>[]") == ("[]", True)


# ---------------------------------------------------------------------------------------------
# Prose, loops, failures


def test_prose_list_keeps_long_items_and_drops_preambles():
    raw = (
        "Here are the main concerns about this manuscript:\n\n"
        "1. The sample size of twelve mice is too small for the claims.\n"
        "2. **Statistical methodology:** no correction for multiple comparisons\n"
        "   was applied across the twenty tests.\n"
        "3. Too short.\n"
        "- Sure, these are my thoughts on the whole paper overall.\n"
        "\nOverall this is an interesting study that could be improved substantially."
    )
    result = parse_concerns(raw)
    assert result.method == "prose"
    assert texts(result) == [
        "The sample size of twelve mice is too small for the claims.",
        "no correction for multiple comparisons was applied across the twenty tests.",
    ]
    assert result.concerns[1].category == "statistical_methodology"
    assert result.concerns[0].category is None


def test_unstructured_paragraph_is_unparsable_not_a_concern():
    result = parse_concerns("I am sorry, but I cannot review this manuscript without the full text available.")
    assert (result.method, result.ok, result.concerns) == ("unparsable", False, ())


def test_empty_output():
    assert parse_concerns("  \n ").method == "empty"


def test_repeated_line_loop_gives_no_concerns():
    first = "1. The authors should clarify the statistical tests used.\n"
    raw = first + "- The authors need to do more work here.\n" * 30
    result = parse_concerns(raw)
    assert (result.method, result.ok, result.concerns) == ("repetition_loop", False, ())


def test_long_ngram_loop_without_newlines_gives_no_concerns():
    raw = "1. The results are interesting but " + "the mechanism remains unclear and " * 60
    result = parse_concerns(raw)
    assert result.method == "repetition_loop"


def test_loop_inside_truncated_json_string_is_a_loop():
    raw = '[{"text": "The data ' + "and the data " * 200
    assert parse_concerns(raw).method == "repetition_loop"


def test_non_string_input_is_a_type_error():
    with pytest.raises(TypeError):
        parse_concerns(None)  # type: ignore[arg-type]


def test_parse_result_enforces_its_invariants():
    with pytest.raises(ValueError):
        ParseResult((), "magic", False, "")
    with pytest.raises(ValueError):
        ParseResult((), "strict", True, "")


# ---------------------------------------------------------------------------------------------
# the training target (core/prompts.target_text) parses back to the concerns it was made of


def test_training_target_is_unicode_and_round_trips():
    concerns = [
        GeneratedConcern.of("Größe der Kohorte — n=5 «klein».", "design_flaw", "major"),
        GeneratedConcern.of("No label.", None, None),
    ]
    encoded = target_text(concerns)
    assert encoded == (
        '[{"text": "Größe der Kohorte — n=5 «klein».", "category": "design_flaw", "severity": "major"}, '
        '{"text": "No label.", "category": null, "severity": null}]'
    )
    result = parse_concerns(encoded)
    assert result.method == "strict" and list(result.concerns) == concerns


def test_training_target_of_reference_concerns():
    gt = ScorableConcern(
        concern_id="c1", article_id="elife:1", source="elife", text="T.", category="other", severity="minor"
    )
    assert json.loads(target_text([gt])) == [{"text": "T.", "category": "other", "severity": "minor"}]


# ---------------------------------------------------------------------------------------------
# Properties

concern_texts = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=60
).filter(lambda t: t.strip() != "" and "think>" not in t.lower())
concern_items = st.lists(
    st.builds(
        lambda text, cat, sev: {"text": text, "category": cat, "severity": sev},
        concern_texts,
        st.none() | st.sampled_from(SCORED_CATEGORIES + ("figure_issue", "Weird Label")),
        st.none() | st.sampled_from(SEVERITIES),
    ),
    min_size=1,
    max_size=6,
)
prose = st.sampled_from(
    ["", "Here are the concerns:", "Sure! See [1] and (Fig. 2).", "Output:\n", "Some {braces} here."]
)


@settings(max_examples=150, deadline=None)
@given(
    items=concern_items,
    fence=st.sampled_from(["{}", "```json\n{}\n```", "```\n{}\n```"]),
    preamble=prose,
    trailer=prose,
    think=st.sampled_from(["", '<think>Try ["draft concern one two"] {"text": "draft"}</think>\n']),
    indent=st.sampled_from([None, 2]),
)
def test_valid_array_survives_any_wrapping(items, fence, preamble, trailer, think, indent):
    array = json.dumps(items, ensure_ascii=bool(indent), indent=indent)
    raw = think + preamble + "\n" + fence.replace("{}", array) + "\n" + trailer
    result = parse_concerns(raw)
    assert result.ok and result.method in ("strict", "fenced", "salvaged")
    assert texts(result) == [item["text"].strip() for item in items]
    assert [c.category for c in result.concerns] == [
        None if item["category"] is None else item["category"].lower() for item in items
    ]


@settings(max_examples=150, deadline=None)
@given(items=concern_items, cut=st.integers(min_value=1, max_value=400))
# Found by hypothesis: the "[" inside the cut-off item's text was decoded as an array of its own (giving ", ").
@example(items=[{"text": "[", "category": None, "severity": None}], cut=2)
def test_truncated_array_salvages_exactly_the_complete_items(items, cut):
    encoded = [json.dumps(item, ensure_ascii=False) for item in items]
    full = "[" + ", ".join(encoded) + "]"
    raw = full[: max(1, len(full) - cut)]
    # Items whose encoding lies fully inside the kept prefix are the complete ones.
    complete, end = 0, 1
    for piece in encoded:
        end += len(piece)
        if end > len(raw):
            break
        complete += 1
        end += 2
    result = parse_concerns(raw)
    assert texts(result) == [item["text"].strip() for item in items[:complete]]
    assert result.ok == (complete > 0)


@settings(max_examples=300, deadline=None)
@given(raw=st.text() | st.text(alphabet='[]{}",:0123456789abc \n`-*.<>/thinkTHINK'))
def test_garbage_never_raises(raw):
    result = parse_concerns(raw)
    assert result.method in PARSE_METHODS
    assert result.ok == bool(result.concerns)
    assert all(c.text == c.text.strip() and c.text for c in result.concerns)


@settings(max_examples=60, deadline=None)
@given(
    line=st.text(alphabet="abcdefghij klmnop", min_size=25, max_size=60).filter(lambda s: len(s.strip()) > 20),
    repeats=st.integers(min_value=10, max_value=40),
    marker=st.sampled_from(["", "- ", "1. "]),
)
def test_repetition_loops_never_become_concerns(line, repeats, marker):
    raw = "\n".join(marker + line for _ in range(repeats))
    result = parse_concerns(raw)
    assert (result.method, result.concerns) == ("repetition_loop", ())


def test_pathological_nesting_is_fast_and_unparsable():
    assert parse_concerns("[" * 50_000).method == "unparsable"
    assert parse_concerns('{"a":' * 5_000).method == "unparsable"
