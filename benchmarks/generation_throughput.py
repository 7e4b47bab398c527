"""Generation throughput on one GPU: the reference inference path vs our batched transformers backend.

Model: the Qwen3-8B shape (hidden 4096, 36 layers, 32 heads, 8 KV heads, head_dim 128, intermediate 12288,
vocab 151936) with random weights; every article has a 4,096-token prompt and gets exactly 1,000 new tokens
(EOS suppressed), so both setups do the same work.

(a) reference (docs/reference.md: reference pipeline §3.4): one article at a time, NF4 4-bit base (double quant,
    bf16 compute) plus an unmerged LoRA r16 on all seven projections, HF generate with T=0.1, top_p=0.9,
    repetition penalty 1.05.
    It is slow, so only --reference-articles articles are timed (the printout says how many).
(b) ours: TransformersBackend.generate (the same class the generations asset uses), bf16 merged weights,
    batches of --batch-size, chunked prefill (so the prefill of a whole batch fits next to its cache), with a
    static KV cache (the backend's GPU default) or the dynamic one; `compiled` adds HF's auto torch.compile of the
    decode steps with our Triton decode attention, `compiled-sdpa` the same with packed SDPA.

Batch size from memory: KV cache per token = 2 (K,V) x 36 layers x 8 heads x 128 dims x 2 bytes = 144 KiB;
per article (4,096 + 1,000 tokens) = 0.70 GiB; weights 15.3 GiB; so 64 articles need 44.8 GiB of cache and
fit an 80 GB H100 with ~15 GiB left for prefill activations (peak measured: 68.5 GiB).

Measured on one H100 80GB (benchmarks/results/generation_throughput_h100.txt, torch 2.11+cu130):
    transformers 5.24 (the project's pin, carried as a wheel): ours static 1.22 s/article, ours dynamic
    2.27 s/article (64 articles each); reference 208.6 s/article (measured on 1 article).
    transformers 5.17 (the machine's own): ours static 4.55 (no pack_gqa there: K/V repeated to all 32 heads),
    ours dynamic 1.90 s/article; reference 122.2 s/article (measured on 2 articles).
    The compiled variant was not run there.
Measured on one H200 at batch 128 (benchmarks/results/gen_compiled_h200.txt, 128 articles): static eager
0.72 s/article with decode at 65.6 ms/step of wall time for 37.2 ms/step of GPU work (host-bound); `compiled`
(decode steps compiled, attention by decode_kernel.py's Triton flash-decoding kernel) 0.40 s/article after about
70 s of compilation (32.6 ms/step); `compiled-sdpa` (the same with packed SDPA over the whole cache) 0.60 s/article
(58.6 ms/step). Under compilation transformers skips pack_gqa, so the backend switches the model to one of
decode_attention.py's packed-GQA functions.
Each setup's note gives, per batch, decode ms/step (host clock) and the rest (prefill and the first step), and
the header says how many greedy outputs each setup shares with the eager static-cache one.

Run (H100, about 8 minutes; bitsandbytes and transformers 5.24 carried as wheels into /tmp/site):
    PYTHONPATH=/tmp/site python3 benchmarks/generation_throughput.py --articles 64 --batch-size 64 \
        --reference-articles 1 --variants static,dynamic --out benchmarks/results/generation_throughput_h100.txt
CPU smoke test of the same code on a tiny shape (seconds):
    python benchmarks/generation_throughput.py --tiny

vLLM on GPU (not measured here: the CUDA vLLM wheel, 336 MB, cannot be carried to the borrowed machine). In the
GPU image (vllm==0.33.0 in /opt/vllm, BIOREVIEW_VLLM_PYTHON=/opt/vllm/bin/python) the backend runs its worker
there with the same requests:
    from bioreview_assets.ml.generation.vllm_backend import VLLMBackend
    VLLMBackend(merged_dir_or_base, adapter_dir_or_None, SamplingSpec(max_new_tokens=1000, repetition_penalty=1.0, ignore_eos=True),
                engine_kwargs={"max_num_seqs": 64, "gpu_memory_utilization": 0.9}).generate(requests, on_result)
(the generations asset does this for a model whose config says `generation.backend: vllm`), or, for this workload,
    vllm bench throughput --model <qwen3-8b folder> --input-len 4096 --output-len 1000 --num-prompts 64 \
        --enable-prefix-caching [--enable-lora --lora-path <adapter folder>]

Qwen3.5-9B shape (--shape qwen3.5-9b: 32 layers, 24 Gated DeltaNet + 8 full attention, head_dim 256, vocab 248,320):
the Gated DeltaNet layers run flash-linear-attention's Triton kernels when `fla` (pip fla-core) is importable, else
transformers' PyTorch reference path (the reference's 281 s/article). transformers binds the kernel when its model
module is imported, so --compare-no-fla measures the same setups again in a child process where `fla` cannot be
imported (--no-fla), on the same saved random weights, and folds its rows into this report ("[no fla]").
Only the 8 full-attention layers have a KV cache (32 KiB/token); each linear-attention layer keeps a fixed state.
    # ours with fla (64 articles) and without (16 articles): about 5 minutes on an H200
    python3 benchmarks/generation_throughput.py --shape qwen3.5-9b --variants static,dynamic --reference-articles 0 \
        --compare-no-fla --no-fla-articles 16 --no-fla-variants static --out benchmarks/results/gen_qwen35_h200.txt
    # the reference path (batch 1, NF4 + unmerged LoRA r16 on the seven projections), with fla, then without
    python3 benchmarks/generation_throughput.py --shape qwen3.5-9b --variants "" --reference-articles 1 \
        --out benchmarks/results/gen_qwen35_ref_fla_h200.txt
    python3 benchmarks/generation_throughput.py --shape qwen3.5-9b --variants "" --reference-articles 1 --no-fla \
        --out benchmarks/results/gen_qwen35_ref_nofla_h200.txt
CPU smoke test: python benchmarks/generation_throughput.py --shape tiny-qwen3.5 --compare-no-fla

Several GPUs (--gpus N, N >= 2): after the one-process setups, (c) runs the same articles through the sharded path
the generations asset takes for `generation.gpus: N` (ShardedTransformersBackend: one worker process per GPU on the
saved weights, longest-first batches dealt round-robin), and reports articles/s over the N GPUs: for the whole call
(worker start and model load included) and for the generation phase alone (the slowest shard's generation time),
with the scaling efficiency against the one-process static run of the same articles when it ran.
    # 8 GPUs of one host, 512 articles: 64 per GPU at batch 64
    python3 benchmarks/generation_throughput.py --gpus 8 --articles 512 --batch-size 64 --reference-articles 0 \
        --variants static --out benchmarks/results/gen_sharded_8gpu.txt
CPU smoke test of the sharded path (2 CPU processes share the cores, so its "scaling" means nothing there):
    python benchmarks/generation_throughput.py --tiny --gpus 2
"""

