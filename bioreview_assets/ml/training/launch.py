"""One adapter trained data-parallel on N GPUs of one pod: the launcher, and the torchrun agent it starts.

train_adapter, when training.gpus > 1, in the step's own process:
  1. the prompt-hash guard and the resume point (run identity, library versions, world size), once, before any rank;
  then `train_on_ranks`:
  2. a spec for the ranks (config, corpus rows, resume point, tracking) in a temporary folder;
  3. torchrun's own launcher (`torch.distributed.run`: standalone rendezvous on this host, N ranks, no restarts),
     through this module's `__main__`, which writes the ranks' failures as JSON when one fails;
     every rank runs `python -m bioreview_assets.ml.training.worker <spec.json>`, i.e. recipe.run_training;
  4. the ranks' log records and rank 0's progress events are relayed here as they come (Dagster captures both);
  5. a failure raises DistributedTrainingError naming the rank that failed and its error. Checkpoints up to the last
     complete one stay, so re-materialising resumes (the resume point guards a change of training.gpus).
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
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bioreview_assets.ml.training.checkpoints import ResumePoint
    from bioreview_assets.ml.training.monitoring import Progress
    from bioreview_assets.config.model import ModelConfig
    from bioreview_assets.config.project import TrackingConfig

log = logging.getLogger(__name__)

AGENT = "bioreview_assets.ml.training.launch"  # this module, run by `python -m` (its __name__ is then __main__)
WORKER = "bioreview_assets.ml.training.worker"
LOG_PREFIX = "BIOREVIEW_LOG "  # a rank's log record, as JSON, on its stdout (worker.RelayHandler)
EVENT_PREFIX = "BIOREVIEW_EVENT "  # a progress event of rank 0, as JSON
PACKAGE_ROOT = Path(__file__).resolve().parents[3]  # the folder holding bioreview_assets/
# Errors a rank raises because another rank went away first: never named as the cause while another failure exists.
_PEER_ERRORS = ("Connection closed by peer", "Connection reset by peer", "DistBackendError", "Broken pipe",
                "NCCL communicator was aborted", "ProcessGroupNCCL", "ProcessGroupGloo")


@dataclass(frozen=True)
class RankFault:
    """Test-only fault injection through the spec: `rank` exits with `exit_code` after optimizer step `after_step`."""

    rank: int
    after_step: int
    exit_code: int = 17


@dataclass(frozen=True)
class RankFailure:
    """What torchrun saw of one failed rank."""

    rank: int
    local_rank: int
    exitcode: int
    message: str  # the exception ("ValueError: ...") or how the process ended
    traceback: str | None  # None: the process ended without a Python exception (killed, os._exit, native crash)
    timestamp: int

    @property
    def from_peer(self) -> bool:
        return any(marker in self.message for marker in _PEER_ERRORS)

    @property
    def secondary(self) -> bool:
        """Failed because another rank did: it lost its peers, or torchrun stopped it (SIGTERM) after a failure."""
        return self.from_peer or self.exitcode == -signal.SIGTERM

    def describe(self) -> str:
        if self.traceback is None:
            return f"rank {self.rank} (local rank {self.local_rank}) {self.message}"
        return f"rank {self.rank} (local rank {self.local_rank}) raised {self.message}"


class DistributedTrainingError(RuntimeError):
    """A rank of a multi-GPU training failed; `failures` lists every failed rank, the cause first."""

    def __init__(self, message: str, failures: list[RankFailure]):
        super().__init__(message)
        self.failures = failures

    @property
    def rank(self) -> int | None:
        return self.failures[0].rank if self.failures else None


# ------------------------------------------------------------------------------------------------- the launcher


def train_on_ranks(
    cfg: ModelConfig,
    train_rows: list[dict],
    val_rows: list[dict],
    output_dir: Path,
    *,
    identity: dict,
    versions: dict,
    resume: ResumePoint,
    progress: Progress | None = None,
    tracking: TrackingConfig | None = None,
    started: float | None = None,
    fault: RankFault | None = None,
) -> dict:
    """Run recipe.run_training on training.gpus ranks from `resume` (train_adapter took it); rank 0's metadata."""
    output_dir = Path(output_dir)
    world_size = cfg.training.gpus
    check_devices(world_size, cfg.training.strategy)
    # On the pod's local disk, never under output_dir: the adapter folder is published as it is.
    with tempfile.TemporaryDirectory(prefix="bioreview-ranks-") as tmp:
        folder = Path(tmp)
        (folder / "rows.json").write_text(json.dumps({"train": train_rows, "val": val_rows}))
        spec = {
            "config": cfg.model_dump(mode="json"),
            "rows": str(folder / "rows.json"),
            "output_dir": str(output_dir.resolve()),
            "identity": identity,
            "versions": versions,
            "resume": resume.to_json(),
            "tracking": tracking.model_dump(mode="json") if tracking is not None else None,
            "started": started or time.time(),
            "fault": fault.__dict__ if fault else None,
        }
        (folder / "spec.json").write_text(json.dumps(spec))
        log.info("training %s on %d ranks (%s)%s", cfg.name, world_size, cfg.training.strategy,
                 f", resuming from step {resume.step}" if resume.path else "")
        run_ranks(world_size, folder / "spec.json", folder / "failures.json", rank_environment(cfg), progress)
    from bioreview_assets.store.records import AdapterMeta

    if not AdapterMeta.path(output_dir).exists():
        raise RuntimeError(f"every rank exited 0 but rank 0 wrote no {AdapterMeta.path(output_dir)}")
    return AdapterMeta.read(output_dir)


