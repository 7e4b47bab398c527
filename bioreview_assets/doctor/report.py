"""Runs the doctor: the configs to check -> run specs, the machine's facts -> findings -> a printed report."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from bioreview_assets.config import env
from bioreview_assets.config.model import ModelConfig
from bioreview_assets.core.matcher_spec import MatcherSpec
from bioreview_assets.doctor.diagnose import Finding, RunSpec, blocking, diagnose_machine, diagnose_run
from bioreview_assets.doctor.facts import MachineFacts, probe
from bioreview_assets.doctor.plan import Architecture, MemoryPlan, memory_plan
from bioreview_assets.ml.kernels import LINEAR_ATTENTION_MODEL_TYPES

MARK = {"ok": "ok  ", "warn": "warn", "FAIL": "FAIL"}


def _base_config(cfg: ModelConfig) -> tuple[dict | None, str | None]:
    """(config.json of the base weights or None, why the weights are missing or None)."""
    from bioreview_assets.ml.models import ModelWeightsUnavailable, find_hub_weights

    if cfg.base.kind != "hub":
        return None, None  # built or converted here (tiny random, GGUF package) or served elsewhere (api)
    try:
        folder = find_hub_weights(cfg.name, cfg.base)
    except ModelWeightsUnavailable as err:
        return None, str(err).split(" Cause:")[0]  # the hub client's own wording adds nothing here
    return json.loads((Path(folder) / "config.json").read_text()), None


def run_spec(cfg: ModelConfig) -> RunSpec:
    """What the doctor needs to know of one model config (reads its base config.json when the weights are here)."""
    config, weights_error = _base_config(cfg)
    if cfg.base.kind == "gguf_package":
        import importlib.util

        if importlib.util.find_spec(cfg.base.package) is None:
            weights_error = f"python package {cfg.base.package} (the model's GGUF weights) is not installed"
    types = {config.get("model_type"), (config.get("text_config") or {}).get("model_type")} if config else set()
    linear = bool(types & LINEAR_ATTENTION_MODEL_TYPES) or (cfg.base.kind == "tiny_random"
                                                            and cfg.base.family == "qwen3_5")
    plan = MemoryPlan(None, None)
    if config is not None and cfg.gpu:
        plan = memory_plan(Architecture.from_config(config),
                           training=cfg.training.model_dump() if cfg.finetune else None,
                           generation=cfg.generation.model_dump(), prompt_tokens=cfg.prompt.token_budget)
    return RunSpec(model=cfg.name, gpu=cfg.gpu, finetune=cfg.finetune, quantization=cfg.training.quantization,
                   liger=cfg.training.liger, linear_attention=linear, generation_backend=cfg.generation.backend,
                   decode=cfg.generation.decode, weights_error=weights_error, plan=plan)


def embedder_findings(matchers: list[MatcherSpec]) -> list[Finding]:
    from bioreview_assets.ml.embedder_weights import weights_problem

    out = []
    for spec in matchers:
        name = spec.name
        if spec.embedder is None:
            continue
        problem = weights_problem(spec.embedder)
        out.append(Finding("FAIL", f"matcher {name}", problem, "install the embedder's package or set its path")
                   if problem else Finding("ok", f"matcher {name}", f"embedder {spec.embedder.name} weights found"))
    return out


def examine(models: list[ModelConfig], matchers: list[MatcherSpec],
            facts: MachineFacts | None = None) -> list[Finding]:
    """All findings for these model configs and the embedders of these matchers on this machine (probes the machine
    unless facts are given)."""
    runs = [run_spec(cfg) for cfg in models]
    if facts is None:
        want_vllm = any(run.gpu and run.generation_backend == "vllm" for run in runs)
        from bioreview_assets.ml.generation.vllm_backend import vllm_python

        facts = probe(storage_root=env.storage_root(), vllm_python=vllm_python(), want_vllm=want_vllm)
    findings = diagnose_machine(facts, runs)
    for run in runs:
        findings += diagnose_run(facts, run)
    return findings + embedder_findings(matchers)


def format_findings(findings: list[Finding]) -> str:
    lines = []
    for f in findings:
        lines.append(f"  [{MARK[f.level]}] {f.subject}: {f.message}")
        if f.fix and f.level != "ok":
            lines.append(f"         fix: {f.fix}")
    bad = blocking(findings)
    warns = sum(f.level == "warn" for f in findings)
    lines.append(f"doctor: {len(bad)} blocking problem(s), {warns} warning(s)"
                 + ("" if bad else ": ready to run"))
    return "\n".join(lines)


class PreflightFailed(RuntimeError):
    """A GPU step found a blocking problem on its pod before loading anything."""


def preflight(cfg: ModelConfig, *, training: bool) -> list[Finding]:
    """The doctor's checks for one GPU step of one model, run by the step itself at its start (a pod checks itself).

    Raises PreflightFailed with every blocking finding; CPU configs have nothing to check here. Training checks the
    training plan, generation the generation batch (and vLLM when the config uses it).
    """
    if not cfg.gpu:
        return []
    run = run_spec(cfg)
    if training:
        run = dataclasses.replace(run, plan=dataclasses.replace(run.plan, generation_gib=None),
                                  generation_backend="none")
    else:
        run = dataclasses.replace(run, finetune=False)
    from bioreview_assets.ml.generation.vllm_backend import vllm_python

    facts = probe(storage_root=env.storage_root(), vllm_python=vllm_python(),
                  want_vllm=run.generation_backend == "vllm")
    findings = diagnose_machine(facts, [run]) + diagnose_run(facts, run)
    if blocking(findings):
        step = "training" if training else "generation"
        raise PreflightFailed(f"{cfg.name} cannot start its {step} on this machine (bioreview doctor):\n"
                              + format_findings(findings))
    return findings
