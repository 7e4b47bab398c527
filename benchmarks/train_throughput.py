"""Tokens/s and peak GPU memory of one QLoRA SFT step at 16k tokens: plain PEFT baseline vs our training step.

Model: Qwen3-8B shape (hidden 4096, 36 layers, 32 heads / 8 KV heads, intermediate 12288, vocab 151936) with random
weights: compute and memory do not depend on the values. It is built on the GPU in bf16 and its decoder linears are
replaced by bitsandbytes NF4 + double-quant Linear4bit layers, as transformers' bnb loader does.

Setups (each on a freshly built model, same random 16k-token rows whose last 2,048 tokens carry the loss, batch 1,
LoRA r16 on all linear layers, warm-up steps excluded, median step time):
  baseline      plain PEFT QLoRA as the reference pipeline ran it: prepare_model_for_kbit_training (fp32 norms,
                embeddings and lm_head), its gradient checkpointing, SDPA, bf16 autocast, the model's own loss over
                the full (16k x 152k) logits, torch AdamW, no Liger
  ours          train_adapter's GPU path: build_trainer (trl SFTTrainer with its fused LM head that scores only
                supervised positions, no fp32 upcast, non-reentrant checkpointing, 8-bit AdamW), Liger
                RMSNorm/RoPE/SwiGLU, fused LoRA forward (ml/training/fused_lora.fused_lora_forward)
  ours-plain    ours with peft's own LoRA forward
  ours-addmm    ours without the recompute early stop of the last projection
  ours+sac      ours + selective checkpointing (attention outputs kept: +5.6 GiB); "+sacN" keeps them in N layers,
                "+offload" moves checkpointed layer inputs to pinned host memory (trl's activation offloading)
                and, since session 10 (after 05aa3bd), the attention outputs "+sac" keeps (kept_offload.py)
  ours-noliger  ours without Liger
  ours-bf16     ours on a bf16 base (LoRA without quantisation): what NF4 dequantisation costs

  ours-nf4lin   ours with the linear-attention projections kept bf16 under NF4 (the qwen3.5-9b config)
  ours-nf4fp8lin  ours-nf4fp8 with the linear-attention projections kept bf16 (and multiplied in bf16)
  ours-fp8      ours on an FP8 (e4m3, row-wise scaled) copy of the frozen base, FP8 matmuls for the forward and the
                input gradient (quantization: fp8, Hopper or newer; ml/training/fp8.py); "+hostemb" keeps the
                input embeddings in pinned host memory (training.input_embeddings_on_host)
  ours-nf4fp8   the FP8 matmuls of ours-fp8 on the NF4 base of ours (quantization: nf4-fp8): each call rebuilds the
                e4m3 weight it multiplies from NF4, so the base takes NF4's 3.8 GiB instead of e4m3's 7.6
  ours-nf4int8  the nf4-fp8 design without FP8 (quantization: nf4-int8, A100 and newer; ml/training/int8.py): each
                call rebuilds a row-wise-scaled int8 weight from NF4, int8 activations, int32 accumulation (forward
                and input gradient); the LoRA path stays bf16
  unsloth       Unsloth's published QLoRA path, in its own process (--unsloth-pythonpath: its pinned libraries)
  "+pack"       (any setup) padding-free packing of the rows into max_length sequences, trl's bfd bins (ours: the
                trainer's training.packing; baseline/unsloth: the same bins from trl's pack_dataset and collator,
                position_ids restarting per row); the kernels must keep rows apart (ml/training/packing.py refuses
                those that do not; bioreview_assets_tests/ml/test_packing.py compares per-row losses)

Rows (--rows): "fixed" (default) is one seq-token row per step whose last `supervised` tokens carry the loss.
"corpus-a" draws each row's lengths from the reference Corpus A (see CORPUS_A below; docs/reference.md: reference
pipeline §1.5 and §1.8): a system prompt, a user turn of ~9-11k real tokens (52.8% cut at the 15,000 "chars/3"
budget), a supervised target of a few hundred to a few thousand tokens, capped at --seq (max_length, 16,384); the
same rows for a seed, every setup.
Reported then: real (non-padding) tokens/s over the measured steps (sum of their tokens / sum of their seconds).

Measured on one H200 (benchmarks/results/train_peers_h200.txt, train_fp8_h200.txt): Unsloth 2026.10.9 8,356 tok/s
at 9.99 GiB; ours (NF4) 8,192 at 13.24; ours+sac+offload+hostemb (NF4) 8,563 at 12.28; ours-fp8+sac+offload+hostemb
10,225 at 15.54 allocated (17.71 reserved) with the Triton FP8 kernels (9,588 before them); plain PEFT 5,128 at 46.77.
Session 10 (train_nf4fp8_h200.txt): ours-nf4fp8+sac+offload+hostemb (kept attention outputs in host memory) 10,067
at 8.05 beside Unsloth's 8,116 at 9.99 in one run (1.24x); before that offload, 10,583 at 12.28 beside
ours-fp8+sac+offload+hostemb 10,301 at 15.62, and ours-nf4fp8+sac16+offload+hostemb 9,996 at 9.79 (Unsloth 8,427).
Session 11 (same file, section 6; kept outputs fetched into the compute stream's memory, 64-row NF4 rebuild tiles):
ours-nf4fp8+sac+offload+hostemb 10,466 at 8.05 allocated / 10.09 reserved beside Unsloth's 8,227 at 9.99 / 10.48 (1.27x;
1.23-1.27x over five invocations on two leases, median 1.267x).

Quality guard (--guard): loss curves of --guard-variants (default ours-bf16, ours-fp8, ours) on a small Qwen3 shape
trained for 200 steps from the same start on the same learnable rows (chain_features), with the largest deviation of
a 20-step mean from the bf16 LoRA curve and PASS/FAIL at 1%. On the H200 at the configs' learning rate 2e-4 (the
default): ours-fp8 0.66%, PASS (0.73% before the Triton kernels). ours-nf4fp8 is also compared with `ours` (the same
NF4 weights, bf16 matmuls): 0.97%, PASS; against bf16 it is 6.60% off, as NF4 itself is (5.71%).
ours-nf4int8 is compared with `ours` the same way (--guard-variants ours-bf16,ours,ours-nf4int8; not yet run on a GPU;
on CPU a 6-step tiny run stays within 1% of nf4's losses: bioreview_assets_tests/ml/test_training_int8.py).

Shapes (--shape): qwen3-8b (default), qwen3.5-9b (hybrid: 24 Gated DeltaNet + 8 full-attention layers, vocab 248,320,
LoRA also on in_proj_qkv/in_proj_z/out_proj as in configs/models/qwen3.5-9b.yaml; needs flash-linear-attention for
its Triton kernels, the header says whether they are loaded), qwen2.5-14b (48 layers, hidden 5120); tiny-* shapes
of each for CPU smoke tests. Random weights from the config only: nothing is downloaded.

Several GPUs (--gpus N): the `ours` setup (or --variants) under torchrun with N ranks, DDP as train_adapter runs
training.gpus: N (NVLink multicast off, one rank per GPU). Each rank trains batch 1 per step on rows of its own
(the random rows of seeds 1..N, dealt by the trainer's sampler); with one rank they are exactly the rows of the
default path, so `--gpus 1` (torchrun, one rank) is comparable with it. Reported: every rank's tokens/s and their total; scaling
efficiency is total(N) / (N x total(1)) of two such runs.

Run:  python benchmarks/train_throughput.py            (GPU: the figures in benchmarks/results/)
      python benchmarks/train_throughput.py --tiny     (CPU smoke test of the same code paths)
      python benchmarks/train_throughput.py --gpus 8   (one host, 8 GPUs: per-rank and total tokens/s)
      python benchmarks/train_throughput.py --tiny --gpus 2   (2 CPU ranks over gloo)
      python benchmarks/train_throughput.py --shape qwen3.5-9b --variants ours,ours-nf4lin,ours-bf16
      python benchmarks/train_throughput.py --shape qwen2.5-14b --variants ours --warmup 1 --steps 1
      python benchmarks/train_throughput.py --guard    (about 2.5 minutes on an H200)
      python benchmarks/train_throughput.py --rows corpus-a --variants baseline,ours,ours+pack,ours-nf4int8+pack,unsloth
      python benchmarks/train_throughput.py --tiny --rows corpus-a --variants ours,ours+pack,ours-nf4int8  (CPU smoke)
The GPU path imports no pydantic/dagster (a stand-in config object is used when pydantic is missing).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

VARIANTS = ("baseline", "ours-plain", "ours-addmm", "ours", "ours+sac", "ours-noliger", "ours-bf16")
SEVEN = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
LINEAR_ATTENTION_TARGETS = ["in_proj_qkv", "in_proj_z", "out_proj"]  # configs/models/qwen3.5-9b.yaml
QWEN3_5_LINEAR = {"linear_conv_kernel_dim": 4, "linear_key_head_dim": 128, "linear_value_head_dim": 128,
                  "linear_num_key_heads": 16, "linear_num_value_heads": 32}
# shape -> (config class, config values, LoRA targets). Real shapes from the checkpoints' config.json.
SHAPES = {
    "qwen3-8b": ("Qwen3Config", {"hidden_size": 4096, "num_hidden_layers": 36, "num_attention_heads": 32,
                                 "num_key_value_heads": 8, "intermediate_size": 12288, "vocab_size": 151936,
                                 "head_dim": 128, "max_position_embeddings": 40960, "rope_theta": 1_000_000.0}, SEVEN),
    "qwen3.5-9b": ("Qwen3_5TextConfig", {"hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 16,
                                         "num_key_value_heads": 4, "intermediate_size": 12288, "vocab_size": 248320,
                                         "head_dim": 256, "max_position_embeddings": 262144, **QWEN3_5_LINEAR},
                   SEVEN + LINEAR_ATTENTION_TARGETS),
    "qwen2.5-14b": ("Qwen2Config", {"hidden_size": 5120, "num_hidden_layers": 48, "num_attention_heads": 40,
                                    "num_key_value_heads": 8, "intermediate_size": 13824, "vocab_size": 152064,
                                    "max_position_embeddings": 32768, "rope_theta": 1_000_000.0}, SEVEN),
    # --guard's small model: big enough for realistic matmul shapes and numerics, trained 200 steps in seconds.
    "guard": ("Qwen3Config", {"hidden_size": 1024, "num_hidden_layers": 8, "num_attention_heads": 16,
                              "num_key_value_heads": 8, "intermediate_size": 3072, "vocab_size": 8192, "head_dim": 64,
                              "max_position_embeddings": 4096}, SEVEN),
    "tiny": ("Qwen3Config", {"hidden_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4,
                             "num_key_value_heads": 2, "intermediate_size": 512, "vocab_size": 2048, "head_dim": 64,
                             "max_position_embeddings": 40960}, SEVEN),
    "tiny-qwen3.5": ("Qwen3_5TextConfig", {"hidden_size": 128, "num_hidden_layers": 4, "num_attention_heads": 2,
                                           "num_key_value_heads": 1, "intermediate_size": 256, "vocab_size": 2048,
                                           "head_dim": 64, "max_position_embeddings": 4096,
                                           **{**QWEN3_5_LINEAR, "linear_key_head_dim": 32, "linear_value_head_dim": 32,
                                              "linear_num_key_heads": 2, "linear_num_value_heads": 4}},
                     SEVEN + LINEAR_ATTENTION_TARGETS),
    # --guard's hybrid: Qwen3.5's layer pattern (3 Gated DeltaNet : 1 full attention) and head dims at guard size.
    "guard-qwen3.5": ("Qwen3_5TextConfig", {"hidden_size": 1024, "num_hidden_layers": 8, "num_attention_heads": 8,
                                            "num_key_value_heads": 2, "intermediate_size": 3072, "vocab_size": 8192,
                                            "head_dim": 128, "max_position_embeddings": 4096,
                                            **{**QWEN3_5_LINEAR, "linear_num_key_heads": 4,
                                               "linear_num_value_heads": 8}},
                      SEVEN + LINEAR_ATTENTION_TARGETS),
    "tiny-qwen2.5": ("Qwen2Config", {"hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2,
                                     "num_key_value_heads": 1, "intermediate_size": 256, "vocab_size": 2048,
                                     "max_position_embeddings": 4096}, SEVEN),
}


def model_config(shape: str):
    """The named shape's config (random weights are built from it), SDPA attention, no KV cache."""
    import transformers

    class_name, values, _ = SHAPES[shape]
    return getattr(transformers, class_name)(
        **values, rms_norm_eps=1e-6, tie_word_embeddings=False, use_cache=False, attn_implementation="sdpa",
    )


