"""Findings from the machine's facts and the runs it is about to do (pure: no probing, no imports of torch)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from bioreview_assets.core.quantization import FP8_MATMULS, INT8_MATMULS, NF4_STORED
from bioreview_assets.doctor.facts import MachineFacts
from bioreview_assets.doctor.plan import MemoryPlan

# fla-core 0.6.0 refuses its gated backward (chunk_bwd_dqkwg) on Hopper for Triton in [3.4.0, 3.7.1): fla #640.
FLA_BAD_TRITON = ((3, 4, 0), (3, 7, 1))
FP8_MIN_CAPABILITY = (8, 9)
INT8_MIN_CAPABILITY = (8, 0)  # ml/training/int8.py (kept here too: the doctor imports no torch)
# What the findings below ask a GPU machine to have installed (the GPU image must install each of them).
GPU_PACKAGES = ("bitsandbytes", "liger-kernel", "fla-core", "flash-linear-attention")
VLLM_INTERPRETER_VARIABLE = "BIOREVIEW_VLLM_PYTHON"
# Free memory a planned peak must leave: the estimate's error on the runs we measured was within 10%.
MEMORY_HEADROOM = 1.10

Level = Literal["ok", "warn", "FAIL"]


@dataclass(frozen=True)
class Finding:
    level: Level
    subject: str
    message: str
    fix: str = ""


@dataclass(frozen=True)
class RunSpec:
    """One model config as the doctor sees it: what it will run and with what."""

    model: str
    gpu: bool  # the config trains/generates on a GPU
    finetune: bool
    quantization: str
    liger: str
    linear_attention: bool
    generation_backend: str
    decode: str
    weights_error: str | None  # None: base weights found here
    plan: MemoryPlan = field(default_factory=lambda: MemoryPlan(None, None))


def _version_tuple(version: str | None) -> tuple[int, ...]:
    if not version:
        return ()
    parts = []
    for piece in version.split("+")[0].split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def fla_guard_fires(facts: MachineFacts) -> bool:
    """Whether fla-core will refuse Qwen3.5's gated backward on this GPU and Triton."""
    if facts.gpu is None or facts.gpu.capability[0] != 9 or facts.packages.get("fla-core") is None:
        return False
    low, high = FLA_BAD_TRITON
    return low <= _version_tuple(facts.triton)[:3] < high


def diagnose_machine(facts: MachineFacts, runs: list[RunSpec]) -> list[Finding]:
    """Findings about the machine itself (torch, Triton, storage, vLLM) given what the runs need."""
    out: list[Finding] = []
    wants_gpu = any(run.gpu for run in runs)
    if facts.torch is None:
        out.append(Finding("FAIL", "torch", "torch is not installed", "install the project's locked stack (make venv)"))
    gpu = facts.gpu
    if gpu is None:
        level: Level = "FAIL" if wants_gpu else "ok"
        names = ", ".join(run.model for run in runs if run.gpu)
        out.append(Finding(level, "GPU", "no CUDA GPU visible" + (f": {names} need one" if names else " (CPU run)"),
                           "run on a GPU node (nvidia.com/gpu limit), or pick CPU configs" if names else ""))
    else:
        out.append(Finding("ok", "GPU", f"{gpu.name}, compute capability {gpu.capability[0]}.{gpu.capability[1]}, "
                                        f"{gpu.free_gib:.1f} of {gpu.total_gib:.1f} GiB free, CUDA {facts.cuda_build}"))
    if gpu is not None and facts.triton_expected_by_torch and facts.triton != facts.triton_expected_by_torch:
        compiled = [run.model for run in runs if run.decode == "compiled"]
        out.append(Finding(
            "FAIL" if compiled else "warn", "triton",
            f"triton {facts.triton} is installed; torch {facts.torch} was built for triton "
            f"{facts.triton_expected_by_torch}" + (f" and {', '.join(compiled)} compile decode steps with it"
                                                   if compiled else
                                                   ": torch.compile may fail (the training kernels call Triton "
                                                   "directly and are tested on it)"),
            f"pip install triton=={facts.triton_expected_by_torch}, or a torch whose pin is {facts.triton}"))
    if facts.storage_error:
        out.append(Finding("FAIL", "storage", facts.storage_error,
                           "point BIOREVIEW_STORAGE at a writable folder or volume"))
    else:
        out.append(Finding("ok", "storage", "storage root is writable"))
    if any(run.generation_backend == "vllm" and run.gpu for run in runs):
        if facts.vllm:
            models = ", ".join(run.model for run in runs if run.generation_backend == "vllm")
            out.append(Finding("FAIL" if gpu is not None else "warn", "vllm", f"{facts.vllm} ({models} generate "
                               "with vLLM)", "set BIOREVIEW_VLLM_PYTHON to the vLLM venv's python (the GPU image's "
                               "/opt/vllm/bin/python), or generation.backend: transformers"))
        else:
            out.append(Finding("ok", "vllm", "a vLLM interpreter answers"))
    return out


