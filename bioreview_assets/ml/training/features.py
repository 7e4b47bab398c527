"""Tokenised SFT examples with completion-only labels that cannot silently fail (W9).

The reference trusted a collator to find the response marker and fell back to full-sequence loss when it could
not. Here the labels are built from the chat template itself: the prompt is the conversation without the answer
rendered with the generation prompt, the supervised span is the answer plus the template's end-of-turn token, and
everything else is -100. `check_mask` decodes the supervised tokens and compares them with the target text.
"""

from __future__ import annotations

import difflib
import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

IGNORE_INDEX = -100


@dataclass(frozen=True)
class Features:
    """One training sequence: token ids and labels (-100 outside the assistant answer and its end token)."""

    input_ids: list[int]
    labels: list[int]
    prompt_tokens: int
    end_marker: str  # the end-of-turn text that closes the supervised span (e.g. "<|im_end|>")

    @property
    def supervised_tokens(self) -> int:
        return sum(label != IGNORE_INDEX for label in self.labels)

    def as_row(self) -> dict[str, list[int]]:
        return {"input_ids": self.input_ids, "labels": self.labels}


@dataclass
class FeatureStats:
    """What featurising a split did: kept rows, rows dropped over length, token counts."""

    kept: int = 0
    dropped_over_length: int = 0
    dropped_ids: list[str] = field(default_factory=list)
    total_tokens: int = 0
    supervised_tokens: int = 0

    @property
    def masked_fraction(self) -> float:
        """Fraction of training tokens that carry no loss (prompt tokens)."""
        return 1.0 - self.supervised_tokens / self.total_tokens if self.total_tokens else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "kept": self.kept,
            "dropped_over_length": self.dropped_over_length,
            "dropped_ids": self.dropped_ids[:50],
            "total_tokens": self.total_tokens,
            "supervised_tokens": self.supervised_tokens,
            "masked_token_fraction": round(self.masked_fraction, 6),
        }


class MaskError(AssertionError):
    """The supervised tokens of a row are not exactly the target answer plus the end token."""


def _render(tokenizer, messages: Sequence[dict], *, add_generation_prompt: bool, enable_thinking: bool) -> str:
    from bioreview_assets.ml.generation.rendering import render_chat  # the renderer inference uses

    return render_chat(tokenizer, list(messages), enable_thinking, add_generation_prompt=add_generation_prompt)


def _encode(tokenizer, text: str) -> list[int]:
    # The template already writes any BOS/special tokens: adding them again would double them.
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def _end_marker(tokenizer, tail: str) -> str:
    """The special token the template writes right after the answer (the token the model must learn to stop on)."""
    candidates = set(tokenizer.all_special_tokens) | set(tokenizer.get_added_vocab())
    matches = [token for token in candidates if token and tail.startswith(token)]
    if not matches:
        raise ValueError(
            f"the chat template writes {tail[:40]!r} after the answer, which does not start with a special "
            "end-of-turn token: the model could never learn to stop"
        )
    return max(matches, key=len)


def _split_completion(tokenizer, messages: Sequence[dict], enable_thinking: bool) -> tuple[str, str, str]:
    """(prompt text, answer text, end marker) as the template renders them; raises when they do not line up.

    The prompt is what inference sends. Usually it is a prefix of the rendered conversation; some templates add a
    prefill to the generation prompt that the rendered answer turn lacks (DeepSeek-R1 opens `<think>`), and then
    the answer is trained right after that prefill, exactly where inference asks the model to continue.
    """
    if not messages or messages[-1]["role"] != "assistant":
        raise ValueError("the last message must be the assistant answer")
    answer = messages[-1]["content"]
    prompt_text = _render(tokenizer, messages[:-1], add_generation_prompt=True, enable_thinking=enable_thinking)
    full_text = _render(tokenizer, messages, add_generation_prompt=False, enable_thinking=enable_thinking)
    if full_text.startswith(prompt_text):
        completion = full_text[len(prompt_text):]
        if not completion.startswith(answer):
            # e.g. a template that inserts a reasoning block the generation prompt did not contain
            raise ValueError(f"the template writes {completion[:60]!r} between the generation prompt and the answer")
        return prompt_text, answer, _end_marker(tokenizer, completion[len(answer):])
    # The generation prompt carries a prefill the answer turn lacks: the answer must start where the two renders
    # part (everything before it is the shared conversation head).
    shared = len(os.path.commonprefix([prompt_text, full_text]))
    start = full_text.rfind(answer, 0, shared + len(answer)) if answer else -1
    if start < 0 or start > shared:
        raise ValueError(
            f"the chat template renders the prompt differently with and without the answer (prompt continues "
            f"{prompt_text[shared:shared + 40]!r}, the answer turn {full_text[shared:shared + 40]!r})"
        )
    return prompt_text, answer, _end_marker(tokenizer, full_text[start + len(answer):])