def lora_targets(shape: str) -> list[str]:
    return list(SHAPES[shape][2])


def linear_attention_kernels() -> str:
    """Whether transformers' Gated DeltaNet uses flash-linear-attention here (it binds the kernel on import)."""
    import importlib.util

    if importlib.util.find_spec("fla") is None:
        return "flash-linear-attention not installed: torch reference path"
    import fla

    return f"flash-linear-attention {getattr(fla, '__version__', '?')}"


def device():
    import torch

    return torch.device(f"cuda:{local_rank()}" if torch.cuda.is_available() else "cpu")


def world_size() -> int:
    """Ranks of this run: torchrun's WORLD_SIZE under --gpus, else 1."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def rank_rows(args, vocab: int) -> list:
    """warmup + steps rows per rank: seed 1's (the single-process run's rows) then seed 2's, ... up to seed N's.

    The trainer's seeded shuffle deals them to the ranks, warmup + steps distinct rows each; every row has the same
    length and supervised span, so every rank's step costs the same as the single-process step.
    """
    n = args.warmup + args.steps
    if args.rows == "corpus-a":
        # Packed steps take ~1.5 rows of 16k each: three times the steps leaves every setup rows to spare.
        return [row for r in range(world_size()) for row in corpus_a_features(3 * n, args.seq, vocab, seed=1 + r)]
    make_rows = chain_features if args.guard else random_features
    return [row for r in range(world_size()) for row in make_rows(n, args.seq, args.supervised, vocab, seed=1 + r)]


def compute_dtype():
    import torch

    return torch.bfloat16 if torch.cuda.is_available() else torch.float32


def build_model(config, *, nf4: bool, keep_bf16: tuple[str, ...] = ()):
    """Random-weight model on the device in the compute dtype; decoder linears NF4-quantised when nf4."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(compute_dtype())
    try:
        with device():
            model = AutoModelForCausalLM.from_config(config)
    finally:
        torch.set_default_dtype(previous)
    if nf4:
        quantize_nf4_in_place(model, keep_bf16)
    model.config.use_cache = False
    return model


