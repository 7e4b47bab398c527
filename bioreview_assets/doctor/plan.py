"""Planned GPU memory of a model's training step and generation batch, from its architecture and config (pure).

Estimates, not measurements: `doctor` compares them with the free memory of the GPU a pod was given, so that a
16k-token run planned for an 80 GB card fails in seconds on a 40 GB one instead of after loading 16 GB of weights.
The terms and their calibration against measured peaks (benchmarks/results/graph_gpu_*.txt prints both):
* weights: quantised linears at their storage bytes per parameter; embeddings and LM head in bf16;
* training: each checkpointed layer keeps its input (seq x hidden x 2 B), selective checkpointing also keeps the
  attention output of that many layers; one layer is recomputed at a time (its MLP intermediates dominate); the LM
  head scores supervised positions only (trl's fused head); optimizer state of the LoRA weights is negligible;
* generation: bf16 weights plus the KV cache of the whole batch at prompt + new tokens, and one prefill chunk.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

GIB = 1024**3
# Bytes per parameter of a frozen linear stored in each quantisation mode (NF4: 4 bits + double-quantised scales).
STORAGE_BYTES = {"nf4": 0.53, "nf4-fp8": 0.53, "nf4-int8": 0.53, "fp8": 1.0, "none": 2.0}
# CUDA context, cuBLAS workspaces and allocator slack, measured as the gap of small runs (about 1 GiB on Hopper).
RUNTIME_OVERHEAD_GIB = 1.0
# The transformers backend's static KV cache held 15% more than its payload at batch 64 and 128 (H100, H200) (68.5 and
# 121.8 GiB measured for Qwen3-8B, 4,096-token prompts, 1,000 new tokens: generation_throughput_h100.txt and
# gen_compiled_h200.txt in benchmarks/results/).
KV_CACHE_OVERHEAD = 1.15


@dataclass(frozen=True)
class Architecture:
    """The numbers of a decoder's config.json that memory depends on."""

    hidden: int
    layers: int
    intermediate: int
    vocab: int
    heads: int
    kv_heads: int
    head_dim: int
    full_attention_layers: int  # hybrids (Qwen3.5): only these keep a KV cache that grows with the sequence
    tied_embeddings: bool

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "Architecture":
        """From a config.json dict (a vision-language checkpoint's text_config is used when present)."""
        text = config.get("text_config") or config
        heads = int(text["num_attention_heads"])
        hidden = int(text["hidden_size"])
        layers = int(text["num_hidden_layers"])
        layer_types = text.get("layer_types") or []
        full = sum(1 for t in layer_types if t == "full_attention") if layer_types else layers
        interval = text.get("full_attention_interval")
        if not layer_types and interval:  # Qwen3.5 configs may give the interval instead of the list
            full = layers // int(interval)
        return cls(hidden=hidden, layers=layers, intermediate=int(text["intermediate_size"]),
                   vocab=int(text["vocab_size"]), heads=heads,
                   kv_heads=int(text.get("num_key_value_heads") or heads),
                   head_dim=int(text.get("head_dim") or hidden // heads), full_attention_layers=full,
                   tied_embeddings=bool(config.get("tie_word_embeddings", text.get("tie_word_embeddings", False))))

    @property
    def linear_params(self) -> int:
        """Parameters of the decoder linears (attention projections and MLP), all layers."""
        attention = self.hidden * self.head_dim * (2 * self.heads + 2 * self.kv_heads)
        mlp = 3 * self.hidden * self.intermediate
        return self.layers * (attention + mlp)

    @property
    def embedding_params(self) -> int:
        return self.vocab * self.hidden * (1 if self.tied_embeddings else 2)


@dataclass(frozen=True)
class MemoryPlan:
    training_gib: float | None
    generation_gib: float | None
    notes: tuple[str, ...] = ()


def training_peak_gib(arch: Architecture, *, quantization: str, max_length: int, batch_size: int,
                      kept_layers: int, offload: bool, supervised_tokens: int = 4096) -> float:
    """Planned peak of one training step (GiB)."""
    tokens = max_length * batch_size
    weights = arch.linear_params * STORAGE_BYTES[quantization] + arch.embedding_params * 2
    if quantization in ("nf4-fp8", "fp8"):
        weights += 3 * arch.hidden * arch.intermediate * 1.0  # the e4m3 copy of the largest weight being multiplied
    if quantization == "nf4-int8":  # the torch rebuild: bf16 dequantised, fp32 while rounding, the int8 copy
        weights += 3 * arch.hidden * arch.intermediate * 7.0
    checkpointed = 0 if offload else arch.layers * tokens * arch.hidden * 2
    kept = 0 if offload else kept_layers * tokens * arch.heads * arch.head_dim * 2
    recompute = tokens * (3 * arch.intermediate + 4 * arch.hidden) * 2  # one layer's MLP and attention intermediates
    lm_head = min(supervised_tokens, tokens) * arch.vocab * 4 / 8  # fused head: chunks of fp32 logits
    return (weights + checkpointed + kept + recompute + lm_head) / GIB + RUNTIME_OVERHEAD_GIB


def generation_peak_gib(arch: Architecture, *, batch_size: int, prompt_tokens: int, new_tokens: int,
                        prefill_chunk: int = 4096) -> float:
    """Planned peak of the transformers backend at this batch (GiB): bf16 weights, KV cache, one prefill chunk."""
    weights = (arch.linear_params + arch.embedding_params) * 2
    kv = batch_size * (prompt_tokens + new_tokens) * arch.full_attention_layers * 2 * arch.kv_heads * arch.head_dim * 2
    kv *= KV_CACHE_OVERHEAD
    prefill = prefill_chunk * (arch.intermediate * 3 + arch.vocab) * 2
    return (weights + kv + prefill) / GIB + RUNTIME_OVERHEAD_GIB


def memory_plan(arch: Architecture | None, *, training: dict[str, Any] | None, generation: dict[str, Any] | None,
                prompt_tokens: int) -> MemoryPlan:
    """Both planned peaks for one model config (None where the model is not trained or not generated locally)."""
    if arch is None:
        return MemoryPlan(None, None, ("architecture unknown (no config.json here): memory not planned",))
    train_gib = gen_gib = None
    notes = []
    if training is not None:
        kept = training.get("selective_checkpointing_layers", 0)
        kept = arch.layers if kept == "all" else int(kept)
        train_gib = training_peak_gib(arch, quantization=training.get("quantization", "nf4"),
                                      max_length=int(training["max_length"]),
                                      batch_size=int(training.get("per_device_batch_size", 1)), kept_layers=kept,
                                      offload=bool(training.get("activation_offloading", False)))
    if generation is not None:
        if generation.get("backend") == "vllm":
            notes.append("vLLM plans its own KV cache (gpu_memory_utilization): generation memory not planned here")
        elif generation.get("backend") != "openai":
            new = generation.get("max_new_tokens")
            new = 2048 if new == "auto" else int(new)
            gen_gib = generation_peak_gib(arch, batch_size=int(generation.get("batch_size", 8)),
                                          prompt_tokens=prompt_tokens, new_tokens=new)
    return MemoryPlan(train_gib, gen_gib, tuple(notes))
