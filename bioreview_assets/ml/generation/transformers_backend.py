"""Hugging Face transformers backend: batched, left-padded generate over prompts sorted by length."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from bioreview_assets.ml.generation.base import GenerationRequest, GenerationResult, OnResult, SamplingSpec
from bioreview_assets.ml.generation.rendering import encode_prompt, render_chat
from bioreview_assets.core.progress import ProgressReporter

log = logging.getLogger(__name__)

# GPU defaults, measured on one H100 (benchmarks/results/generation_throughput_h100.txt; Qwen3-8B shape, batch 64,
# 4,096 prompt + 1,000 new tokens, transformers 5.24): a static KV cache gives 1.22 s/article against 2.27 for the
# dynamic cache, which re-concatenates the whole cache at every step. Chunked prefill keeps a whole batch's prefill
# activations small next to that cache. Compilation stays off by default: on the H200 (batch 128) compiled decoding
# with decode_kernel.py's Triton attention takes 0.40 s/article after compilation (first batch 121 s with it, then
# 51 s a batch) against 0.72 eager, so it pays from the second batch of 128; but its greedy outputs are not the eager
# bf16 path's (fused kernels round differently), and the generations' cache keys do not name the decode path, so
# switching the default would change outputs under unchanged keys (benchmarks/results/gen_compiled_h200.txt).
# A model config asks for it with generation.decode: compiled (from_dirs' compiled_decode), which its generations'
# key names; benchmarks/greedy_agreement.py measures how its greedy outputs differ from the eager ones.
CUDA_GENERATE_DEFAULTS: dict[str, Any] = {
    "cache_implementation": "static",
    "prefill_chunk_size": 1024,
    "disable_compile": True,
}

# CPU defaults (benchmarks/results/demo_cpu_profile.txt, 2-core Xeon without avx512_bf16, the demo's batch of 30
# prompts of ~450 tokens): with the dynamic cache, torch.cat of every layer's K and V (a fresh 12-23 MB buffer per
# layer per step as the cache grows from 530 to 1,050 positions) took 47% of a decode step's CPU time; a static
# cache is written in place. Compilation stays off (from_dirs' compiled_decode refuses CPUs).
CPU_GENERATE_DEFAULTS: dict[str, Any] = {
    "cache_implementation": "static",
    "disable_compile": True,
}


@dataclass(frozen=True)
class Prompt:
    """One article's prompt as token ids (what a batch is made of, and what a shard worker receives)."""

    article_id: str
    ids: list[int]


