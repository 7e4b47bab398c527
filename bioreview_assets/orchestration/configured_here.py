"""Which configured models can be built on this machine (weights present, package installed, API key set).

Shown as static asset metadata (`systems_here`) on adapter, generations and scores, so a user of the UI sees why
most partitions of a CPU machine stay "Missing" (qwen3-8b's weights are on the GPU cluster, not here). Never raises,
never downloads: only looks at local files, installed packages and environment variables.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import dagster as dg

from bioreview_assets.config.model import ModelConfig
from bioreview_assets.config.snapshot import ConfigSnapshot


def availability(cfg: ModelConfig) -> tuple[bool, str]:
    """(buildable here, why) for one model config."""
    source = cfg.base
    if source.kind == "tiny_random":
        return True, "tiny random weights, built locally"
    if source.kind == "gguf_package":
        found = importlib.util.find_spec(source.package) is not None
        return found, f"package {source.package} " + ("installed" if found else "not installed")
    if source.kind == "api":
        key = cfg.generation.api_key_env
        return bool(os.environ.get(key)), f"API model: {key} " + ("set" if os.environ.get(key) else "not set")
    if source.path:
        found = (Path(source.path).expanduser() / "config.json").exists()
        return found, f"weights at {source.path} " + ("present" if found else "absent on this machine")
    try:
        from huggingface_hub import snapshot_download

        snapshot_download(source.hub_id, revision=source.revision, local_files_only=True)
        return True, f"{source.hub_id} in the local hub cache"
    except Exception:
        return False, f"{source.hub_id} not in the local hub cache (weights live where the hub is reachable)"


def systems_here_markdown(snapshot: ConfigSnapshot) -> str:
    project = snapshot.project
    lines = ["| model | fine-tuned | demo | buildable here | why |", "|---|---|---|---|---|"]
    for name, cfg in snapshot.models.items():
        ok, why = availability(cfg)
        finetune = cfg.finetune
        lines.append(f"| {name} | {'yes' if finetune else 'no (base/API system)'} | "
                     f"{'yes' if name in project.demo_models else ''} | {'yes' if ok else '**no**'} | {why} |")
    lines.append("")
    lines.append(f"Baselines (no weights): {', '.join(project.baselines) or 'none'}. "
                 f"Ensembles: {', '.join(project.ensembles) or 'none configured'}.")
    return "\n".join(lines)


def systems_here_metadata(snapshot: ConfigSnapshot) -> dict:
    """Static asset metadata; {} if anything goes wrong (the UI must load even then)."""
    try:
        return {"systems_here": dg.MetadataValue.md(systems_here_markdown(snapshot))}
    except Exception:
        return {}