from __future__ import annotations

import sys

if "--no-fla" in sys.argv:  # before transformers is imported: it picks the Gated DeltaNet kernel on import

    class _BlockFla:
        """Import finder that makes flash-linear-attention unimportable in this process."""

        def find_spec(self, name, path=None, target=None):
            if name == "fla" or name.startswith("fla."):
                raise ImportError(f"{name} blocked by --no-fla")
            return None

    sys.meta_path.insert(0, _BlockFla())

import argparse
import dataclasses
import contextlib
import gc
import json
import os
import platform
import random
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a bare checkout on the GPU box (no pip install -e there)
# Growing KV caches and chunked prefill fragment the default allocator; set before CUDA initialises.
os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")

import torch  # noqa: E402

from bioreview_assets.ml.generation.base import GenerationRequest, GenerationResult, SamplingSpec  # noqa: E402
from bioreview_assets.ml.generation.sharding import ShardedTransformersBackend, deal  # noqa: E402
from bioreview_assets.ml.generation.transformers_backend import (  # noqa: E402
    TransformersBackend,
    load_generation_tokenizer,
    plan_batches,
    prepare_prompts,
)

QWEN3_8B = dict(hidden_size=4096, num_hidden_layers=36, num_attention_heads=32, num_key_value_heads=8,
                head_dim=128, intermediate_size=12288, vocab_size=151936)
TINY = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, head_dim=32,
            intermediate_size=128, vocab_size=1000)
QWEN3_5_9B = dict(hidden_size=4096, num_hidden_layers=32, num_attention_heads=16, num_key_value_heads=4, head_dim=256,
                  intermediate_size=12288, vocab_size=248320, linear_conv_kernel_dim=4, linear_key_head_dim=128,
                  linear_value_head_dim=128, linear_num_key_heads=16, linear_num_value_heads=32)
TINY_QWEN3_5 = dict(hidden_size=64, num_hidden_layers=4, num_attention_heads=2, num_key_value_heads=1, head_dim=64,
                    intermediate_size=128, vocab_size=1000, linear_conv_kernel_dim=4, linear_key_head_dim=16,
                    linear_value_head_dim=8, linear_num_key_heads=2, linear_num_value_heads=32)  # bnb CPU: N % 32
# shape -> (config class, values); random weights are built from the config alone (no download).
SHAPES = {"qwen3-8b": ("Qwen3Config", QWEN3_8B), "tiny": ("Qwen3Config", TINY),
          "qwen3.5-9b": ("Qwen3_5TextConfig", QWEN3_5_9B), "tiny-qwen3.5": ("Qwen3_5TextConfig", TINY_QWEN3_5)}
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def make_config(shape_name: str, prompt_len: int, new_tokens: int):
    import transformers

    class_name, shape = SHAPES[shape_name]
    vocab = shape["vocab_size"]
    rope = {"rope_theta": 1e6} if class_name == "Qwen3Config" else {}  # Qwen3.5 keeps its own rope defaults
    return getattr(transformers, class_name)(
        **shape, max_position_embeddings=max(40960, prompt_len + new_tokens), **rope, rms_norm_eps=1e-6,
        tie_word_embeddings=False, eos_token_id=vocab - 2, pad_token_id=vocab - 1, bos_token_id=None)


