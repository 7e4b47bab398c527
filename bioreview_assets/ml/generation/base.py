"""Request/result types and the Backend protocol (the contract the backends implement; factory.py builds one)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any, Callable, Protocol, Sequence

# The decoding parameters every backend takes (defined in core: the generation config's defaults are its defaults).
from bioreview_assets.core.sampling import SamplingSpec

__all__ = ["Backend", "GenerationRequest", "GenerationResult", "OnResult", "SamplingSpec"]


@dataclass(frozen=True)
class GenerationRequest:
    """One article's chat messages (system + user), exactly as the prompt builder made them."""

    article_id: str
    messages: list[dict]

    def to_json(self) -> str:
        return json.dumps({"article_id": self.article_id, "messages": self.messages}, ensure_ascii=False)


@dataclass
class GenerationResult:
    """Raw model output for one article; `error` is set (and text empty) when generation failed."""

    article_id: str
    text: str
    prompt_tokens: int
    completion_tokens: int
    # Wall time attributed to this article. Batched backends divide a batch's wall time by its size,
    # so the sum over articles is the real elapsed generation time.
    seconds: float
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def failed(cls, article_id: str, error: str, prompt_tokens: int = 0) -> "GenerationResult":
        return cls(article_id, "", prompt_tokens, 0, 0.0, error)


OnResult = Callable[[GenerationResult], None]


class Backend(Protocol):
    """A generation backend: streams one result per request through `on_result`, in any order."""

    def generate(self, requests: Sequence[GenerationRequest], on_result: OnResult) -> None: ...

    def describe(self) -> dict[str, Any]: ...
