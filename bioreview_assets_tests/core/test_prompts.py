import json

from hypothesis import given, settings
from hypothesis import strategies as st

from bioreview_assets.core.prompts import (
    OMITTED_MARKER,
    TRUNCATION_MARKER,
    USER_INSTRUCTION,
    build_prompt,
    fit_sections,
    prompt_spec,
    section_rank,
    target_text,
)
from bioreview_assets.core.schema import Article, ScorableConcern
from bioreview_assets.sample.generator import generate_sample_splits
from bioreview_assets.core.hashing import stable_hash


def count_words(text: str) -> int:
    return len(text.split())


WORDS = st.integers(min_value=0, max_value=400).map(lambda n: " ".join(f"w{i}" for i in range(n)))


@settings(max_examples=150, deadline=None)
@given(
    methods=WORDS,
    results=WORDS,
    intro=WORDS,
    discussion=WORDS,
    other=WORDS,
    budget=st.integers(min_value=60, max_value=1500),
)
def test_budget_is_never_exceeded_and_methods_outlive_discussion(methods, results, intro, discussion, other, budget):
    sections = [("introduction", intro), ("methods", methods), ("results", results),
                ("discussion", discussion), ("data_availability", other)]
    sections = [(n, t) for n, t in sections if t]
    fitted = fit_sections(USER_INSTRUCTION, ["# Title", "## Abstract\nshort abstract"], sections, count_words, budget)
    assert fitted.tokens <= budget
    assert count_words(fitted.text) == fitted.tokens
    touched = set(fitted.cut) | set(fitted.omitted)
    # A section is only cut after every lower-priority section has been cut or omitted.
    for name in touched - {"header"}:
        for other_name, _ in sections:
            if section_rank(other_name) > section_rank(name):
                assert other_name in touched, (name, other_name, fitted.cut, fitted.omitted)
    if "header" in fitted.cut:
        return  # even the header did not fit: the whole text was hard-capped (markers may be cut too)
    if fitted.cut:
        assert TRUNCATION_MARKER.strip() in fitted.text
    for name in fitted.omitted:
        assert f"## {name}\n{OMITTED_MARKER}" in fitted.text


def test_sections_keep_document_order_and_real_names():
    sections = [("introduction", "a b c"), ("materials_and_methods", "d e"), ("Results", "f")]
    fitted = fit_sections("", ["# T"], sections, count_words, 1000)
    assert fitted.text.index("## introduction") < fitted.text.index("## materials_and_methods")
    assert "## Results" in fitted.text and not fitted.cut  # no str.title() mangling


def test_build_prompt_messages_and_budget_on_a_sample_article():
    row = generate_sample_splits(sizes={"val": 1})["val"][0]
    article = Article.model_validate(row)
    built = build_prompt(article, count_words, token_budget=80)
    assert [m["role"] for m in built.messages] == ["system", "user"]
    assert built.user_tokens <= 80 and built.truncated
    assert built.messages[1]["content"].startswith(USER_INSTRUCTION)


def test_prompt_hash_is_stable_and_sensitive():
    first = stable_hash(prompt_spec("v2", 15000, "tok:1"))
    assert first == stable_hash(prompt_spec("v2", 15000, "tok:1"))
    assert first != stable_hash(prompt_spec("v2", 14000, "tok:1"))
    assert first != stable_hash(prompt_spec("v2", 15000, "tok:2"))


def test_target_is_compact_json_in_reviewer_order():
    concerns = [
        ScorableConcern(concern_id=f"c{i}", article_id="a", source="plos", text=t, category="other", severity="minor")
        for i, t in enumerate(["first «é»", "second"])
    ]
    text = target_text(concerns)
    assert json.loads(text) == [
        {"text": "first «é»", "category": "other", "severity": "minor"},
        {"text": "second", "category": "other", "severity": "minor"},
    ]
    assert "«é»" in text  # not ASCII-escaped
