"""Data-parallel generation on one pod: one worker process per GPU, each on a deterministic shard of the articles.

Sharding rule (transformers): the parent plans the batches exactly as one process would (prompts longest first,
cut every batch_size: transformers_backend.plan_batches) and deals them round-robin, batch i to shard i mod N.
Every shard therefore runs batches that one process would have run, with the same articles and the same padding,
so greedy outputs are identical to one process on the same kind of device (and seeded sampling too: the backend
seeds each batch). Round-robin over a longest-first plan also balances the shards (neighbouring batches have
similar lengths) and starts every GPU on its longest batch, where an out-of-memory shows at once. Contiguous
blocks would give GPU 0 all the longest prompts; article index mod N would change every batch and its padding.

Results: each worker writes one JSON line per finished article to its own file (flushed per line); the parent
reads those files as they grow and hands every row to the runner's on_result. The parent is therefore the one
writer of the partition's generation log: no two processes ever append to it, and the runner commits every few
rows as it does for one process. Resume needs nothing new: the runner skips what the log holds, whichever shard
generated it, and only the pending articles are planned and dealt.

Failures: a worker that exits non-zero, is killed, or exits without all its articles fails its shard. The other
shards run to their end (their articles are independent and land in the log, so a re-run does not repeat them),
then ShardFailed names the failed shard(s) with the exit status and the tail of each one's log. If the parent is
interrupted (or on_result raises) it stops every worker before re-raising; a worker whose parent vanished exits
by itself (_parent_watch.py).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

import bioreview_assets
from bioreview_assets.ml.generation.base import GenerationRequest, GenerationResult, OnResult, SamplingSpec

log = logging.getLogger(__name__)

T = TypeVar("T")
PACKAGE_PARENT = Path(bioreview_assets.__file__).resolve().parents[1]  # a worker imports this very copy
TRANSFORMERS_WORKER = "bioreview_assets.ml.generation._transformers_shard"
SHARDING_RULE = "longest-first batches of batch_size (one process's plan), batch i -> shard i mod gpus"
LOG_TAIL_CHARS = 3000


class ShardFailed(RuntimeError):
    """A shard's worker exited before returning all its articles; the message names the shard and its error."""


def deal(units: Sequence[T], shards: int) -> list[list[T]]:
    """Round-robin: unit i goes to shard i mod shards (units are batches, or single articles for vLLM)."""
    if shards < 1:
        raise ValueError(f"shards must be >= 1, got {shards}")
    return [list(units[rank::shards]) for rank in range(shards)]


def shard_devices(gpus: int) -> list[str | None]:
    """The CUDA device each shard gets (as a CUDA_VISIBLE_DEVICES value), or None per shard on a machine without CUDA.

    The parent's own visible devices are dealt one per shard, so a pod whose runtime set CUDA_VISIBLE_DEVICES keeps
    its meaning. Asking for more GPUs than are visible is an error, never a quiet doubling-up on one GPU.
    """
    import torch

    if not torch.cuda.is_available():
        return [None] * gpus
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [d.strip() for d in visible.split(",") if d.strip()] if visible else [
        str(i) for i in range(torch.cuda.device_count())]
    if len(ids) < gpus:
        raise ValueError(f"generation.gpus={gpus} but this process sees {len(ids)} CUDA device(s) ({ids}): "
                         f"run on a pod with {gpus} GPUs or lower generation.gpus")
    return ids[:gpus]