def quantize_nf4_in_place(model, keep_bf16: tuple[str, ...] = ()) -> None:
    """Replace every decoder nn.Linear by a bitsandbytes NF4 double-quant Linear4bit (lm_head stays bf16, as in HF).

    Modules whose name contains one of keep_bf16 (e.g. "linear_attn") stay bf16, as the config's skip list does.
    """
    import bitsandbytes as bnb
    import torch

    for module_name, module in list(model.model.layers.named_modules()):
        if any(part in module_name for part in keep_bf16):
            continue
        for name, child in list(module.named_children()):
            if type(child) is not torch.nn.Linear:
                continue
            with torch.device("meta"):
                quantized = bnb.nn.Linear4bit(
                    child.in_features, child.out_features, bias=child.bias is not None,
                    compute_dtype=compute_dtype(), compress_statistics=True, quant_type="nf4",
                    quant_storage=torch.uint8,
                )
            quantized.weight = bnb.nn.Params4bit(
                child.weight.data, requires_grad=False, compress_statistics=True, quant_type="nf4",
                quant_storage=torch.uint8, module=quantized,
            ).to(child.weight.device)  # quantises on the device
            if child.bias is not None:  # Qwen2 has q/k/v biases: kept as they are (bf16), as bitsandbytes does
                quantized.bias = torch.nn.Parameter(child.bias.data, requires_grad=False)
            setattr(module, name, quantized)
            del child
    model.is_loaded_in_4bit = True  # what transformers' bnb loader marks; peft and trl read it


def random_features(n: int, seq: int, supervised: int, vocab: int, seed: int):
    """n random rows of seq tokens whose last `supervised` tokens carry the loss (a long paper, a JSON answer)."""
    import torch

    from bioreview_assets.ml.training.features import IGNORE_INDEX, Features

    generator = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(n):
        ids = torch.randint(10, vocab, (seq,), generator=generator).tolist()
        labels = [IGNORE_INDEX] * (seq - supervised) + ids[seq - supervised :]
        rows.append(Features(input_ids=ids, labels=labels, prompt_tokens=seq - supervised, end_marker=""))
    return rows


# Corpus A's row lengths, from the reference pipeline's own statistics (docs/reference.md: reference pipeline):
# * 1.5: the user turn (prompt prefix + paper) is budgeted to 15,000 tokens counted as chars/3, i.e. ~45,000 characters
#   or ~11k real Qwen tokens (real/counted ~ 11/15); 52.8% of Corpus A train prompts were cut (they end at the budget);
#   mean 12.4k, median 14.8k counted tokens. System prompt and target are not budgeted.
# * 1.8: 14.1 concerns per article on average (eLife 6.4 ... Nature 21.0); a concern is a JSON object
#   {"text": 1-3 sentences, "category", "severity"}, ~50-90 tokens.
# The model below: a cut prompt lands in [14,500, 15,000] counted tokens, an uncut one uniformly in [5,100, 14,500];
# the mixture's mean is 12.4k counted tokens (median ~14.5k), ~9.1k real ones. Target: 3-25 concerns of 50-90 tokens
# (150-2,250, mean ~1,000). System prompt: 250 tokens. Rows are capped at max_length; lengths scale with
# max_length / 16,384 (--tiny's 256 keeps the shape at 1/64).
CORPUS_A = {
    "cut_share": 0.528, "cut_counted": (14_500, 15_000), "uncut_counted": (5_100, 14_500),
    "real_per_counted": 11 / 15, "system_tokens": 250, "concerns": (3, 25), "tokens_per_concern": (50, 90),
    "max_length": 16_384,
}


def corpus_a_lengths(n: int, max_length: int, seed: int) -> list[tuple[int, int]]:
    """n (prompt tokens, target tokens) pairs drawn from CORPUS_A, scaled to max_length, deterministic for a seed."""
    import random

    rng = random.Random(seed)
    a, scale = CORPUS_A, max_length / CORPUS_A["max_length"]
    pairs = []
    for _ in range(n):
        band = a["cut_counted"] if rng.random() < a["cut_share"] else a["uncut_counted"]
        user = rng.uniform(*band) * a["real_per_counted"]
        target = sum(rng.uniform(*a["tokens_per_concern"]) for _ in range(rng.randint(*a["concerns"])))
        prompt = max(1, round((a["system_tokens"] + user) * scale))
        target = max(1, min(round(target * scale), max_length - prompt))
        pairs.append((prompt, target))
    return pairs


def corpus_a_features(n: int, max_length: int, vocab: int, seed: int):
    """n random-token rows with Corpus A's lengths: the prompt masked, the target carrying the loss."""
    import torch

    from bioreview_assets.ml.training.features import IGNORE_INDEX, Features

    generator = torch.Generator().manual_seed(seed)
    rows = []
    for prompt, target in corpus_a_lengths(n, max_length, seed):
        ids = torch.randint(10, vocab, (prompt + target,), generator=generator).tolist()
        labels = [IGNORE_INDEX] * prompt + ids[prompt:]
        rows.append(Features(input_ids=ids, labels=labels, prompt_tokens=prompt, end_marker=""))
    return rows


