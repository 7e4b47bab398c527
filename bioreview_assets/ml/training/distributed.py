"""The ranks of a data-parallel training and the few collectives the recipe needs beyond the trainer's own.

torchrun gives every worker RANK, LOCAL_RANK and WORLD_SIZE; a process without them is rank 0 of 1 (the in-process
path of one GPU). Only rank 0 writes artefacts, metadata, tracking and progress; every rank trains.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pydantic stays off the benchmarks' GPU path: the configs are only annotations here
    from bioreview_assets.config.model import TrainingConfig

# As the HF Trainer's ddp_timeout default: a rank waits this long for the others (a long save, a slow eval).
TIMEOUT = datetime.timedelta(seconds=1800)


@dataclass(frozen=True)
class Ranks:
    """This process's place among the ranks of one training."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def current() -> Ranks:
    """This process's ranks, as torchrun set them (rank 0 of 1 outside torchrun)."""
    values = {name: os.environ.get(name, "").strip() for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE")}
    if not any(values.values()):
        return Ranks()
    missing = [name for name, value in values.items() if not value]
    if missing:
        raise RuntimeError(f"torchrun environment incomplete: {missing} unset while {values} are set")
    return Ranks(rank=int(values["RANK"]), local_rank=int(values["LOCAL_RANK"]), world_size=int(values["WORLD_SIZE"]))


def is_main_process() -> bool:
    return current().is_main


def backend(cuda: bool) -> str:
    """nccl between GPUs, gloo between CPU processes (the tests)."""
    return "nccl" if cuda else "gloo"


def accumulation_per_rank(training: TrainingConfig, world_size: int) -> int:
    """Micro-batches each rank accumulates per optimizer step: the config's effective batch divided across ranks.

    per_device_batch_size x gradient_accumulation_steps is the effective batch on one GPU; on N ranks each
    accumulates gradient_accumulation_steps / N, so that the optimizer sees the same number of rows per step.
    """
    if world_size != training.gpus:
        raise RuntimeError(f"this process is one of {world_size} ranks but training.gpus={training.gpus}: a "
                           "multi-GPU training is started by ml/training/launch.py with training.gpus ranks")
    steps, remainder = divmod(training.gradient_accumulation_steps, world_size)
    if remainder:  # the config validator refuses this; a stand-in config (the benchmarks) could still pass it
        raise ValueError(f"gradient_accumulation_steps={training.gradient_accumulation_steps} is not divisible by "
                         f"{world_size} ranks")
    return steps


def init_process_group(cuda: bool) -> None:
    """Join the ranks' process group before the model is loaded (FSDP's rank-0-only loading needs it).

    The trainer (accelerate) then uses this group instead of creating its own.
    """
    import torch
    import torch.distributed as dist

    ranks = current()
    if ranks.world_size == 1 or dist.is_initialized():
        return
    if cuda:
        torch.cuda.set_device(ranks.local_rank)  # before NCCL: each rank's communicator on its own GPU
    dist.init_process_group(backend=backend(cuda), timeout=TIMEOUT,
                            device_id=torch.device("cuda", ranks.local_rank) if cuda else None)


def barrier() -> None:
    """Wait for every rank (no-op in one process)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def gather(value: Any) -> list[Any]:
    """`value` of every rank, in rank order, on every rank ([value] in one process)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return [value]
    values: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(values, value)
    return values


def destroy_process_group() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