def check_devices(world_size: int, strategy: str = "ddp") -> None:
    """N ranks need N GPUs where there is CUDA (without CUDA the ranks are CPU processes, as in the tests); FSDP
    needs GPUs."""
    import torch

    if strategy == "fsdp" and not torch.cuda.is_available():
        raise RuntimeError("training.strategy=fsdp needs CUDA GPUs: accelerate shards with FSDP on GPUs only (on CPU "
                           "ranks the same settings would silently train plain DDP); use strategy: ddp here")
    if torch.cuda.is_available() and torch.cuda.device_count() < world_size:
        raise RuntimeError(f"training.gpus={world_size} but this machine shows {torch.cuda.device_count()} CUDA "
                           "device(s): the step's pod must ask for as many GPUs (k8s_execution.pod_gpus)")


def torchrun_command(world_size: int, spec: Path, failures: Path, *, module: str = WORKER) -> list[str]:
    """torchrun (this module's agent wrapper around torch.distributed.run) on one host, `module` on every rank."""
    return [sys.executable, "-m", AGENT, str(failures),
            "--standalone", "--nnodes=1", f"--nproc-per-node={world_size}",
            # A failed rank fails the step: Dagster's retry (Kubernetes) or a re-materialisation resumes it from
            # the last checkpoint, with the launcher's guards, rather than torchrun restarting every rank blindly.
            "--max-restarts=0",
            "-m", module, str(spec)]