def chain_features(n: int, seq: int, supervised: int, vocab: int, seed: int):
    """Rows that can be learnt: each token is a fixed permutation of the one before (over the first 512 ids).

    For --guard: on random tokens the loss of a random model hardly moves, so equal curves would prove nothing;
    here it falls from ln(vocab) as the adapter learns the marginal and then the map.
    """
    import torch

    from bioreview_assets.ml.training.features import IGNORE_INDEX, Features

    alphabet = min(512, vocab - 10)
    permutation = torch.randperm(alphabet, generator=torch.Generator().manual_seed(0)) + 10
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(n):
        token = int(torch.randint(10, 10 + alphabet, (1,), generator=generator))
        ids = []
        for _ in range(seq):
            ids.append(token)
            token = int(permutation[token - 10])
        labels = [IGNORE_INDEX] * (seq - supervised) + ids[seq - supervised :]
        rows.append(Features(input_ids=ids, labels=labels, prompt_tokens=seq - supervised, end_marker=""))
    return rows


GUARD_WINDOW, GUARD_LIMIT = 20, 0.01


# A variant whose only difference from its peer is the 8-bit matmuls: the guard also compares the two.
SAME_STORAGE = {"ours-nf4fp8": "ours", "ours-nf4int8": "ours"}


def guard_deviations(curves: dict[str, list[float]], window: int = GUARD_WINDOW
                     ) -> tuple[dict[str, list[float]], dict[str, float]]:
    """Mean loss per `window` steps of each curve, and each curve's largest relative deviation from the first one's
    means (over the windows both have)."""
    means = {name: [sum(c[i:i + window]) / len(c[i:i + window]) for i in range(0, len(c), window)]
             for name, c in curves.items()}
    reference = next(iter(means.values()))
    deviations = {name: max(abs(a - b) / b for a, b in zip(m, reference))
                  for name, m in list(means.items())[1:]}
    return means, deviations


def run_guard(args, env: dict) -> None:
    """Loss curves of each --guard-variants setup from the same start and rows; the first one is the reference."""
    curves = {}
    for variant in args.guard_variants.split(","):
        result = run_in_child(variant)
        if "losses" not in result:
            print(f"{variant}: no loss curve ({result.get('error', 'no result')})")
            continue
        curves[variant] = result["losses"]
    if not curves:
        return
    reference_name, reference = next(iter(curves.items()))
    means, deviations = guard_deviations(curves)
    print(f"\nquality guard: shape {args.shape}, {args.steps} steps, seq {args.seq}, lr {args.learning_rate}; "
          f"mean loss per {GUARD_WINDOW} steps; reference {reference_name}")
    print(f"{'steps':>9} " + " ".join(f"{name:>12}" for name in means))
    for i, start in enumerate(range(0, len(reference), GUARD_WINDOW)):
        print(f"{start + 1:>4}-{min(start + GUARD_WINDOW, len(reference)):<4} "
              + " ".join(f"{m[i]:>12.4f}" if i < len(m) else f"{'':>12}" for m in means.values()))
    for name, deviation in deviations.items():
        verdict = "PASS" if deviation <= GUARD_LIMIT else "FAIL"
        print(f"{name}: largest deviation of a {GUARD_WINDOW}-step mean from {reference_name}: {deviation:.2%} "
              f"(limit {GUARD_LIMIT:.0%}) -> {verdict}")
    for name, peer in SAME_STORAGE.items():  # what the 8-bit matmuls add to the rounding of the storage they share
        if name in curves and peer in curves and peer != reference_name:
            deviation = guard_deviations({peer: curves[peer], name: curves[name]})[1][name]
            verdict = "PASS" if deviation <= GUARD_LIMIT else "FAIL"
            print(f"{name} against {peer} (the same NF4 weights, bf16 matmuls): largest deviation {deviation:.2%} "
                  f"(limit {GUARD_LIMIT:.0%}) -> {verdict}")


def tiny_tokenizer():
    """A tokenizer object for the trainer (rows are pre-tokenised; only pad/eos ids are read)."""
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<eos>": 1, "<unk>": 2}
    return PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="<unk>")),
        pad_token="<pad>", eos_token="<eos>", unk_token="<unk>",
    )


def reset_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_gib() -> tuple[float | None, float | None]:
    import torch

    if not torch.cuda.is_available():
        return None, None
    return torch.cuda.max_memory_allocated() / 2**30, torch.cuda.max_memory_reserved() / 2**30


def sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def summarise(name: str, step_times: list[float], tokens_per_step: int | list[int], warmup: int, extra: dict) -> dict:
    """tokens_per_step: one count (fixed rows: tokens / median step) or each step's real tokens (rows of uneven
    length, packed or not: the measured steps' tokens / their seconds)."""
    measured = step_times[warmup:]
    median = sorted(measured)[len(measured) // 2]
    allocated, reserved = peak_gib()
    if isinstance(tokens_per_step, list):
        tokens = tokens_per_step[warmup:len(step_times)]
        rate = sum(tokens) / sum(measured)
        extra = {"real_tokens_per_step": tokens, **extra}
    else:
        rate = tokens_per_step / median
    return {
        "setup": name,
        "tokens_per_s": round(rate, 1),
        "step_s_median": round(median, 3),
        "step_s_all": [round(t, 3) for t in step_times],
        "peak_allocated_gib": round(allocated, 2) if allocated is not None else None,
        "peak_reserved_gib": round(reserved, 2) if reserved is not None else None,
        **extra,
    }


# ------------------------------------------------------------------------------------------------------ baseline


def plain_batches(rows, args, pack: bool) -> list[dict]:
    """The plain loops' batches: one row each, or (pack) trl's bfd bins of max_length as its padding-free collator
    gives them to our trainer (position_ids restarting per row, cu_seq_lens, seq_idx, no attention mask)."""
    import torch

    if not pack:
        return [{"input_ids": torch.tensor([f.input_ids]), "labels": torch.tensor([f.labels])} for f in rows]
    from datasets import Dataset
    from trl.data_utils import pack_dataset
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    packed = pack_dataset(Dataset.from_list([f.as_row() for f in rows]), args.seq, strategy="bfd")
    collator = DataCollatorForLanguageModeling(pad_token_id=0, padding_free=True)
    return [collator([packed[i]]) for i in range(len(packed))]


def timed_steps(model, optimizer, batches, autocast) -> tuple[list[float], float]:
    """One synchronised, timed step per batch (forward with labels, backward, optimizer step); the last loss."""
    times = []
    for batch in batches:
        inputs = {k: v.to(device()) if hasattr(v, "to") else v for k, v in batch.items()}
        sync()
        started = time.perf_counter()
        with autocast:
            loss = model(**inputs).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync()
        times.append(time.perf_counter() - started)
    return times, loss.item()


def step_tokens(args, batches) -> int | list[int]:
    """What summarise counts: seq per step for fixed rows, else each batch's real tokens (no padding at batch 1)."""
    return args.seq if args.rows == "fixed" else [int(b["input_ids"].numel()) for b in batches]


def run_baseline(config, rows, args, pack: bool = False) -> dict:
    """Plain PEFT QLoRA as the reference pipeline ran it (docs/reference.md: reference pipeline §2.2, the PEFT path),
    with a hand-written step."""
    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    name = "baseline+pack" if pack else "baseline"

    model = build_model(config, nf4=True)
    model = prepare_model_for_kbit_training(model)  # fp32 norms/embeddings/lm_head + checkpointing
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, task_type="CAUSAL_LM",
                                             target_modules="all-linear"))
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4)
    reset_memory()
    cuda = torch.cuda.is_available()
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else contextlib.nullcontext()
    batches = plain_batches(rows, args, pack)[: args.warmup + args.steps]
    times, loss = timed_steps(model, optimizer, batches, autocast)
    result = summarise(name, times, step_tokens(args, batches), args.warmup, {
        "norm_dtype": str(model.get_base_model().model.norm.weight.dtype),
        "loss": round(loss, 4),
    })
    del model, optimizer
    reset_memory()
    return result


