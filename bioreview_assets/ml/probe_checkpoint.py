"""A checkpoint probe's adapter: checkpoint N of its base model's adapter, copied with the base's provenance."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bioreview_assets.store.content_identity import folder_hash
from bioreview_assets.store.layout import adapter_dir

if TYPE_CHECKING:
    from bioreview_assets.settings import ModelConfig, TrackingConfig
    from bioreview_assets.store.artifacts import ArtifactStore

# Trainer state that a probe's adapter folder leaves behind (it is served, never resumed).
_NOT_COPIED = ("optimizer.pt", "scheduler.pt", "rng_state*", "trainer_state.json", "training_args.bin")


@dataclass
class ProbeAdapter:
    meta: dict  # the base adapter's meta with the probe's step, val loss, weights hash and tracking
    val_history: list[list]  # [[step, eval_loss], ...] up to the probed step
    published: str  # where the probe's adapter folder was published


def copy_probe_checkpoint(store: "ArtifactStore", cfg: "ModelConfig", tracking_cfg: "TrackingConfig") -> ProbeAdapter:
    """Copy checkpoint cfg.probe_step of adapter[cfg.probe_of] as adapter[cfg.name] and publish it."""
    base_root = store.fetch_dir(*adapter_dir(cfg.probe_of))
    checkpoint = base_root / "checkpoints" / f"checkpoint-{cfg.probe_step}"
    if not (checkpoint / "adapter_model.safetensors").exists():
        kept = sorted(p.name for p in (base_root / "checkpoints").glob("checkpoint-*"))
        raise FileNotFoundError(
            f"adapter[{cfg.probe_of}] has no checkpoint-{cfg.probe_step} (kept: {kept}); raise save_total_limit "
            f"or probe a kept step in configs/project.yaml probes"
        )
    meta = json.loads((base_root / "adapter_meta.json").read_text())
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    val_history = [[entry["step"], entry["eval_loss"]] for entry in state["log_history"] if "eval_loss" in entry]
    val = [loss for _, loss in val_history]
    work = store.local_dir(*adapter_dir(cfg.name))
    target = work / "adapter"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(checkpoint, target, ignore=shutil.ignore_patterns(*_NOT_COPIED))
    from bioreview_assets.ml.tracking import track_probe

    tracking = track_probe(tracking_cfg, work, cfg, meta, state["log_history"])
    probe_meta = {**meta, "probe_of": cfg.probe_of, "global_step": cfg.probe_step,
                  "final_val_loss": val[-1] if val else None, "adapter_dir": str(target), "tracking": tracking,
                  "weights_hash": folder_hash(target)}
    (work / "adapter_meta.json").write_text(json.dumps(probe_meta, indent=2))
    return ProbeAdapter(probe_meta, val_history, store.publish_dir(work, *adapter_dir(cfg.name)))
