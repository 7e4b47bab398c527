"""How many torch threads a CPU run uses, and how long the demo will take here, from a calibration of a few seconds.

Measured on a 2-core Intel Xeon (AVX-512 without avx512_bf16) shared with other work (load 5-10,
benchmarks/results/demo_cpu_profile.txt): a decode step of the demo's batch of 30 took 0.4-0.7 s at one torch thread
and 4.7-5.9 s at two. Each of the ~211 small matmuls of a decode step ends in a barrier of the thread pool, and on
cores that other processes also want, one of the two threads is often descheduled there for a whole time slice. On
an idle machine two threads win instead. So the choice is measured, not assumed: the same decode-shaped and
training-shaped matmuls at 1..N threads, the fastest kept. The thread count changes only the order of float
reductions (like batch size, it is not part of a generation's key); it is said in the demo's output and in the
generations' backend metadata (torch_threads).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

# The demo's shapes (SmolLM2-135M: hidden 576, MLP 1536, 30 layers, vocabulary 49,152): a decode step of a batch of
# 30 is ~211 projections of 30 rows plus the LM head; a training row is ~750 tokens.
HIDDEN, MLP, VOCAB = 576, 1536, 49152
DECODE_ROWS, TRAIN_ROWS = 30, 512


@dataclass(frozen=True)
class Calibration:
    threads: int  # the torch thread count chosen
    decode_ms: dict[int, float]  # threads -> ms of one decode-shaped probe (projections + LM head, batch 30)
    train_gflops: dict[int, float]  # threads -> fp32 GFLOP/s of a training-shaped matmul

    def explain(self) -> str:
        per = ", ".join(f"{t} thread{'s' if t > 1 else ''}: decode probe {self.decode_ms[t]:.0f} ms, "
                        f"{self.train_gflops[t]:.0f} GFLOP/s" for t in sorted(self.decode_ms))
        return f"{self.threads} torch thread(s) ({per}; load average {os.getloadavg()[0]:.1f})"


def _probe(threads: int, dtype) -> tuple[float, float]:
    import torch

    torch.set_num_threads(threads)
    x, w = torch.randn(DECODE_ROWS, HIDDEN, dtype=dtype), torch.randn(MLP, HIDDEN, dtype=dtype)
    head = torch.randn(VOCAB, HIDDEN, dtype=dtype)
    big = torch.randn(TRAIN_ROWS, HIDDEN, dtype=dtype)

    def decode():  # 1/10 of a decode step's projections and its LM head
        for _ in range(21):
            torch.nn.functional.linear(x, w)
        torch.nn.functional.linear(x, head)

    def train():
        torch.nn.functional.linear(big, w)

    decode()
    best_decode = min(_time(decode) for _ in range(3))
    best_train = min(_time(train) for _ in range(3))
    return best_decode * 1e3, 2 * TRAIN_ROWS * HIDDEN * MLP / best_train / 1e9


def _time(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def calibrate_threads(max_threads: int | None = None, dtype=None, rounds: int = 3) -> Calibration:
    """Time the probes at 1, 2 and max_threads torch threads in the dtype the run computes in (fp32 unless given),
    interleaved over `rounds` rounds (a load that comes and goes hits every count alike), medians kept; choose the
    fastest decode. About a second a round on 2 cores."""
    import statistics

    import torch

    # Not torch.get_num_threads(): an earlier calibration may have lowered it. torch's own default is the cores
    # this process may use.
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    max_threads = max_threads or cores
    counts = sorted({1, max_threads} | ({2} if max_threads >= 2 else set()))
    samples: dict[int, list[tuple[float, float]]] = {t: [] for t in counts}
    for _ in range(rounds):
        for threads in counts:
            samples[threads].append(_probe(threads, dtype or torch.float32))
    decode_ms = {t: statistics.median(d for d, _ in samples[t]) for t in counts}
    gflops = {t: statistics.median(g for _, g in samples[t]) for t in counts}
    # Decode steps are most of the demo's time (see estimate_demo_minutes), so they decide.
    chosen = min(decode_ms, key=decode_ms.get)
    torch.set_num_threads(chosen)
    return Calibration(chosen, decode_ms, gflops)


@dataclass(frozen=True)
class DemoEstimate:
    training_min: float
    generation_min: float
    other_min: float
    dtype: str

    @property
    def total_min(self) -> float:
        return self.training_min + self.generation_min + self.other_min


# The share of the training-shaped matmul probe's rate that a whole demo training step reaches (LM head and loss
# over 49k logits, attention, norms, the optimizer and the trainer around the matmuls), measured from fresh-clone
# demos on 2 cores of an Intel Xeon at one torch thread, 2026-12-08 (benchmarks/results/demo_cpu_profile.txt):
# float32: 64 steps in 800.7 s against a 194 GFLOP/s probe (0.24); bfloat16 (avx512_bf16): 443.9 s against a
# 1,156 GFLOP/s probe (0.07). Without them the estimate put training at 3.2 and 0.5 minutes. Both were measured
# with gradient checkpointing, which the demo's model has turned off since (25% less time a step): the estimate
# leans high, as an 'at most' should.
TRAIN_EFFICIENCY = {"float32": 0.24, "bfloat16": 0.07}


def estimate_demo_minutes(cal: Calibration, *, train_rows: int, train_tokens_per_row: int, generation_runs: int,
                          prompt_tokens: int, articles: int, max_new_tokens: int, dtype: str) -> DemoEstimate:
    """A bound from the calibration: every generation batch decoding to max_new_tokens (the base model does).

    Training: forward + backward of a 135M model ~ 3 x 2 x 135M FLOP per token at the calibrated matmul rate (of the
    dtype the run computes in, the one calibrate_threads was given) times the share of it a whole training step
    reaches (TRAIN_EFFICIENCY). Generation: prefill at the matmul rate, each decode step ten decode probes (the probe
    is a tenth of a step's matmuls) plus 30% for attention, norms and the logits processors. Other: sample, corpus,
    merge, embeddings, scoring, about 2 minutes on 2 cores.
    """
    params = 135e6
    rate = cal.train_gflops[cal.threads] * 1e9
    training = train_rows * 3 * 2 * params * train_tokens_per_row / (rate * TRAIN_EFFICIENCY[dtype])
    step = cal.decode_ms[cal.threads] / 1e3 * 10 * 1.3
    generation = generation_runs * (2 * params * prompt_tokens * articles / rate + max_new_tokens * step)
    return DemoEstimate(training / 60, generation / 60, 2.0, dtype)
