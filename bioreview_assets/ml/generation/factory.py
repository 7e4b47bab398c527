"""make_backend: the backend a model's generation config names, imported lazily (torch, vLLM or HTTP code loads only
for the backend in use). Kept apart from base.py, whose types the backends import, so no import goes in a circle."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from bioreview_assets.core.sampling import SamplingSpec
from bioreview_assets.ml.generation.base import Backend

if TYPE_CHECKING:  # settings pulls pydantic/yaml: keep this module importable on a bare GPU box (benchmark)
    from bioreview_assets.config.model import ModelConfig


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
        options = dict(
            batch_size=gen.batch_size,
            enable_thinking=cfg.prompt.enable_thinking,
            # A model trained in fp32 (training.bf16: false) is served in fp32; otherwise bf16 where it is native.
            dtype=None if cfg.training.bf16 else "float32",
            compiled_decode=gen.decode == "compiled",
        )
        adapter = Path(adapter_dir) if adapter_dir else None
        if gen.gpus > 1:  # one worker process per GPU, each on its share of the batches (sharding.py)
            from bioreview_assets.ml.generation.sharding import ShardedTransformersBackend

            return ShardedTransformersBackend(Path(model_dir), adapter, sampling, gpus=gen.gpus, **options)
        from bioreview_assets.ml.generation.transformers_backend import TransformersBackend

        return TransformersBackend.from_dirs(Path(model_dir), adapter, sampling, **options)
    if gen.backend == "vllm":
        from bioreview_assets.ml.generation.vllm_backend import VLLMBackend

        return VLLMBackend(
            Path(model_dir),
            Path(adapter_dir) if adapter_dir else None,
            sampling,
            enable_thinking=cfg.prompt.enable_thinking,
            gpus=gen.gpus,
            parallelism=gen.parallelism,
        )
    raise ValueError(f"unknown generation backend {gen.backend!r}")