# ------------------------------------------------------------------------------------------------------- unsloth


def random_checkpoint(config, args) -> Path:
    """The shape's random bf16 weights saved once as a checkpoint folder (Unsloth loads and quantises a folder)."""
    folder = Path(args.checkpoint_dir) / f"{args.shape}-random"
    if (folder / "config.json").exists():
        return folder
    model = build_model(config, nf4=False)
    model.save_pretrained(str(folder), safe_serialization=True)
    tiny_tokenizer().save_pretrained(str(folder))
    del model
    reset_memory()
    return folder


def run_unsloth(config, rows, args, pack: bool = False) -> dict:
    """Unsloth's published QLoRA path: FastLanguageModel 4-bit load, its get_peft_model and "unsloth" checkpointing.

    The step is a plain loop (forward with labels, backward, 8-bit AdamW): Unsloth's speed is in its patched model
    (fused LoRA MLP/QKV kernels, its RoPE/RMSNorm kernels, its chunked cross-entropy), not in a trainer. Runs in its
    own process with Unsloth's pinned libraries (transformers <= 5.17, trl <= 1.15: --unsloth-pythonpath).
    """
    import unsloth  # noqa: F401  (first: it patches transformers and peft on import)
    import bitsandbytes as bnb
    import torch
    from unsloth import FastLanguageModel

    folder = random_checkpoint(config, args)
    model, _ = FastLanguageModel.from_pretrained(
        model_name=str(folder), max_seq_length=args.seq, dtype=torch.bfloat16, load_in_4bit=True,
        local_files_only=True,
    )
    model = FastLanguageModel.get_peft_model(
        model, r=16, lora_alpha=32, lora_dropout=0.0, bias="none", target_modules=lora_targets(args.shape),
        use_gradient_checkpointing="unsloth", random_state=0, max_seq_length=args.seq,
    )
    FastLanguageModel.for_training(model)
    optimizer = bnb.optim.AdamW8bit([p for p in model.parameters() if p.requires_grad], lr=args.learning_rate)
    reset_memory()
    # "+pack": trl's bins with restarting position_ids; whether Unsloth's attention keeps the rows apart is not
    # verified here (its own padding-free path is for batches > 1; at batch 1 its default is one row per step).
    batches = plain_batches(rows, args, pack)[: args.warmup + args.steps]
    times, loss = timed_steps(model, optimizer, batches, contextlib.nullcontext())
    result = summarise("unsloth+pack" if pack else "unsloth", times, step_tokens(args, batches), args.warmup, {
        "unsloth": getattr(unsloth, "__version__", "?"), "loss": round(loss, 4),
        "gradient_checkpointing": "unsloth",
    })
    del model, optimizer
    reset_memory()
    return result


# ---------------------------------------------------------------------------------------------------------- ours


def step_timer():
    """A TrainerCallback timing each optimizer step (synchronised)."""
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.times: list[float] = []
            self.losses: list[float] = []
            self.tokens: list[int] = []  # real tokens of each step (the trainer's own count; set .trainer)
            self.trainer = None
            self._started = 0.0
            self._tokens_before = 0

        def on_step_begin(self, args, state, control, **kwargs):
            sync()
            self._tokens_before = self.trainer.rank_train_tokens if self.trainer else 0
            self._started = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            sync()
            self.times.append(time.perf_counter() - self._started)
            if self.trainer:
                self.tokens.append(self.trainer.rank_train_tokens - self._tokens_before)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                self.losses.append(logs["loss"])

    return StepTimer()


def training_config(args, *, quantization: str, liger: str, sac_layers=0, offload: bool = False,
                    host_embeddings: bool = False, packing: bool = False):
    """The project's TrainingConfig, or (where pydantic is not installed, e.g. a bare GPU box) a stand-in.

    On N ranks the effective batch is N rows (one per rank and step), as training.gpus: N divides it.
    """
    ranks = world_size()
    values = dict(
        quantization=quantization, max_length=args.seq,
        lora={"r": 16, "alpha": 32, "dropout": 0.0, "target_modules": lora_targets(args.shape), "scope": "all"},
        epochs=1, max_steps=args.warmup + args.steps, per_device_batch_size=1, gradient_accumulation_steps=ranks,
        gpus=ranks,
        learning_rate=args.learning_rate, optim="adamw_8bit", bf16=True, logging_steps=1, save_steps=10**6,
        eval_subset=0,
        gradient_checkpointing=True, liger=liger, selective_checkpointing_layers=sac_layers,
        activation_offloading=offload, input_embeddings_on_host=host_embeddings, packing=packing,
    )
    try:
        from bioreview_assets.config.model import TrainingConfig
    except ImportError:
        return stand_in_training_config(values)
    return TrainingConfig(**values)


def stand_in_training_config(values: dict):
    """A namespace with TrainingConfig's defaults and `values` (the fields build_trainer and friends read)."""
    from types import SimpleNamespace

    defaults = dict(lr_scheduler="cosine", warmup_ratio=0.03, weight_decay=0.01, max_grad_norm=1.0, seed=42,
                    save_total_limit=4, packing=False, quantization_skip_modules=[], gpus=1, strategy="ddp",
                    allow_world_size_change=False)
    lora = SimpleNamespace(**values["lora"])
    return SimpleNamespace(**{**defaults, **values, "lora": lora})


