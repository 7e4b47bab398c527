"""Checkpoints and resume: a run's identity, the newest complete checkpoint, and checkpoint probes' copies.

A checkpoint is complete once bioreview_checkpoint.json is in it (written last, by rank 0, once every rank saved its
part); checkpoints of another run identity (config, corpus, prompt) are discarded, never resumed into this run, and
a checkpoint written by another number of ranks is refused unless training.allow_world_size_change says otherwise.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bioreview_assets.ml.runtime_env import check_versions, gpu_name
import bioreview_assets.ml.training.distributed as distributed
from bioreview_assets.store.atomic import write_json_atomic
from bioreview_assets.store.records import AdapterMeta

if TYPE_CHECKING:  # pydantic and polars stay off the benchmarks' GPU path
    from bioreview_assets.config.model import ModelConfig
    from bioreview_assets.config.project import TrackingConfig
    from bioreview_assets.store.artifacts import ArtifactStore

log = logging.getLogger(__name__)

CHECKPOINT_MARKER = "bioreview_checkpoint.json"


RUN_FILE = "run.json"


_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")


@dataclass
class ResumePoint:
    path: Path | None
    step: int
    version_differences: dict
    discarded: list[str]
    world_size: int | None = None  # ranks that wrote the checkpoint resumed from (None: no resume)

    def to_json(self) -> dict:
        return {"path": str(self.path) if self.path else None, "step": self.step,
                "version_differences": self.version_differences, "discarded": self.discarded,
                "world_size": self.world_size}

    @classmethod
    def from_json(cls, data: dict) -> "ResumePoint":
        return cls(**{**data, "path": Path(data["path"]) if data["path"] else None})


class WorldSizeChangeError(RuntimeError):
    """The newest checkpoint was written by another number of ranks (or another strategy) than this run has."""


def run_identity(cfg: ModelConfig, *, prompt_hash: str, corpus_hash: str) -> dict[str, str]:
    """What makes two trainings the same run: config, corpus and prompt."""
    return {"model": cfg.name, "config_hash": cfg.config_hash(), "corpus_hash": corpus_hash, "prompt_hash": prompt_hash}


def strategy_name(world_size: int, strategy: str) -> str:
    """What a checkpoint records: the configured strategy, or "single" for one process (no strategy applies)."""
    return strategy if world_size > 1 else "single"


def prepare_checkpoints(
    checkpoints: Path, identity: dict, versions: dict, *, allow_version_mismatch: bool, world_size: int = 1,
    strategy: str = "ddp", allow_world_size_change: bool = False,
) -> ResumePoint:
    """Pick the newest complete checkpoint of this run (after the version and world-size guards); clear stale and
    partial ones. Runs in one process (the launcher, before any rank starts)."""
    discarded: list[str] = []
    run_file = checkpoints / RUN_FILE
    if run_file.exists() and json.loads(run_file.read_text())["identity"] != identity:
        # Checkpoints of another config/corpus/prompt cannot be resumed into this run: start over, loudly.
        old = json.loads(run_file.read_text())["identity"]
        log.warning("discarding checkpoints in %s: they belong to %s, this run is %s", checkpoints, old, identity)
        discarded = [p.name for p in _checkpoint_dirs(checkpoints)]
        shutil.rmtree(checkpoints)
    checkpoints.mkdir(parents=True, exist_ok=True)
    if not run_file.exists():
        write_json_atomic(run_file, {"identity": identity, "versions": versions, "created": time.time()})

    complete = [p for p in _checkpoint_dirs(checkpoints) if (p / CHECKPOINT_MARKER).exists()]
    newest = max(complete, key=_step_of, default=None)
    for partial in _checkpoint_dirs(checkpoints):
        if not (partial / CHECKPOINT_MARKER).exists():
            log.warning("removing incomplete checkpoint %s (interrupted while saving)", partial)
            discarded.append(partial.name)
            shutil.rmtree(partial)
    if newest is None:
        return ResumePoint(path=None, step=0, version_differences={}, discarded=discarded)
    recorded = json.loads((newest / CHECKPOINT_MARKER).read_text())
    diffs = check_versions(recorded["versions"], allow_mismatch=allow_version_mismatch, where=str(newest))
    if diffs:
        log.warning("resuming from %s despite version differences %s (allowed)", newest, diffs)
    # Markers older than multi-GPU training carry no world size: every such run had one process.
    recorded_world = int(recorded.get("world_size", 1))
    if recorded_world != world_size:
        if not allow_world_size_change:
            raise WorldSizeChangeError(
                f"{newest} was written by a training on {recorded_world} rank(s); this run has training.gpus="
                f"{world_size}. Resuming would continue another run's per-rank RNG streams and data shards, so the "
                f"adapter would differ from an uninterrupted run. Set training.gpus: {recorded_world} to resume it, "
                f"training.allow_world_size_change: true to resume it anyway, or delete {checkpoints} to start over"
            )
        log.warning("resuming %s (written by %d ranks) on %d ranks (training.allow_world_size_change)", newest,
                    recorded_world, world_size)
    recorded_strategy = recorded.get("strategy", "single")
    this_strategy = strategy_name(world_size, strategy)
    if "single" not in (recorded_strategy, this_strategy) and recorded_strategy != this_strategy:
        # DDP saves one optimizer state, FSDP a sharded one: neither loads into the other.
        raise WorldSizeChangeError(
            f"{newest} was written with training.strategy={recorded_strategy}, this run uses {this_strategy}: set it "
            f"back to resume, or delete {checkpoints} to start over"
        )
    log.info("resuming from %s", newest)
    return ResumePoint(path=newest, step=_step_of(newest), version_differences=diffs, discarded=discarded,
                       world_size=recorded_world)


def _checkpoint_dirs(folder: Path) -> list[Path]:
    if not folder.exists():
        return []
    return sorted((p for p in folder.iterdir() if p.is_dir() and _CHECKPOINT_RE.match(p.name)), key=_step_of)


def _step_of(path: Path) -> int:
    return int(_CHECKPOINT_RE.match(path.name).group(1))


class CheckpointMarker:
    """Writes bioreview_checkpoint.json into each checkpoint once the trainer has saved all of it (on every rank)."""

    def __init__(self, identity: dict, versions: dict, strategy: str = "ddp"):
        self.identity = identity
        self.versions = versions
        self.strategy = strategy

    def on_save(self, args, state, control, **kwargs):
        # Rank 0 saves the adapter, optimizer and trainer state, every rank its own RNG state (rng_state_<rank>.pth),
        # with no barrier after: the marker may only go in once all of them are on disk.
        distributed.barrier()
        ranks = distributed.current()
        if ranks.is_main:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            marker = {"identity": self.identity, "versions": self.versions, "step": state.global_step,
                      "gpu": gpu_name(), "world_size": ranks.world_size,
                      "strategy": strategy_name(ranks.world_size, self.strategy)}
            write_json_atomic(folder / CHECKPOINT_MARKER, marker)
        return control


# Trainer state that a probe's adapter folder leaves behind (it is served, never resumed).
_NOT_COPIED = ("optimizer.pt", "scheduler.pt", "rng_state*", "trainer_state.json", "training_args.bin")


@dataclass
class ProbeAdapter:
    meta: AdapterMeta  # the base adapter's meta with the probe's step, val loss, weights hash and tracking
    val_history: list[list]  # [[step, eval_loss], ...] up to the probed step
    published: str  # where the probe's adapter folder was published


def copy_probe_checkpoint(store: "ArtifactStore", cfg: "ModelConfig", tracking_cfg: "TrackingConfig") -> ProbeAdapter:
    """Copy checkpoint cfg.probe_step of adapter[cfg.probe_of] as adapter[cfg.name] and publish it."""
    from bioreview_assets.store.content_identity import folder_hash  # lazy: the store needs polars
    from bioreview_assets.store.layout import adapter_dir

    base_root = store.fetch_dir(*adapter_dir(cfg.probe_of))
    checkpoint = base_root / "checkpoints" / f"checkpoint-{cfg.probe_step}"
    if not (checkpoint / "adapter_model.safetensors").exists():
        kept = sorted(p.name for p in (base_root / "checkpoints").glob("checkpoint-*"))
        raise FileNotFoundError(
            f"adapter[{cfg.probe_of}] has no checkpoint-{cfg.probe_step} (kept: {kept}); raise save_total_limit "
            f"or probe a kept step in configs/project.yaml probes"
        )
    meta = AdapterMeta.read(base_root)
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    val_history = [[entry["step"], entry["eval_loss"]] for entry in state["log_history"] if "eval_loss" in entry]
    val = [loss for _, loss in val_history]
    work = store.local_dir(*adapter_dir(cfg.name))
    target = work / "adapter"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(checkpoint, target, ignore=shutil.ignore_patterns(*_NOT_COPIED))
    from bioreview_assets.ml.tracking import track_probe

    tracking = track_probe(tracking_cfg, work, cfg, meta, state["log_history"])
    probe_meta = meta.replace(probe_of=cfg.probe_of, global_step=cfg.probe_step,
                              final_val_loss=val[-1] if val else None, adapter_dir=str(target), tracking=tracking,
                              weights_hash=folder_hash(target))
    probe_meta.write(work)
    return ProbeAdapter(probe_meta, val_history, store.publish_dir(work, *adapter_dir(cfg.name)))