def rank_environment(cfg: ModelConfig | None = None, world_size: int | None = None) -> dict[str, str]:
    """The ranks' environment: this one plus unbuffered output, NVLink multicast off and the threads per rank."""
    world_size = world_size or (cfg.training.gpus if cfg else 1)
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"  # the log relay streams lines as they come
    # NVLink multicast (NVLS) off in NCCL, PyTorch's symmetric memory and NVSHMEM: on shared multi-GPU hosts a
    # program using it can take the host's GPUs out of service; the all-reduce of LoRA gradients does not need it.
    env.update({"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", "NVSHMEM_DISABLE_NVLS": "1"})
    if "OMP_NUM_THREADS" not in env:  # torchrun would set 1; the CPU ranks of the tests share the cores instead
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        env["OMP_NUM_THREADS"] = str(max(1, cores // world_size))
    # The ranks import the same bioreview_assets as this process, installed or not.
    env["PYTHONPATH"] = os.pathsep.join([str(PACKAGE_ROOT), *filter(None, [env.get("PYTHONPATH")])])
    if cfg is not None and cfg.training.strategy == "fsdp":
        # transformers' rank-0-only loading of an unquantised base reads these before the trainer exists.
        env.update({"ACCELERATE_USE_FSDP": "true", "FSDP_CPU_RAM_EFFICIENT_LOADING": "true"})
    return env


def run_ranks(world_size: int, spec: Path, failures: Path, env: dict[str, str],
              progress: Progress | None = None, *, module: str = WORKER) -> None:
    """Run torchrun with `world_size` ranks of `module`, relaying their output; DistributedTrainingError on failure."""
    command = torchrun_command(world_size, spec, failures, module=module)
    log.info("launching %s", " ".join(command))
    tail: deque[str] = deque(maxlen=40)  # torchrun's own lines, for an error without a failures file
    # A process group of its own: an interrupted step (Dagster's termination) stops every rank with it.
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                               start_new_session=True, bufsize=1)
    try:
        for line in process.stdout:
            relay(line.rstrip("\n"), progress, tail)
        returncode = process.wait()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    if returncode != 0:
        raise failure_error(world_size, failures, returncode, list(tail))


def relay(line: str, progress: Progress | None, tail: deque) -> None:
    """One output line of the ranks: a log record re-logged here, a progress event forwarded, anything else logged."""
    try:
        if line.startswith(LOG_PREFIX):
            record = json.loads(line[len(LOG_PREFIX):])
            prefix = "" if record["rank"] == 0 else f"[rank {record['rank']}] "
            logging.getLogger(record["name"]).log(record["level"], "%s%s", prefix, record["message"])
            return
        if line.startswith(EVENT_PREFIX):
            event = json.loads(line[len(EVENT_PREFIX):])
            if progress is not None:
                progress(event)
            return
    except (ValueError, KeyError):
        # Two ranks writing more than a pipe buffer at once can interleave their lines: keep the text as it came.
        pass
    if line.strip():
        tail.append(line)
        log.info("torchrun: %s", line)


def failure_error(world_size: int, failures_file: Path, returncode: int, tail: list[str]) -> DistributedTrainingError:
    """The error of a failed torchrun: the failing rank first (a rank that only lost its peers comes after)."""
    if not failures_file.exists():
        return DistributedTrainingError(
            f"torchrun exited {returncode} before any rank reported a failure; its last lines:\n" + "\n".join(tail), [])
    failures = [RankFailure(**entry) for entry in json.loads(failures_file.read_text())]
    # Timestamps are whole seconds: the rank torchrun stopped after the failure often shares the failed rank's.
    failures.sort(key=lambda f: (f.secondary, f.timestamp, f.rank))
    cause = failures[0]
    lines = [f"training failed on rank {cause.rank} of {world_size}: {cause.describe()}"]
    if cause.traceback:
        lines.append(cause.traceback.rstrip())
    if len(failures) > 1:
        lines.append("then: " + "; ".join(f.describe() for f in failures[1:]))
    lines.append("complete checkpoints are kept: materialising again resumes from the last one")
    return DistributedTrainingError("\n".join(lines), failures)


# ----------------------------------------------------------------------------------------- the torchrun agent


def _failure_entries(error) -> list[dict]:
    """torchrun's ChildFailedError as JSON: per failed rank, its exception and traceback (the @record error file)."""
    entries = []
    for rank, failure in error.failures.items():
        data = failure.error_file_data or {}
        inner = data.get("message") if isinstance(data.get("message"), dict) else {}
        traceback = (inner.get("extraInfo") or {}).get("py_callstack") if data else None
        if traceback is not None:
            message = inner.get("message") or str(failure.message)
        elif failure.exitcode < 0:
            message = f"was killed by {failure.signal_name()} (no Python traceback)"
        else:
            message = (f"exited with code {failure.exitcode} without a Python traceback (os._exit, killed by a "
                       "supervisor, or a crash in native code)")
        entries.append({"rank": int(rank), "local_rank": int(failure.local_rank), "exitcode": int(failure.exitcode),
                        "message": message, "traceback": traceback, "timestamp": int(failure.timestamp)})
    return entries


def _agent(argv: list[str]) -> int:
    """`python -m bioreview_assets.ml.training.launch FAILURES_JSON <torchrun arguments>`: torchrun, whose failed
    ranks are written to FAILURES_JSON (its own report is a log text)."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    failures, *torchrun_args = argv
    try:
        run(parse_args(torchrun_args))
    except ChildFailedError as error:
        Path(failures).write_text(json.dumps(_failure_entries(error)))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_agent(sys.argv[1:]))
