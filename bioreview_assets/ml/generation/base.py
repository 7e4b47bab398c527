"""Request/result types, the Backend protocol and make_backend (the contract the generations asset calls)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol, Sequence

if TYPE_CHECKING:  # settings pulls pydantic/yaml: keep this module importable on a bare GPU box (benchmark)
    from bioreview_assets.settings import GenerationConfig, ModelConfig


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


@dataclass(frozen=True)
class SamplingSpec:
    """Decoding parameters shared by all backends; temperature 0 means greedy."""

    max_new_tokens: int = 4096
    temperature: float = 0.0
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    seed: int = 0
    # Benchmarks only: generate exactly max_new_tokens whatever the model says (throughput runs on random weights).
    ignore_eos: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0

    @classmethod
    def from_config(cls, gen: "GenerationConfig") -> "SamplingSpec":
        return cls(
            max_new_tokens=gen.max_new_tokens,
            temperature=gen.temperature,
            top_p=gen.top_p,
            repetition_penalty=gen.repetition_penalty,
            seed=gen.seed,
        )

    def describe(self) -> dict[str, Any]:
        out = asdict(self)
        out["greedy"] = self.greedy
        if self.greedy:  # top_p/seed do not act on greedy decoding; say so rather than imply they do
            out["top_p"] = None
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SamplingSpec":
        keys = {"max_new_tokens", "temperature", "top_p", "repetition_penalty", "seed", "ignore_eos", "extra"}
        clean = {k: v for k, v in data.items() if k in keys}
        if clean.get("top_p") is None:
            clean["top_p"] = 1.0
        return cls(**clean)


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
            # A model trained in fp32 (training.bf16: false) is served in fp32; otherwise bf16 where it is native.
            dtype=None if cfg.training.bf16 else "float32",
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