def load_generation_tokenizer(model_dir: Path) -> Any:
    """The tokenizer every transformers generation uses (a shard planner and each shard load the same one)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token  # same rule as models.load_tokenizer
    return tokenizer


def prepare_prompts(tokenizer: Any, requests: Sequence[GenerationRequest], enable_thinking: bool,
                    on_result: OnResult) -> list[Prompt]:
    """Rendered, encoded prompts; an article whose messages do not render gets its failed result at once."""
    prompts: list[Prompt] = []
    for request in requests:
        try:
            text = render_chat(tokenizer, request.messages, enable_thinking)
            prompts.append(Prompt(request.article_id, encode_prompt(tokenizer, text)))
        except Exception as err:  # a malformed message list fails its own article, not the run
            on_result(GenerationResult.failed(request.article_id, f"prompt rendering failed: {err!r}"))
    return prompts


def plan_batches(prompts: Sequence[Prompt], batch_size: int) -> list[list[Prompt]]:
    """The batches one process runs: longest prompt first, cut every batch_size (sharding.py deals these out)."""
    # Longest first: neighbours have similar lengths (little padding) and an out-of-memory shows up at once.
    # sorted() is stable, so equal lengths keep request order and the plan is a function of the requests alone.
    ordered = sorted(prompts, key=lambda prompt: len(prompt.ids), reverse=True)
    return [list(ordered[start : start + batch_size]) for start in range(0, len(ordered), batch_size)]


class TransformersBackend:
    """Batched HF generate (fallback backend, CPU or GPU): greedy or seeded sampling, only new tokens decoded."""

    name = "transformers"

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        sampling: SamplingSpec,
        *,
        batch_size: int = 8,
        enable_thinking: bool = False,
        generate_kwargs: dict[str, Any] | None = None,
        provenance: dict[str, Any] | None = None,
        flash_decoding: bool | None = None,
    ):
        """flash_decoding: for compiled decode steps, decode_kernel's Triton kernel (True), packed SDPA (False), or
        the kernel where the model is on CUDA and Triton is importable (None); see use_packed_gqa_attention."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model.eval()
        self.tokenizer = tokenizer
        # Decoder-only batching needs left padding: every prompt then ends at the same position, where the
        # new tokens start.
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            raise ValueError("tokenizer has no pad token; set one (models.load_tokenizer uses eos) before batching")
        self.sampling = sampling
        self.batch_size = batch_size
        self.enable_thinking = enable_thinking
        # Extra generate() options (e.g. cache_implementation="static", prefill_chunk_size) for GPU throughput.
        self.generate_kwargs = dict(generate_kwargs or {})
        if self.may_compile_decode(self.generate_kwargs):
            from bioreview_assets.ml.generation.decode_attention import use_packed_gqa_attention

            # Compiled decode steps keep reading each K/V head once, and with the kernel only its filled positions.
            use_packed_gqa_attention(self.model, flash_decoding)
        self.provenance = dict(provenance or {})
        self._progress: ProgressReporter | None = None  # set per generate() call

    @classmethod
    def from_dirs(
        cls,
        model_dir: Path,
        adapter_dir: Path | None,
        sampling: SamplingSpec,
        *,
        batch_size: int = 8,
        enable_thinking: bool = False,
        device: str | None = None,
        merge_adapter: bool = True,
        generate_kwargs: dict[str, Any] | None = None,
        dtype: str | None = None,
        compiled_decode: bool = False,
        flash_decoding: bool | None = None,
    ) -> "TransformersBackend":
        """Load a merged model folder, or a base folder plus a PEFT LoRA adapter folder (dtype None: see below).

        compiled_decode (generation.decode: compiled): let transformers torch.compile the decode steps over the static
        cache (CUDA only: refused elsewhere rather than silently run eager); flash_decoding picks their attention.
        """
        import torch
        from transformers import AutoModelForCausalLM

        from bioreview_assets.ml.runtime_env import cpu_has_native_bf16

        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if compiled_decode and not device.startswith("cuda"):
            raise ValueError(f"generation.decode: compiled compiles the decode steps over a static CUDA KV cache; "
                             f"this process generates on {device!r}: set generation.decode: eager for CPU runs")
        # bf16 on GPU and on CPUs with native bf16 matmuls (what the model was trained in there). Measured on the
        # 2-core avx512_bf16 CPU, SmolLM2-135M, 30 prompts of 440 tokens: prefill 8 s in bf16 against 69 s in fp32,
        # decode 80 ms/step against 1.8 s. fp32 only on CPUs that would emulate bf16.
        if dtype is not None:
            dtype = getattr(torch, dtype)
        else:
            dtype = torch.bfloat16 if device.startswith("cuda") or cpu_has_native_bf16() else torch.float32
        tokenizer = load_generation_tokenizer(model_dir)
        if device.startswith("cuda"):
            compile_choice = {"disable_compile": False} if compiled_decode else {}
            generate_kwargs = {**CUDA_GENERATE_DEFAULTS, **compile_choice, **(generate_kwargs or {})}
        else:
            generate_kwargs = {**CPU_GENERATE_DEFAULTS, **(generate_kwargs or {})}
        model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=dtype, device_map=device)
        if adapter_dir is not None:
            from bioreview_assets.ml.lora_targets import load_adapter_checked

            model = load_adapter_checked(model, adapter_dir)
            if merge_adapter:
                # Same function as base + adapter, without two extra small matmuls per projection per token.
                model = model.merge_and_unload()
        from bioreview_assets.ml.kernels import speed_kernels

        provenance = {
            "speed_kernels": speed_kernels(model.config, device),  # warns once when a fast kernel is missing
            "model_dir": str(model_dir),
            "adapter_dir": str(adapter_dir) if adapter_dir else None,
            "adapter_merged_in_memory": bool(adapter_dir and merge_adapter),
            "device": device,
            "dtype": str(dtype).removeprefix("torch."),
        }
        return cls(
            model,
            tokenizer,
            sampling,
            batch_size=batch_size,
            enable_thinking=enable_thinking,
            generate_kwargs=generate_kwargs,
            provenance=provenance,
            flash_decoding=flash_decoding,
        )

    @staticmethod
    def may_compile_decode(generate_kwargs: dict[str, Any]) -> bool:
        """Whether transformers may torch.compile the decode steps (on CUDA: a static cache, compilation not off)."""
        return generate_kwargs.get("cache_implementation") == "static" and not generate_kwargs.get("disable_compile")

    def numerics(self) -> dict[str, Any]:
        """What besides the weights, prompt and sampling decides the generated text: the device kind, the compute
        dtype (bf16 or fp32 by CPU capability) and the KV cache layout. It is part of each generation key, so a CPU
        run in fp32 never resumes a bf16 run's outputs, nor a static-cache run a dynamic-cache run's."""
        device = str(self.provenance.get("device") or next(self.model.parameters()).device)
        return {
            "device": device.split(":")[0],
            "dtype": str(self.provenance.get("dtype") or next(self.model.parameters()).dtype).removeprefix("torch."),
            "kv_cache": str(self.generate_kwargs.get("cache_implementation", "dynamic")),
        }

    def describe(self) -> dict[str, Any]:
        import torch
        import transformers

        return {
            "backend": self.name,
            **self.provenance,
            "numerics": self.numerics(),
            # Like batch size, the thread count reorders float reductions only (ml/cpu_calibration.py chose it).
            "torch_threads": torch.get_num_threads(),
            "batch_size": self.batch_size,
            "enable_thinking": self.enable_thinking,
            "sampling": self.sampling.describe(),
            "generate_kwargs": {k: str(v) for k, v in self.generate_kwargs.items()},
            "attention": getattr(self.model.config, "_attn_implementation", None),
            "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        }

    def generate(self, requests: Sequence[GenerationRequest], on_result: OnResult) -> None:
        prompts = prepare_prompts(self.tokenizer, requests, self.enable_thinking, on_result)
        self.run_batches(plan_batches(prompts, self.batch_size), on_result)

    def run_batches(self, batches: Sequence[Sequence[Prompt]], on_result: OnResult) -> None:
        """Generate these batches as given (generate() plans them; a shard worker gets its share of a plan)."""
        n_batches = len(batches)
        n_articles = sum(len(batch) for batch in batches)
        max_steps = self.sampling.max_new_tokens
        # Decode steps are the unit: a batch of long outputs takes minutes on a CPU with no article finished yet.
        self._progress = ProgressReporter(
            f"generation of {n_articles} articles", n_batches * max_steps, "decode steps (max)", eta_is_bound=True
        )
        self._batches_done, self._n_batches, self._articles_done = 0, n_batches, 0
        for batch in batches:
            self._run_batch(list(batch), on_result)
            self._batches_done += 1
            self._articles_done += len(batch)
        self._progress.update(n_batches * max_steps, f"{n_articles} articles done", force=True)

    def _run_batch(self, batch: list[Prompt], on_result: OnResult) -> None:
        started = time.perf_counter()
        try:
            new_tokens = self.generate_ids([prompt.ids for prompt in batch])
        except Exception as err:
            if len(batch) == 1:
                prompt = batch[0]
                on_result(GenerationResult.failed(prompt.article_id, f"{type(err).__name__}: {err}", len(prompt.ids)))
                return
            # Halving isolates the one article that breaks generation, and shrinks a batch that ran out of memory.
            log.warning("batch of %d failed (%s: %s); retrying as two halves", len(batch), type(err).__name__, err)
            self._release_memory()
            half = len(batch) // 2
            self._run_batch(batch[:half], on_result)
            self._run_batch(batch[half:], on_result)
            return
        seconds = (time.perf_counter() - started) / len(batch)
        for prompt, tokens in zip(batch, new_tokens):
            text = self.tokenizer.decode(tokens, skip_special_tokens=True)
            on_result(GenerationResult(prompt.article_id, text, len(prompt.ids), len(tokens), seconds))

    def generate_ids(self, prompts: list[list[int]]) -> list[list[int]]:
        """New token ids for each prompt (up to and including EOS; padding removed)."""
        import torch

        device = next(self.model.parameters()).device
        batch = self.tokenizer.pad({"input_ids": prompts}, padding=True, return_tensors="pt")
        spec = self.sampling
        kwargs: dict[str, Any] = {
            "max_new_tokens": spec.max_new_tokens,
            "repetition_penalty": spec.repetition_penalty,
            "pad_token_id": self.tokenizer.pad_token_id,
            "do_sample": not spec.greedy,
        }
        if not spec.greedy:
            # top_k=0 disables HF's default top-k 50 so sampling means the same as in vLLM and the API.
            kwargs.update(temperature=spec.temperature, top_p=spec.top_p, top_k=0)
            torch.manual_seed(spec.seed)  # per batch: the same pending set and batch size give the same samples
        if spec.ignore_eos:
            kwargs["min_new_tokens"] = spec.max_new_tokens
        if self._progress is not None:
            kwargs["stopping_criteria"] = [_ProgressCriterion(self)]
        kwargs.update(self.generate_kwargs)
        with torch.inference_mode():
            output = self.model.generate(
                input_ids=batch["input_ids"].to(device),
                attention_mask=batch["attention_mask"].to(device),
                **kwargs,
            )
        new = output[:, batch["input_ids"].shape[1] :].tolist()
        return [self._strip(tokens) for tokens in new]

    def _strip(self, tokens: list[int]) -> list[int]:
        """Cut after the first end-of-sequence token: what follows is padding for the rest of the batch."""
        if self.sampling.ignore_eos:
            return tokens
        stops = self._eos_ids()
        for index, token in enumerate(tokens):
            if token in stops:
                return tokens[: index + 1]
        return tokens

    def _eos_ids(self) -> set[int]:
        eos = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if self.tokenizer.eos_token_id is not None:
            ids.add(self.tokenizer.eos_token_id)
        return ids

    def _release_memory(self) -> None:
        import gc

        import torch

        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


class _ProgressCriterion:
    """A stopping criterion that never stops: generate() calls it once per decode step, so it reports progress."""

    def __init__(self, backend: TransformersBackend):
        self.backend = backend
        self.step = 0

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        self.step += 1
        b = self.backend
        b._progress.update(
            b._batches_done * b.sampling.max_new_tokens + self.step,
            f"batch {b._batches_done + 1}/{b._n_batches} of {input_ids.shape[0]}, {b._articles_done} articles done",
        )
        return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