def make_tokenizer(vocab: int):
    """Word-level tokenizer over the model's vocabulary: 'w17 w2031 ...' is exactly one token per word."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = {f"w{i}": i for i in range(vocab - 2)}
    words.update({"<eos>": vocab - 2, "<pad>": vocab - 1})
    raw = Tokenizer(models.WordLevel(words, unk_token="<pad>"))
    raw.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    # The prompt is the user content alone, so token counts are exact (no template tokens to account for).
    return PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="<eos>", pad_token="<pad>",
                                   chat_template="{% for m in messages %}{{ m['content'] }}{% endfor %}")


def make_requests(n: int, prompt_len: int, vocab: int, seed: int = 0) -> list[GenerationRequest]:
    rng = random.Random(seed)
    # Distinct random prompts: no shared prefix, so nothing is cached between articles.
    prefix = "bench" if seed == 0 else f"bench-s{seed}"  # ids stay unique when two seeds' articles are mixed
    return [GenerationRequest(f"{prefix}:{i}", [{"role": "user", "content": " ".join(
        f"w{rng.randrange(vocab - 2)}" for _ in range(prompt_len))}]) for i in range(n)]


def random_model(config, device: str, dtype):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # initialise directly in the target dtype (no fp32 copy of 8B parameters)
    try:
        with torch.device(device):
            model = AutoModelForCausalLM.from_config(config)
    finally:
        torch.set_default_dtype(previous)
    return model.eval()


def attention_layers(config) -> int:
    """Layers with a KV cache (hybrid models: the full-attention ones only)."""
    types = getattr(config, "layer_types", None)
    return sum(t == "full_attention" for t in types) if types else config.num_hidden_layers


def kv_bytes_per_token(config, bytes_per_value: int = 2) -> int:
    return 2 * attention_layers(config) * config.num_key_value_heads * config.head_dim * bytes_per_value


def linear_attention_kernels() -> str:
    """What runs the Gated DeltaNet layers in this process (after the model module was imported)."""
    if any(name == "fla.ops.gated_delta_rule" or name.startswith("fla.ops.gated_delta_rule.") for name in sys.modules):
        return "flash-linear-attention (fla) kernels"
    import importlib.util

    try:
        found = importlib.util.find_spec("fla") is not None
    except ImportError:
        found = False
    return "torch reference path" + ("" if not found else " (fla installed but not loaded)")


@dataclass
class Measurement:
    name: str
    articles: int
    seconds: float
    new_tokens: int
    peak_gib: float
    note: str = ""

    @property
    def per_article(self) -> float:
        return self.seconds / self.articles

    def line(self) -> str:
        return (f"{self.name:<52} {self.articles:>4} {self.per_article:>9.2f} {self.new_tokens / self.seconds:>9.1f} "
                f"{self.peak_gib:>7.1f}  {self.note}")


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def peak_gib() -> float:
    return torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else float("nan")


def reset_peak() -> None:
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


class StepClock:
    """A stopping criterion that never stops: it stamps each decode step on the host clock, per batch.

    On CUDA transformers 5.24 reads its stop flag on the host after every step (its one-step-late DeferredStopCheck
    is for mps only), so the host never runs more than a step ahead of the GPU and the spacing of these stamps over
    a whole batch is the decode time per step.
    """

    def __init__(self):
        self.batches: list[list[float]] = []
        self._length = 0  # sequence length at the last step

    def __call__(self, input_ids, scores, **kwargs):
        if not self.batches or input_ids.shape[1] <= self._length:  # shorter than the last step: a new batch
            self.batches.append([])
        self._length = input_ids.shape[1]
        self.batches[-1].append(time.perf_counter())
        return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)

    def decode_ms_per_step(self, batch: int, skip: int = 20) -> float:
        """Mean host time per decode step of one batch, leaving out its first steps (warm-up, graph capture)."""
        stamps = self.batches[batch][skip:] if len(self.batches[batch]) > 2 * skip else self.batches[batch]
        return (stamps[-1] - stamps[0]) / max(len(stamps) - 1, 1) * 1000


def run_ours(name, model, tokenizer, requests, *, new_tokens, batch_size, generate_kwargs, flash_decoding=None
             ) -> tuple[list[Measurement], dict[str, str]]:
    """Time TransformersBackend.generate; a second batch (if any) gives the steady state after compilation.

    Returns the measurements and each article's text (greedy outputs of two setups are compared on them).
    """
    spec = SamplingSpec(max_new_tokens=new_tokens, temperature=0.0, repetition_penalty=1.05, ignore_eos=True)
    clock = StepClock()
    backend = TransformersBackend(model, tokenizer, spec, batch_size=batch_size, flash_decoding=flash_decoding,
                                  generate_kwargs={**generate_kwargs, "stopping_criteria": [clock]})
    stamps: list[float] = []
    results: list[GenerationResult] = []

    def on_result(result: GenerationResult) -> None:
        results.append(result)
        stamps.append(time.perf_counter())

    reset_peak()
    sync()
    started = time.perf_counter()
    backend.generate(requests, on_result)
    sync()
    total = time.perf_counter() - started
    errors = [r.error for r in results if r.error]
    if errors:
        raise RuntimeError(f"{name}: {len(errors)} articles failed, e.g. {errors[0]}")
    counts = {r.completion_tokens for r in results}
    if counts != {new_tokens}:
        raise RuntimeError(f"{name}: expected exactly {new_tokens} new tokens per article, got {sorted(counts)}")
    # Where a batch's time goes: its decode steps at the clock's rate, and the rest (prefill, the first step).
    ends = [started] + [stamps[min(i + batch_size, len(stamps)) - 1] for i in range(0, len(stamps), batch_size)]
    timeline = []
    for index in range(min(len(clock.batches), len(ends) - 1)):
        per_step = clock.decode_ms_per_step(index)
        rest = (ends[index + 1] - ends[index]) - per_step * len(clock.batches[index]) / 1000
        timeline.append(f"batch {index + 1}: decode {per_step:.1f} ms/step, prefill and the rest {rest:.1f} s")
    out = [Measurement(name, len(requests), total, new_tokens * len(requests), peak_gib(),
                       f"batch {batch_size}, all batches; " + "; ".join(timeline))]
    if len(requests) > batch_size:  # results of batch k arrive together: the gap between batches is one batch
        first_batch_end = stamps[batch_size - 1]
        out.append(Measurement(name + " (steady)", len(requests) - batch_size, stamps[-1] - first_batch_end,
                               new_tokens * (len(requests) - batch_size), peak_gib(),
                               f"batch {batch_size}, batches after the first (compilation excluded)"))
        out[0].note += f"; first batch {first_batch_end - started:.1f} s incl. warm-up/compile"
    return out, {r.article_id: r.text for r in results}


def agreement(name: str, texts: dict[str, str], baseline_name: str, baseline: dict[str, str]) -> str:
    """How many articles got the same greedy text from two setups (same prompts, same weights)."""
    shared = sorted(set(texts) & set(baseline))
    same = sum(texts[a] == baseline[a] for a in shared)
    prefix = [len(os.path.commonprefix([texts[a], baseline[a]])) / max(len(baseline[a]), 1) for a in shared]
    mean_prefix = sum(prefix) / len(prefix) if prefix else float("nan")
    return (f"greedy outputs of {name} vs {baseline_name}: {same}/{len(shared)} articles identical; the common "
            f"leading text is {mean_prefix:.0%} of the output on average (random weights make near-ties common)")


def kernel_family(name: str) -> str:
    lowered = name.lower()
    for family, needles in (
        ("attention", ("flash", "fmha", "attention", "sdpa", "cudnn", "softmax", "decode_kernel")),
        ("matmul", ("gemm", "xmma", "cutlass", "nvjet", "sm90", "matmul", "splitk")),
        ("copy / cache update", ("copy", "index_put", "scatter", "cat", "memcpy", "memset")),
        ("elementwise / reduce", ("elementwise", "reduce", "at::native")),
    ):
        if any(needle in lowered for needle in needles):
            return family
    return "other"


def profile_decode(model, tokenizer, requests, *, batch_size: int, steps: int, prefill_chunk: int,
                   compiled: bool = False) -> list[str]:
    """Device time by kernel family of `steps` decode steps at `batch_size` (a prefill-only run is subtracted).

    compiled: the decode steps as transformers compiles them; an unprofiled run of the same length compiles them
    first, and the static cache keeps its largest size, so the profiled runs replay the same graphs.
    """
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    spec = SamplingSpec(max_new_tokens=1, temperature=0.0, repetition_penalty=1.05, ignore_eos=True)
    kwargs = {"prefill_chunk_size": prefill_chunk, "cache_implementation": "static", "disable_compile": not compiled}

    def backend_for(new_tokens: int) -> TransformersBackend:
        return TransformersBackend(model, tokenizer, dataclasses.replace(spec, max_new_tokens=new_tokens),
                                   batch_size=batch_size, generate_kwargs=kwargs)

    if compiled:
        backend_for(1 + steps).generate(requests[:batch_size], lambda result: None)

    def run(new_tokens: int) -> tuple[float, dict[str, float], dict[str, float]]:
        backend = backend_for(new_tokens)
        sync()
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            started = time.perf_counter()
            backend.generate(requests[:batch_size], lambda result: None)
            sync()
            wall = time.perf_counter() - started
        families: dict[str, float] = {}
        kernels: dict[str, float] = {}
        host: dict[str, float] = {}
        for event in prof.key_averages():
            if event.device_type != DeviceType.CUDA:
                host[event.key] = host.get(event.key, 0) + event.self_cpu_time_total
                continue
            us = getattr(event, "self_device_time_total", 0) or getattr(event, "self_cuda_time_total", 0)
            kernels[event.key] = kernels.get(event.key, 0) + us
            families[kernel_family(event.key)] = families.get(kernel_family(event.key), 0) + us
        return wall, families, kernels, host

    wall_1, families_1, kernels_1, host_1 = run(1)
    wall_n, families_n, kernels_n, host_n = run(1 + steps)
    per_step = (wall_n - wall_1) / steps * 1000
    lines = [f"decode profile{' (compiled)' if compiled else ''}, batch {batch_size}, {steps} steps "
             f"(prefill-only run subtracted): "
             f"{per_step:.1f} ms/step wall (under the profiler)"]
    device_total = sum(families_n.values()) - sum(families_1.values())
    lines.append(f"  device time {device_total / steps / 1000:.1f} ms/step; by kernel family:")
    for family in sorted(families_n, key=lambda f: -(families_n[f] - families_1.get(f, 0))):
        ms = (families_n[family] - families_1.get(family, 0)) / steps / 1000
        lines.append(f"    {family:<24} {ms:8.2f} ms/step")
    lines.append("  top kernels (ms/step):")
    deltas = {k: (v - kernels_1.get(k, 0)) / steps / 1000 for k, v in kernels_n.items()}
    for name, ms in sorted(deltas.items(), key=lambda kv: -kv[1])[:10]:
        lines.append(f"    {ms:8.2f}  {name[:110]}")
    # Where the host's time goes between steps (a decode loop that waits on the host shows it here, not above).
    host_deltas = {k: (v - host_1.get(k, 0)) / steps / 1000 for k, v in host_n.items()}
    lines.append(f"  host (CPU) self time {sum(host_deltas.values()):.1f} ms/step; top ops (ms/step):")
    for name, ms in sorted(host_deltas.items(), key=lambda kv: -kv[1])[:14]:
        lines.append(f"    {ms:8.2f}  {name[:110]}")
    return lines


def run_sharded(model_dir: Path, requests, *, gpus: int, new_tokens: int, batch_size: int, dtype: str,
                generate_kwargs: dict) -> tuple[list[Measurement], dict]:
    """(c): the generations asset's path for generation.gpus = N, on the saved weights; timed from the parent."""
    spec = SamplingSpec(max_new_tokens=new_tokens, temperature=0.0, repetition_penalty=1.05, ignore_eos=True)
    backend = ShardedTransformersBackend(model_dir, None, spec, gpus=gpus, batch_size=batch_size, dtype=dtype,
                                         generate_kwargs=generate_kwargs)
    results: list[GenerationResult] = []
    started = time.perf_counter()
    backend.generate(requests, results.append)
    wall = time.perf_counter() - started
    errors = [r.error for r in results if r.error]
    if errors:
        raise RuntimeError(f"sharded run: {len(errors)} articles failed, e.g. {errors[0]}")
    counts = {r.completion_tokens for r in results}
    if counts != {new_tokens}:
        raise RuntimeError(f"sharded run: expected exactly {new_tokens} new tokens per article, got {sorted(counts)}")
    # Each shard's generation time is the sum of its articles' shares of their batches' wall time (the backend divides
    # a batch's time by its size); the shards run at once, so the slowest shard is the generation phase.
    def unrenderable(result: GenerationResult) -> None:
        raise RuntimeError(f"prompt of {result.article_id} did not render: {result.error}")

    prompts = prepare_prompts(load_generation_tokenizer(model_dir), requests, False, unrenderable)
    shards = deal(plan_batches(prompts, batch_size), gpus)
    seconds = {r.article_id: r.seconds for r in results}
    per_shard = [sum(seconds[p.article_id] for batch in shard for p in batch) for shard in shards]
    generation = max(per_shard)
    made = new_tokens * len(requests)
    name = f"(c) sharded: {gpus} workers ({backend.describe().get('device', '?')}), static"  # fits the 52-char column
    out = [Measurement(name, len(requests), wall, made, float("nan"),
                       f"batch {batch_size}; whole call incl. worker start + model load"),
           Measurement(name + " (generation)", len(requests), generation, made, float("nan"),
                       "slowest shard's generation time; shards: " + ", ".join(f"{s:.1f}s" for s in per_shard))]
    facts = {"gpus": gpus, "wall_s": wall, "generation_s": generation, "articles": len(requests),
             "articles_per_s": len(requests) / wall, "generation_articles_per_s": len(requests) / generation,
             "shards": backend.describe()["parallelism"]["shards"]}
    return out, facts