def cpu_threads_per_shard(shards: int) -> int:
    """CPU shards split this process's cores between them (tests and development run N CPU processes)."""
    return max(1, len(os.sched_getaffinity(0)) // shards)


def shard_env(device: str | None, shards: int, base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment of one worker: only its GPU visible, or no GPU and a share of the cores on a CPU machine."""
    env = dict(os.environ if base is None else base)
    if device is None:
        env["CUDA_VISIBLE_DEVICES"] = ""
        env["OMP_NUM_THREADS"] = str(cpu_threads_per_shard(shards))
    else:
        env["CUDA_VISIBLE_DEVICES"] = device
    return env


@dataclass
class ShardCommand:
    """One worker to start: its command line and environment, the file it writes results to, its articles."""

    rank: int
    argv: list[str]
    env: dict[str, str]
    results: Path
    log: Path
    article_ids: list[str]
    device: str | None
    seen: set[str] = field(default_factory=set)
    exit_code: int | None = None

    def __post_init__(self) -> None:
        self.wanted = frozenset(self.article_ids)


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "did not finish"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def _tail(path: Path) -> str:
    try:
        return path.read_text(errors="replace")[-LOG_TAIL_CHARS:]
    except OSError as err:
        return f"(log unreadable: {err})"


class _LineReader:
    """Complete JSON lines appended to a file since the last read; a half-written last line waits for its end."""

    def __init__(self, path: Path):
        self.path = path
        self.offset = 0

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        with open(self.path, "rb") as handle:
            handle.seek(self.offset)
            chunk = handle.read()
        end = chunk.rfind(b"\n")
        if end < 0:
            return []
        self.offset += end + 1
        rows = []
        # Split on b"\n" only: a text may hold U+2028, which str.splitlines() would treat as a line break.
        for line in chunk[:end].split(b"\n"):
            if line.strip():
                rows.append(json.loads(line.decode("utf-8")))
        return rows


def run_shards(commands: Sequence[ShardCommand], on_row: Callable[[ShardCommand, dict[str, Any]], None], *,
               what: str = "generation", poll_s: float = 0.2, stop_grace_s: float = 10.0) -> None:
    """Start every worker, feed their rows to on_row as they arrive, and raise ShardFailed if any shard failed.

    Rows of kind "result" are checked here (an article of this shard, once) before on_row sees them; other kinds
    (a worker's "facts") pass through.
    """
    procs: list[subprocess.Popen] = []
    handles = []
    try:
        for command in commands:
            handle = open(command.log, "w")
            handles.append(handle)
            # stdin is a pipe the parent never writes: the worker exits when it closes (_parent_watch.py).
            procs.append(subprocess.Popen(command.argv, env=command.env, stdin=subprocess.PIPE, stdout=handle,
                                          stderr=subprocess.STDOUT))
            log.info("%s shard %d/%d started (pid %d, device %s, %d articles)", what, command.rank, len(commands),
                     procs[-1].pid, command.device or "cpu", len(command.article_ids))
        readers = [_LineReader(command.results) for command in commands]
        running = set(range(len(commands)))
        while running:
            for index in sorted(running):
                code = procs[index].poll()  # before reading: rows written before the exit are all on disk then
                for row in readers[index].read():
                    _check_result(commands[index], row)
                    on_row(commands[index], row)
                if code is not None:
                    commands[index].exit_code = code
                    running.discard(index)
            if running:
                time.sleep(poll_s)
    finally:
        _stop(procs, stop_grace_s)
        for handle in handles:
            handle.close()
    failures = []
    for command in commands:
        missing = [a for a in command.article_ids if a not in command.seen]
        if command.exit_code != 0 or missing:
            failures.append(
                f"{what} shard {command.rank} (device {command.device or 'cpu'}; {len(commands)} shards started) "
                f"{_describe_exit(command.exit_code)} after {len(command.article_ids) - len(missing)} of its "
                f"{len(command.article_ids)} articles; the end of its log:\n{_tail(command.log)}")
    if failures:
        raise ShardFailed("\n\n".join(failures))


def _check_result(command: ShardCommand, row: dict[str, Any]) -> None:
    if row.get("kind") != "result":
        return
    article_id = row.get("article_id")
    if article_id not in command.wanted or article_id in command.seen:
        raise RuntimeError(f"shard {command.rank} returned an article it was not given, or twice: {article_id!r}")
    command.seen.add(article_id)


def _stop(procs: Sequence[subprocess.Popen], grace_s: float) -> None:
    """Stop workers still running (after an interruption of the parent), each by its own process."""
    alive = [p for p in procs if p.poll() is None]
    for proc in alive:
        proc.terminate()
    deadline = time.monotonic() + grace_s
    for proc in alive:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for proc in procs:
        if proc.stdin:
            proc.stdin.close()


def worker_pythonpath(env: dict[str, str]) -> str:
    """PYTHONPATH that makes a worker import the same bioreview_assets as this process."""
    return os.pathsep.join([str(PACKAGE_PARENT), *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]])


class ShardedTransformersBackend:
    """The transformers backend over several GPUs of one machine: one worker per GPU, batches dealt round-robin."""

    name = "transformers"

    def __init__(
        self,
        model_dir: Path,
        adapter_dir: Path | None,
        sampling: SamplingSpec,
        *,
        gpus: int,
        batch_size: int = 8,
        enable_thinking: bool = False,
        dtype: str | None = None,
        generate_kwargs: dict[str, Any] | None = None,
        compiled_decode: bool = False,
        python: Path | None = None,
    ):
        if gpus < 2:
            raise ValueError(f"ShardedTransformersBackend needs gpus >= 2 (one GPU is TransformersBackend), got {gpus}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model_dir = Path(model_dir)
        self.adapter_dir = Path(adapter_dir) if adapter_dir else None
        self.sampling = sampling
        self.gpus = gpus
        self.batch_size = batch_size
        self.enable_thinking = enable_thinking
        self.dtype = dtype
        self.generate_kwargs = dict(generate_kwargs or {})
        self.compiled_decode = compiled_decode
        self.python = Path(python) if python else Path(sys.executable)
        self.shards: list[dict[str, Any]] = []  # per started shard: rank, device, articles, the worker's describe()

    def numerics(self) -> dict[str, Any]:
        """As TransformersBackend.numerics() of one GPU process (every worker loads that way): a partition keeps its
        generation key, and so its resume log, across GPU counts."""
        from bioreview_assets.ml.generation.transformers_backend import CUDA_GENERATE_DEFAULTS

        cache = self.generate_kwargs.get("cache_implementation", CUDA_GENERATE_DEFAULTS["cache_implementation"])
        return {"device": "cuda", "dtype": self.dtype or "bfloat16", "kv_cache": str(cache)}

    def describe(self) -> dict[str, Any]:
        first = next((s["worker"] for s in self.shards if s.get("worker")), {})
        return {
            **first,  # device, dtype, versions, speed kernels of a worker (all workers load the same way)
            "backend": self.name,
            "model_dir": str(self.model_dir),
            "adapter_dir": str(self.adapter_dir) if self.adapter_dir else None,
            "batch_size": self.batch_size,
            "enable_thinking": self.enable_thinking,
            "sampling": self.sampling.describe(),
            "parallelism": {"kind": "data", "gpus": self.gpus, "rule": SHARDING_RULE,
                            "shards": [{k: v for k, v in s.items() if k != "worker"} for s in self.shards]},
        }

    def generate(self, requests: Sequence[GenerationRequest], on_result: OnResult) -> None:
        from bioreview_assets.ml.generation.transformers_backend import (
            load_generation_tokenizer,
            plan_batches,
            prepare_prompts,
        )

        if not requests:
            return
        tokenizer = load_generation_tokenizer(self.model_dir)
        prompts = prepare_prompts(tokenizer, requests, self.enable_thinking, on_result)
        shards = deal(plan_batches(prompts, self.batch_size), self.gpus)
        devices = shard_devices(self.gpus)
        spec = {
            "model_dir": str(self.model_dir),
            "adapter_dir": str(self.adapter_dir) if self.adapter_dir else None,
            "sampling": self.sampling.describe() | {"top_p": self.sampling.top_p},
            "batch_size": self.batch_size,
            "enable_thinking": self.enable_thinking,
            "dtype": self.dtype,
            "generate_kwargs": self.generate_kwargs,
            "compiled_decode": self.compiled_decode,
        }
        self.shards = []
        with tempfile.TemporaryDirectory(prefix="bioreview-shards-") as tmp:
            folder = Path(tmp)
            commands = []
            for rank, (batches, device) in enumerate(zip(shards, devices)):
                if not batches:  # fewer batches than GPUs: nothing to start on this one
                    continue
                paths = {name: folder / f"shard{rank}.{name}" for name in ("spec.json", "batches.jsonl",
                                                                         "results.jsonl", "log")}
                threads = cpu_threads_per_shard(self.gpus) if device is None else None
                paths["spec.json"].write_text(json.dumps({**spec, "rank": rank, "threads": threads}))
                paths["batches.jsonl"].write_text("".join(
                    json.dumps([{"article_id": p.article_id, "ids": p.ids} for p in batch]) + "\n"
                    for batch in batches))
                env = shard_env(device, self.gpus)
                env["PYTHONPATH"] = worker_pythonpath(env)
                ids = [p.article_id for batch in batches for p in batch]
                commands.append(ShardCommand(
                    rank=rank, device=device, env=env, results=paths["results.jsonl"], log=paths["log"],
                    article_ids=ids,
                    argv=[str(self.python), "-m", TRANSFORMERS_WORKER, "--spec", str(paths["spec.json"]),
                          "--batches", str(paths["batches.jsonl"]), "--results", str(paths["results.jsonl"])]))
                self.shards.append({"rank": rank, "device": device or "cpu", "articles": len(ids),
                                    "batches": len(batches)})
            by_rank = {s["rank"]: s for s in self.shards}

            def on_row(command: ShardCommand, row: dict[str, Any]) -> None:
                if row.pop("kind") == "facts":
                    by_rank[command.rank]["worker"] = row
                else:
                    on_result(GenerationResult(**row))

            run_shards(commands, on_row)
