"""Where one cold Embedder.encode of a split's concern texts spends its wall time (the scoring benchmark's part (b)).

Run: python3 benchmarks/embed_profile.py --model-folder <MiniLM folder> [--random-weights] [--articles 600]
Prints numbers; not a test. Parts, each timed alone on the same unique texts as benchmarks/score_throughput.py:
tokenise (Rust, pooled), the flat-array conversion, padding + host-to-device copies, the model's forward calls
(launch time on the host, then the wait for the GPU), the copy back; then torch.profiler's top operators over one
whole encode, and the whole encode with the model's attention switched to other implementations.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing
sys.path.insert(0, str(Path(__file__).resolve().parent))

from score_throughput import random_weights_copy, synthetic_split  # noqa: E402

from bioreview_assets.core.matcher_spec import EmbedderSpec  # noqa: E402
from bioreview_assets.ml import embedder_tokens, embedders  # noqa: E402


def unique_texts(n_articles: int, seed: int) -> list[str]:
    """The split's distinct concern texts, in first-seen order (what the cold EmbeddingCache sends to encode)."""
    articles, predictions = synthetic_split(n_articles, seed)
    texts = [c.text for a in articles for c in a.gt] + [p.text for a in articles for p in predictions[a.article_id]]
    return list(dict.fromkeys(texts))


def sync() -> None:
    """Wait for the GPU's queued work (nothing to wait for on a CPU)."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def wall(fn, repeats: int) -> tuple[float, float]:
    """(first, median of the rest) seconds of fn(), synchronising CUDA after each call."""
    import torch

    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        samples.append(time.perf_counter() - t0)
    return samples[0], statistics.median(samples[1:] or samples)


def forward_parts(embedder, texts: list[str]) -> dict[str, float]:
    """Each stage of _encode_pretokenised alone, in sequence (no overlap between them)."""
    import torch

    parts: dict[str, float] = {}
    tokenizer, size = embedder._tokenizer, embedder.batch_size
    with embedder_tokens.rust_tokeniser_pool():
        t0 = time.perf_counter()
        encodings = [tokenizer.encode_batch(texts[at:at + size]) for at in range(0, len(texts), size)]
        parts["tokenise (Rust pool)"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    tokens = embedder_tokens.FlatTokens.joined([embedder_tokens.FlatTokens(e) for e in encodings])
    parts["flat arrays"] = time.perf_counter() - t0
    pad_id = embedder.model.tokenizer.pad_token_id or 0
    order = np.argsort(-tokens.lengths, kind="stable")
    t0 = time.perf_counter()
    batches = []
    for start in range(0, len(order), size):
        ids, mask, types = tokens.padded(order[start:start + size], pad_id)
        batches.append({"input_ids": ids, "attention_mask": mask, "token_type_ids": types})
    parts["padding (numpy)"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    on_device = [{k: torch.from_numpy(v).to(embedder.device) for k, v in b.items()} for b in batches]
    sync()
    parts["host-to-device copies"] = time.perf_counter() - t0
    with torch.inference_mode():
        t0 = time.perf_counter()
        outs = [embedder.model(dict(b))["sentence_embedding"] for b in on_device]
        parts[f"forward calls, host launch ({len(on_device)} batches)"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        sync()
        parts["forward calls, waiting for the GPU after launch"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        torch.cat(outs).float().cpu().numpy()
        parts["copy back"] = time.perf_counter() - t0
    widths = sorted({b["input_ids"].shape[1] for b in batches})
    print(f"  {len(batches)} batches of {size}, {len(widths)} distinct widths {widths[0]}..{widths[-1]}, "
          f"{int(tokens.lengths.sum())} tokens")
    return parts


def encode_timeline(embedder, texts: list[str]) -> str:
    """One whole encode, split into the main thread's time embedding chunks and the rest (waiting for tokens)."""
    spent = {"embed": 0.0}
    embed_chunk = embedder._embed_chunk

    def timed(tokens, out):
        t0 = time.perf_counter()
        embed_chunk(tokens, out)
        sync()  # charge the chunk's GPU work to it, not to the wait that follows
        spent["embed"] += time.perf_counter() - t0

    embedder._embed_chunk = timed
    try:
        t0 = time.perf_counter()
        embedder.encode(texts)
        total = time.perf_counter() - t0
    finally:
        del embedder._embed_chunk
    return (f"encode {total:.3f} s = embedding chunks {spent['embed']:.3f} s (GPU work included) + waiting for "
            f"tokens, copy back and checks {total - spent['embed']:.3f} s")


def profile_encode(embedder, texts: list[str], top: int) -> None:
    """torch.profiler over one whole encode: top operators by host time, then by GPU time."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with profile(activities=activities) as prof:
        embedder.encode(texts)
        sync()
    table = prof.key_averages()
    print(table.table(sort_by="cpu_time_total", row_limit=top, max_name_column_width=60))
    print(table.table(sort_by="self_cuda_time_total", row_limit=top // 2, max_name_column_width=60))


def main() -> None:
    """Time the parts of a cold encode, profile one, and compare attention implementations."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model-folder", type=Path, required=True)
    parser.add_argument("--random-weights", action="store_true")
    parser.add_argument("--articles", type=int, default=600)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()

    import torch

    folder = random_weights_copy(args.model_folder) if args.random_weights else args.model_folder
    spec = EmbedderSpec(name="minilm", kind="sentence_transformers", model_id="sentence-transformers/all-MiniLM-L6-v2",
                        path=str(folder))
    embedder = embedders.load_embedder(spec)
    embedder.encode(["warm-up sentence so that lazy initialisation is not timed"])
    texts = unique_texts(args.articles, args.seed)
    auto_model = embedder.model[0].auto_model
    print(f"device={embedder.device} ({torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu'}), "
          f"{len(texts)} unique texts, batch {embedder.batch_size}, attention {auto_model.config._attn_implementation}")

    first, rest = wall(lambda: embedder.encode(texts), args.repeats)
    print(f"Embedder.encode: first {first:.3f} s, then median {rest:.3f} s over {args.repeats - 1}")
    for round_no in (1, 2):
        print(f"parts, round {round_no}:")
        for name, seconds in forward_parts(embedder, texts).items():
            print(f"  {name:<55} {seconds:7.3f} s")
    for _ in range(2):
        print("timeline: " + encode_timeline(embedder, texts))
    profile_encode(embedder, texts, args.top)
    for implementation in ("eager", "sdpa"):
        try:
            auto_model.set_attn_implementation(implementation)
        except Exception as exc:  # noqa: BLE001 - a benchmark reports what it could not switch to
            print(f"attention {implementation}: cannot switch ({type(exc).__name__}: {exc})")
            continue
        first, rest = wall(lambda: embedder.encode(texts), args.repeats)
        print(f"Embedder.encode with attention {implementation}: first {first:.3f} s, then median {rest:.3f} s")
    with torch.nn.attention.sdpa_kernel([torch.nn.attention.SDPBackend.EFFICIENT_ATTENTION,
                                         torch.nn.attention.SDPBackend.MATH]):
        first, rest = wall(lambda: embedder.encode(texts), args.repeats)
    print(f"Embedder.encode with sdpa, cuDNN and flash off: first {first:.3f} s, then median {rest:.3f} s")
    torch.backends.cuda.matmul.allow_tf32 = True  # a measurement of what the float32 GEMMs cost, not a default
    first, rest = wall(lambda: embedder.encode(texts), args.repeats)
    print(f"Embedder.encode with TF32 matmuls: first {first:.3f} s, then median {rest:.3f} s; "
          + encode_timeline(embedder, texts))


if __name__ == "__main__":
    main()
