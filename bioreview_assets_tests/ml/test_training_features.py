"""Completion-only labels: exact masks, over-length drops, fixed val subset (no training here, fast)."""

from __future__ import annotations

import dataclasses
import json
import pathlib

import pytest

from bioreview_assets_tests.ml.test_training import (  # noqa: F401  (fixtures)
    chat_row,
    tiny_cache,
    tiny_cfg,
    tiny_env,
)


@pytest.fixture(scope="module")
def tokenizer(tiny_env):  # noqa: F811
    from bioreview_assets.ml.models import load_tokenizer

    return load_tokenizer(tiny_cfg())


def test_supervised_tokens_are_exactly_target_plus_end_token(tokenizer):
    from bioreview_assets.ml.training.features import (
        IGNORE_INDEX,
        build_features,
        check_mask,
        supervised_text,
    )

    row = chat_row("a1", concerns=3)
    target = row["messages"][-1]["content"]
    features = build_features(tokenizer, row["messages"], max_length=4096)

    assert supervised_text(tokenizer, features) == target + "<|im_end|>"
    check_mask(tokenizer, features, target)
    assert features.labels[: features.prompt_tokens] == [IGNORE_INDEX] * features.prompt_tokens
    assert features.labels[-1] == tokenizer.convert_tokens_to_ids("<|im_end|>")
    # the prompt part is exactly what inference sends (rendered with the generation prompt)
    prompt = tokenizer.apply_chat_template(row["messages"][:-1], tokenize=False, add_generation_prompt=True)
    assert tokenizer.decode(features.input_ids[: features.prompt_tokens]) == prompt


def test_check_mask_reports_a_shifted_mask(tokenizer):
    from bioreview_assets.ml.training.features import (
        MaskError,
        build_features,
        check_mask,
    )

    row = chat_row("a2")
    features = build_features(tokenizer, row["messages"], max_length=4096)
    # one prompt token too many supervised: the classic off-by-one of marker-based collators
    start = features.prompt_tokens - 1
    shifted = dataclasses.replace(
        features, labels=features.labels[:start] + features.input_ids[start:], prompt_tokens=start
    )
    with pytest.raises(MaskError, match="expected"):
        check_mask(tokenizer, shifted, row["messages"][-1]["content"])


def test_qwen3_template_keeps_the_empty_think_block_in_the_prompt(tokenizer):
    import trl

    from bioreview_assets.ml.training.features import build_features, check_mask

    qwen3 = pathlib.Path(trl.__file__).parent / "chat_templates" / "qwen3.jinja"
    tok = tokenizer.__class__.from_pretrained(tokenizer.name_or_path)
    tok.chat_template = qwen3.read_text()
    row = chat_row("a3")
    features = build_features(tok, row["messages"], max_length=4096)

    check_mask(tok, features, row["messages"][-1]["content"])
    prompt = tok.decode(features.input_ids[: features.prompt_tokens])
    assert prompt.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")  # enable_thinking=False, as at inference


def test_rows_whose_answer_would_be_cut_are_dropped_and_counted(tokenizer):
    from bioreview_assets.ml.training.features import build_features, featurize_rows

    short = [chat_row(f"s{i}") for i in range(4)]
    long = [chat_row(f"l{i}", paper_words=600) for i in range(3)]
    fits = build_features(tokenizer, short[0]["messages"], max_length=10_000)
    max_length = len(fits.input_ids) + 5

    features, stats = featurize_rows(tokenizer, short + long, max_length)

    assert (stats.kept, stats.dropped_over_length) == (4, 3)
    assert sorted(stats.dropped_ids) == ["l0", "l1", "l2"]
    assert all(len(f.input_ids) <= max_length for f in features)
    assert 0.0 < stats.masked_fraction < 1.0
    # the answer alone decides: a row one token over the limit is dropped, never trained with a cut answer
    assert build_features(tokenizer, short[0]["messages"], max_length=len(fits.input_ids) - 1) is None


def test_fixed_val_subset_ignores_input_order():
    from bioreview_assets.ml.training.features import fixed_subset

    rows = [{"article_id": f"v{i}"} for i in range(20)]
    first = [r["article_id"] for r in fixed_subset(rows, 5)]
    again = [r["article_id"] for r in fixed_subset(list(reversed(rows)), 5)]
    assert first == again and len(set(first)) == 5


def test_template_without_end_token_is_refused(tokenizer):
    from bioreview_assets.ml.training.features import build_features

    tok = tokenizer.__class__.from_pretrained(tokenizer.name_or_path)
    tok.chat_template = (
        "{% for m in messages %}{{ m['role'] + ': ' + m['content'] + '\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ 'assistant: ' }}{% endif %}"
    )
    with pytest.raises(ValueError, match="end-of-turn"):
        build_features(tok, chat_row("a4")["messages"], max_length=4096)


def test_target_json_round_trips(tokenizer):
    from bioreview_assets.ml.training.features import build_features, supervised_text

    row = chat_row("a5", concerns=2)
    features = build_features(tokenizer, row["messages"], max_length=4096)
    decoded = supervised_text(tokenizer, features).removesuffix("<|im_end|>")
    assert json.loads(decoded) == json.loads(row["messages"][-1]["content"])
