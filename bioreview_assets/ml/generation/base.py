"""Request/result types, the Backend protocol and make_backend (the contract the generations asset calls)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol, Sequence

from bioreview_assets.core.sampling import SamplingSpec

if TYPE_CHECKING:  # settings pulls pydantic/yaml: keep this module importable on a bare GPU box (benchmark)
    from bioreview_assets.settings import ModelConfig


@dataclass(frozen=True)
class GenerationRequest:
    """One article's chat messages (system + user), exactly as the prompt builder made them."""

    article_id: str
    messages: list[dict]

    def to_json(self) -> str:
        return json.dumps({"article_id": self.article_id, "messages": self.messages}, ensure_ascii=False)

    @classmethod
    def from_json(cls, line: str) -> "GenerationRequest":
        data = json.loads(line)
        return cls(article_id=data["article_id"], messages=data["messages"])


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


def make_backend(cfg: "ModelConfig", model_dir: Path | None, adapter_dir: Path | None) -> Backend:
    """The backend named by cfg.generation.backend.

    model_dir is the merged model (adapter_dir None) or the base model (adapter_dir = PEFT LoRA adapter);
    the openai backend ignores both and talks to cfg.generation.api_base.
    """
    gen = cfg.generation
    sampling = SamplingSpec.from_config(gen)
    if gen.backend == "openai":
        from bioreview_assets.ml.generation.openai_backend import OpenAIBackend

        return OpenAIBackend.from_config(gen, sampling)
    if model_dir is None:
        raise ValueError(f"model {cfg.name!r}: backend {gen.backend!r} needs a model folder, got None")
    if gen.backend == "transformers":
        from bioreview_assets.ml.generation.transformers_backend import TransformersBackend

        return TransformersBackend.from_dirs(
            Path(model_dir),
            Path(adapter_dir) if adapter_dir else None,
            sampling,
            batch_size=gen.batch_size,
            enable_thinking=cfg.prompt.enable_thinking,
        )
    if gen.backend == "vllm":
        from bioreview_assets.ml.generation.vllm_backend import VLLMBackend

        return VLLMBackend(
            Path(model_dir),
            Path(adapter_dir) if adapter_dir else None,
            sampling,
            enable_thinking=cfg.prompt.enable_thinking,
        )
    raise ValueError(f"unknown generation backend {gen.backend!r}")