def run_reference(model_dir: Path, tokenizer, requests, *, new_tokens: int, device: str) -> Measurement:
    """The reference's path: 4-bit NF4 base + unmerged LoRA r16, batch 1, HF generate, sampling T=0.1."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                               bnb_4bit_compute_dtype=torch.bfloat16)
    started = time.perf_counter()
    base = AutoModelForCausalLM.from_pretrained(str(model_dir), quantization_config=quant, dtype=torch.bfloat16,
                                                device_map=device)
    model = get_peft_model(base, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules=LORA_TARGETS,
                                            task_type="CAUSAL_LM")).eval()
    log(f"reference model loaded (4-bit + LoRA r16) in {time.perf_counter() - started:.1f} s")

    def one(request: GenerationRequest, max_new: int) -> int:
        ids = tokenizer(request.messages[0]["content"], return_tensors="pt", add_special_tokens=False).to(device)
        with torch.inference_mode():
            out = model.generate(**ids, max_new_tokens=max_new, min_new_tokens=max_new, do_sample=True,
                                 temperature=0.1, top_p=0.9, repetition_penalty=1.05,
                                 pad_token_id=tokenizer.pad_token_id)
        return out.shape[1] - ids["input_ids"].shape[1]

    one(requests[0], 8)  # kernels and bitsandbytes state warmed up, as after the reference's first article
    reset_peak()
    sync()
    started = time.perf_counter()
    made = sum(one(request, new_tokens) for request in requests)
    sync()
    seconds = time.perf_counter() - started
    if made != new_tokens * len(requests):
        raise RuntimeError(f"reference generated {made} tokens, expected {new_tokens * len(requests)}")
    return Measurement("(a) reference: NF4 + unmerged LoRA, batch 1", len(requests), seconds, made, peak_gib(),
                       f"measured on {len(requests)} articles only")


def sharded_summary(facts: dict, measurements: list[Measurement], device: str) -> str:
    """Articles/s over N GPUs, per GPU, and the scaling efficiency against the one-process static run."""
    n = facts["gpus"]
    line = (f"sharded over {n}: {facts['articles_per_s']:.3f} articles/s for the whole call, "
            f"{facts['generation_articles_per_s']:.3f} articles/s generating "
            f"({facts['generation_articles_per_s'] / n:.3f} per GPU)")
    single = [m for m in measurements if m.name.startswith("(b)") and "static" in m.name and "(steady)" not in m.name
              and m.articles == facts["articles"]]
    if device == "cpu":  # the workers share this machine's cores, each with a share of the threads
        return line + " [CPU: the code path only; workers share the cores, so no scaling figure]"
    if single:
        one = single[0].articles / single[0].seconds
        line += (f"; one process, same articles: {one:.3f} articles/s, so scaling efficiency "
                 f"{facts['generation_articles_per_s'] / (n * one):.0%} of {n}x")
    return line


def run_no_fla_child(args, folder: Path, measurements: list) -> list[str]:
    """The --no-fla setups in a fresh process on the saved weights; their rows join `measurements`."""
    import subprocess

    rows = folder / "no_fla_rows.jsonl"
    drop = {"--compare-no-fla", "--out", "--variants", "--articles", "--batch-size", "--reference-articles"}
    argv, skip = [], False
    for item in sys.argv[1:]:
        if skip:
            skip = False
            continue
        if item.split("=")[0] in drop:
            skip = "=" not in item and item != "--compare-no-fla"
            continue
        argv.append(item)
    variants = args.no_fla_variants if args.no_fla_articles > 0 else ""
    command = [sys.executable, str(Path(__file__).resolve()), *argv, "--no-fla", "--model-dir", str(folder),
               "--rows-out", str(rows), "--variants", variants, "--articles", str(max(args.no_fla_articles, 1)),
               "--batch-size", str(max(1, min(args.batch_size, args.no_fla_articles or 1))),
               "--reference-articles", str(args.reference_articles)]
    log("child without flash-linear-attention: " + " ".join(command[1:]))
    process = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = [line for line in process.stdout.splitlines() if "linear attention [no fla]" in line]
    for line in process.stdout.splitlines():
        print("  [no fla] " + line, flush=True)
    if rows.exists():
        for line in rows.read_text().splitlines():
            measurement = Measurement(**json.loads(line))
            if measurement.name.startswith("(b)"):
                measurement.name += " [no fla]"
            measurements.append(measurement)
    if process.returncode != 0:
        log(f"the no-fla child exited {process.returncode}")
    return [line.split("] ", 1)[-1] for line in lines[:1]]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny shape on CPU: a smoke test of this script")
    parser.add_argument("--shape", choices=sorted(SHAPES), default=None, help="qwen3-8b (default), qwen3.5-9b, tiny-*")
    parser.add_argument("--compare-no-fla", action="store_true",
                        help="also run --no-fla-variants (and the reference) in a child process without fla")
    parser.add_argument("--no-fla", action="store_true", help="flash-linear-attention cannot be imported here")
    parser.add_argument("--no-fla-articles", type=int, default=16)
    parser.add_argument("--no-fla-variants", default="static")
    parser.add_argument("--model-dir", type=Path, help=argparse.SUPPRESS)  # child: the parent's saved weights
    parser.add_argument("--rows-out", type=Path, help=argparse.SUPPRESS)  # child: measurements as JSON lines
    parser.add_argument("--gpus", type=int, default=1,
                        help=">= 2: also run (c), the sharded path over this many GPUs (CPU processes without CUDA)")
    parser.add_argument("--articles", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--prompt-tokens", type=int, default=4096)
    parser.add_argument("--new-tokens", type=int, default=1000)
    parser.add_argument("--prefill-chunk", type=int, default=1024)
    parser.add_argument("--reference-articles", type=int, default=2)
    parser.add_argument("--variants", default="static,dynamic", help="comma list of: static, dynamic, compiled, compiled-sdpa")
    parser.add_argument("--deadline", type=float, default=480.0, help="start no setup of ours after this many s")
    parser.add_argument("--out", type=Path, help="also write the printed report here")
    parser.add_argument("--profile-compiled", action="store_true",
                        help="with --profile-decode: profile the compiled decode steps (compiled first, unprofiled)")
    parser.add_argument("--profile-decode", type=int, default=0, metavar="STEPS",
                        help="profile STEPS decode steps of one batch (kernel families) before the setups")
    args = parser.parse_args()
    args.shape = args.shape or ("tiny" if args.tiny else "qwen3-8b")
    if args.shape.startswith("tiny") and not args.tiny:
        args.tiny = True
    if args.tiny:
        args.prompt_tokens, args.new_tokens, args.prefill_chunk = 64, 16, 32
        if not args.model_dir:  # a child keeps the counts its parent gave it
            args.articles, args.batch_size, args.reference_articles = 6, 4, min(args.reference_articles, 1)
            args.no_fla_articles = min(args.no_fla_articles, 4)
            if args.gpus > 1:  # two batches per worker, so each shard really batches
                args.articles, args.batch_size = 4 * args.gpus, 2
    shape = SHAPES[args.shape][1]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    config = make_config(args.shape, args.prompt_tokens, args.new_tokens)
    tokenizer = make_tokenizer(shape["vocab_size"])
    requests = make_requests(args.articles, args.prompt_tokens, shape["vocab_size"])
    assert len(tokenizer(requests[0].messages[0]["content"])["input_ids"]) == args.prompt_tokens

    from transformers.integrations import sdpa_attention

    gpu = torch.cuda.get_device_name() if device == "cuda" else platform.processor() or "cpu"
    kv_article = kv_bytes_per_token(config) * (args.prompt_tokens + args.new_tokens)
    header = [
        f"device: {gpu}; torch {torch.__version__}; transformers {__import__('transformers').__version__}",
        f"shape: {json.dumps(shape)}; prompt {args.prompt_tokens} tokens; exactly {args.new_tokens} new tokens",
        f"KV cache: {kv_bytes_per_token(config) / 1024:.0f} KiB/token ({attention_layers(config)} attention layers), "
        f"{kv_article / 2**30:.2f} GiB/article, {kv_article * args.batch_size / 2**30:.1f} GiB for batch "
        f"{args.batch_size}",
        # Without pack_gqa, masked (static-cache) decoding repeats K/V to all 32 heads before SDPA: 4x the bytes.
        f"transformers has sdpa pack_gqa: {hasattr(sdpa_attention, 'pack_gqa')}",
    ]
    for line in header:
        log(line)

    measurements: list[Measurement] = []
    started = time.perf_counter()

    def report() -> str:
        title = f"{'setup':<52} {'n':>4} {'s/article':>9} {'tok/s':>9} {'peak GiB':>7}  note"
        lines = header + ["", title] + [m.line() for m in measurements]
        ours = [m for m in measurements if m.name.startswith("(b)") and "[no fla]" not in m.name]
        refs = [m for m in measurements if m.name.startswith("(a)")]
        if ours:
            best = min(ours, key=lambda m: m.per_article)
            for ref in refs:
                lines.append(f"speed-up of the best (b) over {ref.name}: {ref.per_article / best.per_article:.1f}x "
                             f"({best.per_article:.2f} vs {ref.per_article:.2f} s/article; target <= 2 s/article)")
        text = "\n".join(lines)
        if args.out:  # rewritten after every setup: a run cut short still leaves its figures
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(text + "\n")
        return text

    def free() -> None:
        gc.collect()
        if device == "cuda":
            torch.cuda.empty_cache()

    name_dtype = str(dtype).removeprefix("torch.")
    variants = {
        "static": (f"(b) ours: {name_dtype}, static cache, eager",
                   {"cache_implementation": "static", "disable_compile": True}),
        "dynamic": (f"(b) ours: {name_dtype}, dynamic cache, eager", {"disable_compile": True}),
        # transformers compiles the decode steps ("reduce-overhead": CUDA graphs); the backend then switches the
        # model to a packed-GQA attention, so compiled steps read each K/V head once: on CUDA decode_kernel's
        # flash-decoding kernel (the filled cache positions only), with compiled-sdpa SDPA over the whole cache.
        "compiled": (f"(b) ours: {name_dtype}, static cache, compiled, flash-decoding kernel",
                     {"cache_implementation": "static"}),
        "compiled-sdpa": (f"(b) ours: {name_dtype}, static cache, compiled, packed SDPA",
                          {"cache_implementation": "static"}),
    }
    flash_decoding = {"compiled": None, "compiled-sdpa": False}
    compiled_keys = ("compiled", "compiled-sdpa")  # the kernel first: a run cut short keeps its figure
    chosen = [v for v in args.variants.split(",") if v]
    texts: dict[str, dict[str, str]] = {}  # per variant: article id -> greedy text

    def run_variant(key: str, model) -> None:
        name, kwargs = variants[key]
        if time.perf_counter() - started > args.deadline:
            log(f"skipping {name}: past the {args.deadline:.0f} s deadline for starting a setup")
            return
        # The compiled variant gets a second batch, so its steady state excludes compilation.
        reqs = requests + make_requests(args.batch_size, args.prompt_tokens, shape["vocab_size"], seed=1) \
            if key in compiled_keys else requests
        log(f"running {name} on {len(reqs)} articles")
        try:
            found, texts[key] = run_ours(name, model, tokenizer, reqs, new_tokens=args.new_tokens,
                                         batch_size=args.batch_size, flash_decoding=flash_decoding.get(key),
                                         generate_kwargs={"prefill_chunk_size": args.prefill_chunk, **kwargs})
        except Exception as err:  # report and go on: the other setups are still worth measuring in this lease
            log(f"{name} FAILED: {type(err).__name__}: {str(err)[:800]}")
            return
        for m in found:
            log(m.line())
        measurements.extend(found)
        if key != "static" and "static" in texts:  # the eager static-cache path is the bf16 reference for outputs
            header.append(agreement(name, texts[key], variants["static"][0], texts["static"]))
            log(header[-1])
        if key == "compiled-sdpa" and "compiled" in texts:  # what the kernel changes against compiled SDPA
            header.append(agreement(variants["compiled"][0], texts["compiled"], name, texts[key]))
            log(header[-1])
        report()
        free()

    tag = " [no fla]" if args.no_fla else ""
    folder_context = (contextlib.nullcontext(str(args.model_dir)) if args.model_dir
                      else tempfile.TemporaryDirectory(prefix="random-weights-"))
    with folder_context as folder:
        if args.model_dir:  # a --compare-no-fla child: the parent's random weights, loaded as a merged model is
            from transformers import AutoModelForCausalLM

            model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, device_map=device).eval()
        else:
            model = random_model(config, device, dtype)
            log(f"random model built: {sum(p.numel() for p in model.parameters()) / 1e9:.2f} B parameters")
            if args.reference_articles > 0 or args.compare_no_fla or args.gpus > 1:
                model.save_pretrained(folder)
                tokenizer.save_pretrained(folder)
                log("saved the random weights (the reference loads them in 4-bit; the child and shards load them)")
        header.append(f"linear attention{tag}: {linear_attention_kernels()}")
        log(header[-1])
        if args.profile_decode:
            for line in profile_decode(model, tokenizer, requests, batch_size=args.batch_size,
                                       steps=args.profile_decode, prefill_chunk=args.prefill_chunk,
                                       compiled=args.profile_compiled):
                log(line)
                header.append(line)
            free()
        for key in [k for k in chosen if k not in compiled_keys]:
            run_variant(key, model)
        for key in [k for k in compiled_keys if k in chosen]:
            if device == "cpu":
                log(f"skipping the {key} variant on CPU (HF auto-compiles only on CUDA)")
            else:
                # Last on the same weights: its backend switches the model's attention to a packed-GQA function.
                torch._dynamo.reset()  # the other compiled variant's graphs hold the other attention function
                run_variant(key, model)
        del model
        free()
        if args.reference_articles > 0:
            try:
                ref = run_reference(Path(folder), tokenizer, requests[: args.reference_articles],
                                    new_tokens=args.new_tokens, device=device)
                ref.name += tag
                log(ref.line())
                measurements.insert(0, ref)
                report()
            except Exception as err:
                log(f"reference FAILED: {type(err).__name__}: {str(err)[:800]}")
            free()
        if args.compare_no_fla and not args.no_fla:
            header.extend(run_no_fla_child(args, Path(folder), measurements))
            report()
        if args.gpus > 1:
            log(f"running (c) the sharded path over {args.gpus} workers on {len(requests)} articles")
            try:
                found, facts = run_sharded(
                    Path(folder), requests, gpus=args.gpus, new_tokens=args.new_tokens, batch_size=args.batch_size,
                    dtype=name_dtype, generate_kwargs={"prefill_chunk_size": args.prefill_chunk,
                                                       "cache_implementation": "static", "disable_compile": True})
            except Exception as err:
                log(f"(c) sharded FAILED: {type(err).__name__}: {str(err)[:1500]}")
            else:
                measurements.extend(found)
                header.append(sharded_summary(facts, measurements, device))
                log(header[-1])
            report()

    if args.rows_out:
        args.rows_out.write_text("".join(json.dumps(asdict(m)) + "\n" for m in measurements))
    text = report()
    print("\n" + text, flush=True)
    return 0 if measurements else 1


if __name__ == "__main__":
    sys.exit(main())