# variant -> (quantised base, liger, LoRA forward). LoRA forward: "peft" (peft's own), "addmm" (B, scaling and add in
# one addmm), "fused" (addmm + the last projection of each block computes its LoRA branch first, so the recompute
# stops before its base matmul). Any variant takes suffixes: "+sac" (every layer keeps its attention output),
# "+sacN" (the first N layers do), "+offload" (checkpointed layer inputs go to pinned host memory).
OURS = {
    "ours-plain": ("nf4", "auto", "peft"),
    "ours-addmm": ("nf4", "auto", "addmm"),
    "ours": ("nf4", "auto", "fused"),
    "ours-noliger": ("nf4", "off", "fused"),
    "ours-bf16": ("none", "auto", "fused"),
    "ours-nf4lin": ("nf4-keep-linear-attention", "auto", "fused"),
    "ours-fp8": ("fp8", "auto", "fused"),
    "ours-nf4fp8": ("nf4-fp8", "auto", "fused"),
    "ours-nf4fp8lin": ("nf4-fp8-keep-linear-attention", "auto", "fused"),
    "ours-nf4int8": ("nf4-int8", "auto", "fused"),
}
KEEP_LINEAR_ATTENTION = "-keep-linear-attention"  # the linear-attention projections stay bf16 (not quantised)


def parse_variant(variant: str) -> tuple[str, int | str, bool, bool, bool]:
    """(base, selective checkpointing layers, offloading, host embeddings, packing) from e.g.
    'ours+sac12+offload+hostemb+pack'."""
    base, *suffixes = variant.split("+")
    if base not in OURS:
        raise ValueError(f"unknown variant {variant!r}: base must be one of {sorted(OURS)} or 'baseline'")
    sac: int | str = 0
    offload = host_embeddings = packing = False
    for suffix in suffixes:
        if suffix == "pack":
            packing = True
        elif suffix == "offload":
            offload = True
        elif suffix == "hostemb":
            host_embeddings = True
        elif suffix == "sac":
            sac = "all"
        elif suffix.startswith("sac") and suffix[3:].isdigit():
            sac = int(suffix[3:])
        else:
            raise ValueError(f"unknown suffix {suffix!r} in {variant!r} (sac, sacN, offload, hostemb, pack)")
    return base, sac, offload, host_embeddings, packing


def run_ours(config, rows, args, variant: str, *, profile: bool = False) -> dict:
    """train_adapter's step: build_trainer (SFTTrainer, fused LM head, no upcast) on a model prepared like ours."""
    from bioreview_assets.ml.training import build_trainer
    from bioreview_assets.ml.training.fused_lora import fused_lora_forward
    from bioreview_assets.ml.training.liger import apply_liger
    from bioreview_assets.ml.training.precision import check_no_upcast, prepare_for_kbit_free

    base, sac_layers, offload, host_embeddings, packing = parse_variant(variant)
    quantization, liger, lora_forward = OURS[base]
    nf4 = quantization.startswith("nf4")
    keep_bf16 = ("linear_attn",) if quantization.endswith(KEEP_LINEAR_ATTENTION) else ()
    training = training_config(args, quantization=quantization.removesuffix(KEEP_LINEAR_ATTENTION),
                               liger=liger,
                               sac_layers=sac_layers, offload=offload, host_embeddings=host_embeddings,
                               packing=packing)
    # fp8: a bf16 base, nf4-fp8: the NF4 one; build_trainer converts either to its FP8 linears.
    model = build_model(config, nf4=nf4, keep_bf16=keep_bf16)
    prepare_for_kbit_free(model)
    applied = apply_liger(model, liger)
    check_no_upcast(model, compute_dtype())
    timer = step_timer()
    with tempfile.TemporaryDirectory() as tmp:
        trainer = build_trainer(model, tiny_tokenizer(), training, rows, [], Path(tmp),
                                callbacks=[timer])
        timer.trainer = trainer  # each step's real tokens, as the trainer counts them
        reset_memory()
        lora = (
            contextlib.nullcontext() if lora_forward == "peft"
            else fused_lora_forward(trainer.model, lora_first_in_last_projection=lora_forward == "fused")
        )
        with lora:
            trainer.train()
            result = summarise(variant, timer.times, args.seq if args.rows == "fixed" else timer.tokens, args.warmup, {
                "shape": args.shape, "quantization": quantization, "kept_bf16": list(keep_bf16), "liger": applied, "loss": round(timer.losses[-1], 4) if timer.losses else None,
                "optim": str(trainer.args.optim), "lora_forward": lora_forward,
                "selective_checkpointing_layers": sac_layers,
                "activation_offloading": trainer.args.activation_offloading, "packing": packing,
                **({"losses": [round(x, 5) for x in timer.losses]} if args.guard else {}),
            })
            if profile:
                result["profile"] = profile_step(trainer, rows[0])
    del trainer, model
    reset_memory()
    return result


def profile_step(trainer, features) -> list[dict]:
    """Device time by kernel family (kernels only) for one more training step of the same trainer."""
    import torch
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    if not torch.cuda.is_available():
        return []
    batch = trainer.data_collator([features.as_row()])
    trainer.model.train()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA], with_stack=True) as prof:
        trainer.training_step(trainer.model, batch)
        sync()
    trainer.model.zero_grad(set_to_none=True)
    families: dict[str, float] = {}
    kernels: dict[str, float] = {}
    for event in prof.key_averages():
        if event.device_type != DeviceType.CUDA:  # CPU-side op events repeat their kernels' time
            continue
        device_us = getattr(event, "self_device_time_total", 0) or getattr(event, "self_cuda_time_total", 0)
        kernels[event.key] = kernels.get(event.key, 0) + device_us
        family = kernel_family(event.key)
        families[family] = families.get(family, 0) + device_us
    total = sum(families.values()) or 1
    top = sorted(kernels.items(), key=lambda kv: -kv[1])[:12]
    return [
        {"family": name, "ms": round(us / 1000, 1), "share": round(us / total, 3)}
        for name, us in sorted(families.items(), key=lambda kv: -kv[1])
    ] + [{"kernel": name[:100], "ms": round(us / 1000, 1)} for name, us in top] + memory_bound_callers(prof)


MEMORY_BOUND_OPS = {"aten::add", "aten::add_", "aten::copy_", "aten::clone", "aten::cat", "aten::mul", "aten::mul_",
                    "aten::_to_copy", "aten::contiguous", "aten::fill_", "aten::zero_"}


