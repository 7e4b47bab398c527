"""Chat rendering shared by every local backend (stdlib only: the vLLM worker imports it from its own venv)."""

from __future__ import annotations

from typing import Any


def render_chat(tokenizer: Any, messages: list[dict], enable_thinking: bool) -> str:
    """Prompt text for one article: the model's chat template with the assistant turn opened."""
    # enable_thinking is passed even when True: templates that ignore it are unaffected, and Qwen3's template
    # prefills an empty <think></think> only when it is explicitly False (as in training, W5).
    return tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True, enable_thinking=enable_thinking
    )


def encode_prompt(tokenizer: Any, text: str) -> list[int]:
    """Token ids of a rendered prompt; the template already wrote any BOS, so add no special tokens."""
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])
