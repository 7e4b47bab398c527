"""THE chat renderer shared by corpus, training and every local backend (stdlib only: the vLLM worker imports it)."""

from __future__ import annotations

from typing import Any

_SYSTEM_ROLE_SUPPORT: dict[tuple[int, str], bool] = {}


def supports_system_role(tokenizer: Any) -> bool:
    """Whether the chat template accepts a system turn (Gemma-2's raises 'System role not supported')."""
    template = tokenizer.chat_template or ""
    key = (id(tokenizer), template if isinstance(template, str) else repr(template))
    if key not in _SYSTEM_ROLE_SUPPORT:
        probe = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]
        try:
            tokenizer.apply_chat_template(probe, tokenize=False, add_generation_prompt=True)
            _SYSTEM_ROLE_SUPPORT[key] = True
        except Exception as err:  # jinja2 TemplateError from raise_exception(); any other error is the template's
            if "system" not in str(err).lower():
                raise
            _SYSTEM_ROLE_SUPPORT[key] = False
    return _SYSTEM_ROLE_SUPPORT[key]


def merge_system_into_user(messages: list[dict]) -> list[dict]:
    """System text prepended to the first user turn with a blank line (the reference's rule for Gemma-2)."""
    if not messages or messages[0]["role"] != "system":
        return list(messages)
    system, rest = messages[0], list(messages[1:])
    for index, message in enumerate(rest):
        if message["role"] == "user":
            rest[index] = {**message, "content": f"{system['content']}\n\n{message['content']}"}
            return rest
    return [{"role": "user", "content": system["content"]}, *rest]


def render_chat(tokenizer: Any, messages: list[dict], enable_thinking: bool, *, add_generation_prompt: bool = True) -> str:
    """Prompt text for one article (assistant turn opened), or a whole training row with add_generation_prompt=False."""
    if messages and messages[0]["role"] == "system" and not supports_system_role(tokenizer):
        messages = merge_system_into_user(messages)
    # enable_thinking is passed even when True: templates that ignore it are unaffected, and Qwen3's template
    # prefills an empty <think></think> only when it is explicitly False (as in training, W5).
    return tokenizer.apply_chat_template(
        list(messages), tokenize=False, add_generation_prompt=add_generation_prompt, enable_thinking=enable_thinking
    )


def encode_prompt(tokenizer: Any, text: str) -> list[int]:
    """Token ids of a rendered prompt; the template already wrote any BOS, so add no special tokens."""
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])