def memory_bound_callers(prof, top: int = 10) -> list[dict]:
    """Where the copies and element-wise adds come from: device time of such ops by their Python call site."""
    rows = []
    for event in prof.key_averages(group_by_stack_n=4):
        if event.key not in MEMORY_BOUND_OPS:
            continue
        device_us = getattr(event, "device_time_total", 0) or getattr(event, "cuda_time_total", 0)
        if device_us:
            stack = [frame.split("site-packages/")[-1][:90] for frame in (event.stack or [])]
            rows.append({"op": event.key, "count": event.count, "ms": round(device_us / 1000, 1), "stack": stack})
    return sorted(rows, key=lambda r: -r["ms"])[:top]


def kernel_family(name: str) -> str:
    lowered = name.lower()
    rules = (
        ("attention", ("flash", "fmha", "cudnn", "attention", "sdpa")),
        ("nf4 dequant", ("dequant", "kdequantize")),
        ("matmul", ("gemm", "xmma", "cutlass", "nvjet", "sm90", "matmul", "splitk")),
        ("memcpy (offload, casts)", ("memcpy", "copy", "cast")),
        ("elementwise (aten)", ("at::native", "elementwise")),
        ("triton (liger / trl lm head)", ("triton", "liger", "_kernel")),
    )
    for family, needles in rules:
        if any(needle in lowered for needle in needles):
            return family
    return "elementwise/other"


# ---------------------------------------------------------------------------------------------------------- main


def step_flops(config, seq: int) -> float:
    """FLOPs of one LoRA step with full recomputation: forward twice, input-gradient backward, attention backward.

    Hybrid models: full attention only in its layers; Gated DeltaNet layers count their projections (the chunked
    delta rule itself, linear in seq, is left out, so their figure is a lower bound).
    """
    heads, kv, hidden = config.num_attention_heads, config.num_key_value_heads, config.hidden_size
    dim = getattr(config, "head_dim", None) or hidden // heads
    layer_types = getattr(config, "layer_types", None) or ["full_attention"] * config.num_hidden_layers
    mlp = 3 * hidden * config.intermediate_size
    attention_proj = hidden * (heads * dim * (2 if "qwen3_5" in config.model_type else 1) + 2 * kv * dim) + heads * dim * hidden
    linear = attention = 0.0
    for kind in layer_types:
        if kind == "linear_attention":
            key_dim = config.linear_key_head_dim * config.linear_num_key_heads
            value_dim = config.linear_value_head_dim * config.linear_num_value_heads
            proj = hidden * (2 * key_dim + 2 * value_dim + 2 * config.linear_num_value_heads) + value_dim * hidden
        else:
            proj = attention_proj
            attention += 2 * seq * seq * heads * dim  # causal
        linear += 2 * seq * (proj + mlp)
    return 3 * linear + 2 * attention + 2.5 * attention


def print_table(results: list[dict], config, seq: int | None) -> None:
    """seq None (rows of uneven length): no FLOPs figure (tokens/s are then real tokens over the measured steps)."""
    flops = step_flops(config, seq) if seq else 0.0
    header = f"{'setup':<20} {'tok/s':>9} {'step s':>8} {'eff TF/s':>8} {'peak alloc GiB':>15} {'peak reserved GiB':>18}"
    print("\n" + header)
    for r in results:
        if "error" in r:
            print(f"{r['setup']:<20} error: {r['error'][:100]}")
            continue
        for row in [r, *r.get("ranks", [])]:
            name = f"  rank {row['rank']}" if row is not r else r["setup"]
            tflops = flops / row["step_s_median"] / 1e12 * (r.get("gpus", 1) if row is r else 1)
            print(f"{name:<20} {row['tokens_per_s']:>9,.0f} {row['step_s_median']:>8.3f} {tflops:>8.0f} "
                  f"{row['peak_allocated_gib'] or 0:>15.2f} {row['peak_reserved_gib'] or 0:>18.2f}")


def environment() -> dict:
    import platform

    import torch

    from bioreview_assets.ml.runtime_env import library_versions

    return {
        "linear_attention_kernels": linear_attention_kernels(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "versions": library_versions(),
        "cuda": torch.version.cuda,
        "alloc_conf": os.environ.get("PYTORCH_CUDA_ALLOC_CONF"),
    }


RESULT_PREFIX = "RESULT "
UNSLOTH_PYTHONPATH = ""  # set from --unsloth-pythonpath


def run_variant(config, rows, args, variant: str) -> dict:
    """One setup in this process; errors become a result row so that the other setups' figures still print."""
    started = time.time()
    try:
        plain, _, suffix = variant.partition("+")
        if plain in ("baseline", "unsloth") and suffix not in ("", "pack"):
            raise ValueError(f"{variant!r}: {plain} takes only the +pack suffix")
        if plain == "baseline":
            result = run_baseline(config, rows, args, pack=suffix == "pack")
        elif plain == "unsloth":
            result = run_unsloth(config, rows, args, pack=suffix == "pack")
        else:
            result = run_ours(config, rows, args, variant, profile=variant == args.profile)
    except Exception as err:  # noqa: BLE001
        traceback.print_exc()
        result = {"setup": variant, "error": f"{type(err).__name__}: {err}"}
    result["wall_s"] = round(time.time() - started, 1)
    return result


def run_in_child(variant: str, gpus: int | None = None) -> dict:
    """Run one setup in a fresh Python process: nothing a previous setup left on the GPU counts in its peak memory.

    (In one process each setup's trainer left ~1.2 GiB behind, which inflated the peaks of the setups after it.)
    With `gpus`, the process is torchrun with that many ranks of this script (one result line per rank).
    """
    import subprocess

    argv = [a for a in sys.argv[1:]]
    if "--variants" in argv:
        index = argv.index("--variants")
        del argv[index:index + 2]
    argv = [a for a in argv if not a.startswith(("--variants=", "--gpus="))]
    if "--gpus" in argv:
        index = argv.index("--gpus")
        del argv[index:index + 2]
    if "--json" in argv:
        index = argv.index("--json")
        del argv[index:index + 2]
    script = [str(Path(__file__).resolve()), *argv, "--child", "--variants", variant]
    env = dict(os.environ)
    if variant.startswith("unsloth") and UNSLOTH_PYTHONPATH:  # Unsloth's own pins (transformers <= 5.17, trl <= 1.15)
        env["PYTHONPATH"] = UNSLOTH_PYTHONPATH
    if gpus:
        from bioreview_assets.ml.training.launch import rank_environment

        # torchrun as train_adapter's launcher runs it (one host, no restarts), with the ranks' environment
        # (NVLink multicast off, threads per rank).
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1",
                   f"--nproc-per-node={gpus}", "--max-restarts=0", *script]
        env = rank_environment(world_size=gpus)
    else:
        command = [sys.executable, *script]
    process = subprocess.run(command, stdout=subprocess.PIPE, text=True, env=env)
    per_rank = []
    for line in process.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            per_rank.append(json.loads(line[len(RESULT_PREFIX):]))
        else:
            print(line, flush=True)
    if not gpus:
        result = per_rank[0] if per_rank else None
    elif len(per_rank) == gpus:
        result = combine_ranks(variant, sorted(per_rank, key=lambda r: r["rank"]))
    else:
        result = None
    if result is None:
        result = {"setup": variant, "error": f"child process exited {process.returncode} with {len(per_rank)} "
                                             f"result(s)"}
    print(json.dumps(result), flush=True)
    return result


