"""Concern generation: request/result types and backends (transformers, vLLM, OpenAI-compatible).

The resumable runner over a backend is services/generation_runner.py; which weights to serve, services/serving.py.

Backends are imported lazily by make_backend: torch, vllm and HTTP code load only for the backend in use. With
generation.gpus > 1, sharding.py runs one worker process per GPU under the same runner and log.
"""

from bioreview_assets.ml.generation.base import Backend, GenerationRequest, GenerationResult, SamplingSpec
from bioreview_assets.ml.generation.factory import make_backend

__all__ = ["Backend", "GenerationRequest", "GenerationResult", "SamplingSpec", "make_backend"]
