"""The model's own tokenizer as the prompt builder needs it: a token counter, a chat renderer, an identity."""

from __future__ import annotations

import hashlib
import json
from typing import Callable

from bioreview_assets.config.model import ModelConfig


def token_counter(tokenizer) -> Callable[[str], int]:
    """Count tokens of a text with the model's tokenizer (no special tokens), as the budget is defined."""

    def count(text: str) -> int:
        return len(tokenizer.encode(text, add_special_tokens=False))

    return count


def chat_renderer(tokenizer, cfg: ModelConfig, add_generation_prompt: bool = False) -> Callable[[list[dict]], str]:
    """Render messages with the model's chat template through the one renderer (thinking as configured)."""
    from bioreview_assets.ml.generation.rendering import render_chat

    def render(messages: list[dict]) -> str:
        return render_chat(tokenizer, messages, cfg.prompt.enable_thinking, add_generation_prompt=add_generation_prompt)

    return render


def model_prompt(cfg: ModelConfig):
    """(tokenizer, prompt hash, prompt spec) for a model: the one prompt identity training and generation share."""
    from bioreview_assets.core.prompts import prompt_spec
    from bioreview_assets.ml.models import load_tokenizer
    from bioreview_assets.core.hashing import stable_hash

    tokenizer = load_tokenizer(cfg)
    spec = prompt_spec(cfg.prompt.version, cfg.prompt.token_budget, tokenizer_identity(tokenizer))
    spec["enable_thinking"] = cfg.prompt.enable_thinking
    return tokenizer, stable_hash(spec), spec


def tokenizer_identity(tokenizer) -> str:
    """Stable id of a tokenizer: class, vocab and chat template (so a changed template changes the prompt hash)."""
    vocab = tokenizer.get_vocab()
    digest = hashlib.sha256(json.dumps(sorted(vocab.items())).encode())
    digest.update((tokenizer.chat_template or "").encode())
    return f"{type(tokenizer).__name__}:{len(vocab)}:{digest.hexdigest()[:16]}"