def combine_ranks(variant: str, ranks: list[dict]) -> dict:
    """One row for N ranks: the total tokens/s (every rank trains seq tokens per step), and every rank's own row."""
    errors = [f"rank {r['rank']}: {r['error']}" for r in ranks if "error" in r]
    if errors:
        return {"setup": f"{variant} x{len(ranks)}", "error": "; ".join(errors), "ranks": ranks}
    return {
        "setup": f"{variant} x{len(ranks)}",
        "gpus": len(ranks),
        "tokens_per_s": round(sum(r["tokens_per_s"] for r in ranks), 1),
        "tokens_per_s_per_rank": [r["tokens_per_s"] for r in ranks],
        "step_s_median": max(r["step_s_median"] for r in ranks),  # the ranks wait for each other every step
        "peak_allocated_gib": max((r["peak_allocated_gib"] or 0) for r in ranks) or None,
        "peak_reserved_gib": max((r["peak_reserved_gib"] or 0) for r in ranks) or None,
        "ranks": ranks,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="tiny model and short rows (CPU smoke test)")
    parser.add_argument("--shape", choices=sorted(SHAPES), default=None,
                        help="model shape (qwen3-8b; tiny with --tiny; tiny-qwen3.5 / tiny-qwen2.5 for CPU tests)")
    parser.add_argument("--seq", type=int, default=None, help="tokens per row (16384; 256 with --tiny)")
    parser.add_argument("--supervised", type=int, default=None, help="answer tokens per row (2048; 32 with --tiny)")
    parser.add_argument("--rows", choices=("fixed", "corpus-a"), default="fixed",
                        help="fixed: seq tokens a row, the last `supervised` supervised; corpus-a: Corpus A's row "
                             "lengths (CORPUS_A), capped at seq; real tokens/s")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--variants", default=None, help=f"default: {','.join(VARIANTS)}; ours with --gpus")
    parser.add_argument("--gpus", type=int, default=None,
                        help="run each setup under torchrun with this many ranks (DDP, one GPU each; CPU ranks "
                             "over gloo without CUDA); per-rank and total tokens/s")
    parser.add_argument("--profile", default="ours", help="variant to profile one extra step of ('' for none)")
    parser.add_argument("--json", type=Path, default=None, help="write results here after every setup")
    parser.add_argument("--learning-rate", type=float, default=2e-4)
    parser.add_argument("--unsloth-pythonpath", default="",
                        help="PYTHONPATH of the unsloth setup's process (its pinned transformers/trl/datasets)")
    parser.add_argument("--checkpoint-dir", default=tempfile.gettempdir(),
                        help="where the unsloth setup saves the shape's random weights once (16 GB for qwen3-8b)")
    parser.add_argument("--guard", action="store_true",
                        help="quality guard: loss curves of --guard-variants on a small model over --guard-steps")
    parser.add_argument("--guard-variants", default="ours-bf16,ours-fp8,ours")
    parser.add_argument("--guard-steps", type=int, default=200)
    parser.add_argument("--guard-learning-rate", type=float, default=2e-4,
                        help="the guard's learning rate: the configs' 2e-4 by default (loss 9.0 -> 4.2 in 200 steps); "
                             "1e-3 learns the chain to ~0.03, where the noise of any quantised path exceeds a "
                             "relative 1%% (benchmarks/results/train_fp8_h200.txt)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)  # one setup, result on stdout
    args = parser.parse_args()
    global UNSLOTH_PYTHONPATH
    UNSLOTH_PYTHONPATH = args.unsloth_pythonpath
    if args.guard:
        args.shape = args.shape or "guard"
        args.seq, args.supervised = args.seq or 512, args.supervised or 256
        args.warmup, args.steps, args.learning_rate = 0, args.guard_steps, args.guard_learning_rate
        args.profile = ""
    args.shape = args.shape or ("tiny" if args.tiny else "qwen3-8b")
    args.tiny = args.tiny or args.shape.startswith("tiny")
    args.seq = args.seq or (256 if args.tiny else 16384)
    args.supervised = args.supervised or (32 if args.tiny else 2048)
    args.variants = args.variants or ("ours" if args.gpus else ",".join(VARIANTS))
    if args.gpus is not None and args.gpus < 1:
        parser.error("--gpus must be at least 1")
    if args.gpus and "baseline" in args.variants.split(","):
        parser.error("baseline is a hand-written single-process loop: it has no multi-GPU path (use ours-* setups)")

    import logging

    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    for noisy in ("httpx", "datasets", "transformers"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    if args.child and args.variants.startswith("unsloth"):
        import unsloth  # noqa: F401  (before transformers, as Unsloth requires for its patches)
    config = model_config(args.shape)
    if args.child:
        import torch

        if torch.cuda.is_available():
            torch.cuda.set_device(local_rank())  # one GPU per torchrun rank (cuda:0 without torchrun)
        rows = rank_rows(args, config.vocab_size)
        result = run_variant(config, rows, args, args.variants) | {"rank": rank(), "world_size": world_size()}
        print(RESULT_PREFIX + json.dumps(result), flush=True)
        return
    env = environment()
    print(json.dumps(env), flush=True)
    rows_note = (f"rows {args.rows}" if args.rows == "fixed" else
                 f"rows corpus-a (lengths drawn from CORPUS_A, max_length {args.seq}; real tokens/s)")
    print(f"{rows_note}, shape {args.shape}, seq {args.seq}, supervised {args.supervised}, batch 1, warmup {args.warmup}, "
          f"measured {args.steps}; each setup in its own process"
          + (f", under torchrun with {args.gpus} rank(s)" if args.gpus else ""), flush=True)
    if args.guard:
        run_guard(args, env)
        return
    results = []
    for variant in args.variants.split(","):
        results.append(run_in_child(variant, args.gpus))
        if args.json:
            args.json.write_text(json.dumps({"environment": env, "args": vars(args) | {"json": str(args.json)},
                                             "results": results}, indent=2))
    print_table(results, config, args.seq if args.rows == "fixed" else None)


if __name__ == "__main__":
    main()