def build_features(
    tokenizer, messages: Sequence[dict], max_length: int, *, enable_thinking: bool = False
) -> Features | None:
    """Token ids + completion-only labels for one chat row; None when the answer would be cut by max_length."""
    prompt_text, answer, end_marker = _split_completion(tokenizer, messages, enable_thinking)
    # Prompt and answer are tokenised apart: the prompt ids are then exactly what inference sends (a BPE merge
    # across the boundary, e.g. "\n\n" + "[", cannot change them), and the answer ids are what the model must emit.
    # The sequence stops after the end marker: what the template writes after it (a newline) carries no loss.
    prompt_ids = _encode(tokenizer, prompt_text)
    answer_ids = _encode(tokenizer, answer + end_marker)
    if len(prompt_ids) + len(answer_ids) > max_length:
        return None
    return Features(
        input_ids=prompt_ids + answer_ids,
        labels=[IGNORE_INDEX] * len(prompt_ids) + answer_ids,
        prompt_tokens=len(prompt_ids),
        end_marker=end_marker,
    )


def supervised_text(tokenizer, features: Features) -> str:
    """Decoded text of the tokens that carry loss."""
    ids = [label for label in features.labels if label != IGNORE_INDEX]
    return tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)


def check_mask(tokenizer, features: Features, target_text: str) -> None:
    """Assert that the supervised tokens decode to exactly target_text + the end token (MaskError with a diff)."""
    supervised = [i for i, label in enumerate(features.labels) if label != IGNORE_INDEX]
    if not supervised:
        raise MaskError("no supervised tokens")
    if supervised != list(range(supervised[0], supervised[-1] + 1)) or supervised[-1] != len(features.labels) - 1:
        raise MaskError("the supervised tokens are not one span at the end of the sequence")
    if [features.labels[i] for i in supervised] != [features.input_ids[i] for i in supervised]:
        raise MaskError("labels differ from the input ids on the supervised span")
    got = supervised_text(tokenizer, features)
    want = target_text + features.end_marker
    if got != want:
        diff = "\n".join(difflib.unified_diff([want], [got], "expected", "supervised", lineterm=""))
        raise MaskError(f"supervised tokens are not the target + end token:\n{diff}")


def featurize_rows(
    tokenizer, rows: Sequence[dict], max_length: int, *, check_sample: int = 8, enable_thinking: bool = False
) -> tuple[list[Features], FeatureStats]:
    """Features for corpus rows (dropping and counting over-length ones); the mask of a sample of rows is checked."""
    features: list[Features] = []
    targets: list[str] = []
    stats = FeatureStats()
    for row in rows:
        built = build_features(tokenizer, row["messages"], max_length, enable_thinking=enable_thinking)
        if built is None:
            stats.dropped_over_length += 1
            stats.dropped_ids.append(str(row.get("article_id", "?")))
            continue
        features.append(built)
        targets.append(row["messages"][-1]["content"])
        stats.kept += 1
        stats.total_tokens += len(built.input_ids)
        stats.supervised_tokens += built.supervised_tokens
    for index in _sample_indices(len(features), check_sample):
        check_mask(tokenizer, features[index], targets[index])
    return features, stats


def _sample_indices(n: int, k: int) -> list[int]:
    """Deterministic spread of k indices over n rows (first, last and evenly in between)."""
    if n <= k:
        return list(range(n))
    return sorted({round(i * (n - 1) / (k - 1)) for i in range(k)})


def fixed_subset(rows: Sequence[dict], n: int) -> list[dict]:
    """n rows chosen by a hash of article_id: the same subset whatever the input order (W18's fixed val subset)."""
    def key(row: dict) -> str:
        return hashlib.sha256(str(row.get("article_id")).encode()).hexdigest()

    return sorted(rows, key=key)[: max(n, 0)]