def diagnose_run(facts: MachineFacts, run: RunSpec) -> list[Finding]:
    """Findings about one model config on this machine."""
    out: list[Finding] = []
    subject = run.model
    if run.weights_error:
        out.append(Finding("FAIL", subject, run.weights_error,
                           "put the weights where the config says (base.path or the hub cache)"))
    gpu = facts.gpu
    if not run.gpu or gpu is None:
        return out  # the machine-level GPU finding already says what is missing
    if run.finetune and run.quantization in FP8_MATMULS and tuple(gpu.capability) < FP8_MIN_CAPABILITY:
        out.append(Finding("FAIL", subject, f"training.quantization: {run.quantization} multiplies in FP8, which "
                           f"{gpu.name} (compute capability {gpu.capability[0]}.{gpu.capability[1]}) cannot",
                           "quantization: nf4 on this GPU (FP8 needs 8.9+: Ada, Hopper)"))
    if run.finetune and run.quantization in INT8_MATMULS and tuple(gpu.capability) < INT8_MIN_CAPABILITY:
        out.append(Finding("FAIL", subject, f"training.quantization: {run.quantization} multiplies in INT8 on "
                           f"Ampere-or-newer tensor cores; {gpu.name} is compute capability "
                           f"{gpu.capability[0]}.{gpu.capability[1]}", "quantization: nf4 on this GPU (INT8 path: 8.0+)"))
    if run.finetune and run.quantization in NF4_STORED and facts.bitsandbytes_cuda:
        out.append(Finding("FAIL", subject, f"{run.quantization} stores the base in NF4 but {facts.bitsandbytes_cuda}",
                           "install bitsandbytes built for this CUDA (the locked version ships CUDA 11.8-13.2)"))
    if run.finetune and run.liger != "off" and facts.packages.get("liger-kernel") is None:
        out.append(Finding("FAIL" if run.liger == "on" else "warn", subject,
                           f"training.liger: {run.liger} but liger-kernel is not installed: the fused RMSNorm/RoPE/"
                           "SwiGLU kernels are off", "pip install the `gpu` extra (liger-kernel)"))
    if run.linear_attention:
        if facts.packages.get("fla-core") is None:
            out.append(Finding("FAIL", subject, "linear-attention layers and no flash-linear-attention: transformers "
                               "would run its fp32 torch loop (about 10x slower training, 100x slower generation)",
                               "pip install the `gpu` extra (flash-linear-attention, fla-core)"))
        elif run.finetune and fla_guard_fires(facts):
            out.append(Finding("FAIL", subject, f"fla-core refuses its gated backward on Hopper with triton "
                               f"{facts.triton} (fla #640): training would stop at the first backward",
                               "pip install triton==3.7.1 (the pin of torch 2.12.1 and 2.13)"))
    for what, planned in (("training", run.plan.training_gib if run.finetune else None),
                          ("generation batch", run.plan.generation_gib)):
        if planned is None:
            continue
        if planned * MEMORY_HEADROOM > gpu.free_gib:
            out.append(Finding("FAIL", subject, f"{what} is planned at {planned:.1f} GiB (+10% headroom) but "
                               f"{gpu.free_gib:.1f} GiB are free on {gpu.name}",
                               "lower generation.batch_size / training.selective_checkpointing_layers, turn on "
                               "training.activation_offloading, or ask for a larger GPU"))
        else:
            out.append(Finding("ok", subject, f"{what} planned at {planned:.1f} GiB of {gpu.free_gib:.1f} free"))
    for note in run.plan.notes:
        out.append(Finding("warn", subject, note))
    return out


def blocking(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.level == "FAIL"]
