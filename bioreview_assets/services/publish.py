"""An adapter published the Hugging Face way: a Hub-ready folder (weights, tokenizer, card) and its upload
(docs/reference.md: reference pipeline §6).

The folder holds what `PeftModel.from_pretrained` and vLLM's LoRA loader read (adapter_config.json,
adapter_model.safetensors), the tokenizer with its chat template, README.md (the model card), training_config.yaml,
prompt.json, bioreview.json (provenance) and requirements-inference.txt; never optimizer, scheduler, RNG or trainer
state. The upload takes the token from the environment only and creates a private repository unless told otherwise.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import yaml

from bioreview_assets.config.model import ModelConfig
from bioreview_assets.config.project import ProjectConfig
from bioreview_assets.core.quantization import NF4_STORED
from bioreview_assets.reporting.model_card import CardInputs, hub_base_model, render_model_card
from bioreview_assets.store.artifacts import ArtifactStore
from bioreview_assets.store.atomic import atomic_dir
from bioreview_assets.store.layout import adapter_dir, benchmark_dir, corpus_dir, scores_dir
from bioreview_assets.store.records import AdapterMeta, ScoreRow

log = logging.getLogger(__name__)

HF_TOKEN_ENV = "HF_TOKEN"
# What resumes a training (checkpoint copies of probes carry it), never part of a published adapter.
TRAINING_STATE = ("optimizer.pt", "scheduler.pt", "scaler.pt", "rng_state*.pth", "trainer_state.json",
                  "training_args.bin", "bioreview_checkpoint.json")
# peft's and trl's template cards are replaced by ours.
REPLACED = ("README.md",)
# Saved by transformers from how the tokenizer was loaded on the training machine, not what it is.
MACHINE_TOKENIZER_KEYS = ("is_local", "local_files_only")


class PublishError(RuntimeError):
    """The adapter cannot be published as asked (not trained, not fine-tuned, no token, offline)."""


@dataclass
class PublishedAdapter:
    folder: Path
    files: list[str]
    scored_splits: list[str]
    stale_scores: list[str]  # splits whose scores predate this adapter (left out of the card)
    prompt_shipped: bool


def is_training_state(name: str) -> bool:
    return any(fnmatch.fnmatch(name, pattern) for pattern in TRAINING_STATE)


def assemble_published_adapter(store: ArtifactStore, cfg: ModelConfig, project: ProjectConfig,
                               out: Path) -> PublishedAdapter:
    """Write the Hub-ready folder of the adapter of model `cfg` to `out` (replaced atomically), from the stored
    artefacts; `project` names the eval splits and the default matcher the card reports."""
    model = cfg.name
    if not cfg.finetune:
        raise PublishError(f"model {model!r} has finetune: false: it has no adapter to publish")
    if not AdapterMeta.exists_in(store, model):
        raise PublishError(f"adapter[{model}] is not materialised under {store.root}: materialise it first")
    root = store.fetch_dir(*adapter_dir(model))
    meta = AdapterMeta.read(root)
    out = Path(out)
    with atomic_dir(out) as tmp:
        _copy_adapter(root / "adapter", tmp, hub_base_model(cfg.base.model_dump(mode="json")))
        inputs, stale = card_inputs(store, cfg, project, meta)
        (tmp / "training_config.yaml").write_text(
            yaml.safe_dump(cfg.model_dump(mode="json", exclude={"name"}), sort_keys=False))
        if inputs.prompt:
            (tmp / "prompt.json").write_text(json.dumps(inputs.prompt, indent=2, ensure_ascii=False))
        (tmp / "bioreview.json").write_text(json.dumps(provenance(inputs), indent=2, default=str))
        (tmp / "requirements-inference.txt").write_text(inference_requirements(meta, cfg.training.quantization))
        inputs.files = sorted([p.name for p in tmp.iterdir()] + ["README.md"])
        (tmp / "README.md").write_text(render_model_card(inputs))
        leaked = [p.name for p in tmp.iterdir() if is_training_state(p.name)]
        if leaked:
            raise PublishError(f"training state would be published: {leaked}")
    return PublishedAdapter(folder=out, files=inputs.files, scored_splits=sorted({r.split for r in inputs.scores}),
                            stale_scores=stale, prompt_shipped=inputs.prompt is not None)


def _copy_adapter(source: Path, target: Path, base_model: str | None) -> None:
    for path in sorted(source.iterdir()):
        if path.is_file() and path.name not in REPLACED and not is_training_state(path.name):
            shutil.copy2(path, target / path.name)
    config_path = target / "adapter_config.json"
    config = json.loads(config_path.read_text())
    # The training machine's local folder means nothing elsewhere: name the Hub base, or nothing (callers pass the
    # base model to PeftModel.from_pretrained; vLLM takes it as --model).
    config["base_model_name_or_path"] = base_model
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True))
    tokenizer_config = target / "tokenizer_config.json"
    if tokenizer_config.exists():
        data = json.loads(tokenizer_config.read_text())
        tokenizer_config.write_text(json.dumps({k: v for k, v in data.items() if k not in MACHINE_TOKENIZER_KEYS},
                                               indent=2, ensure_ascii=False))


def card_inputs(store: ArtifactStore, cfg: ModelConfig, project: ProjectConfig,
                meta: AdapterMeta) -> tuple[CardInputs, list[str]]:
    """What the card says, read from the adapter, corpus, benchmark and score artefacts; also the stale splits."""
    corpus_model = cfg.probe_of or cfg.name  # a probe was trained on its parent's corpus
    corpora = {split: store.read_json(*corpus_dir(corpus_model, split), "meta.json") for split in ("train", "val")
               if store.exists(*corpus_dir(corpus_model, split), "meta.json")}
    splits = {split: store.read_json(*benchmark_dir(split), "meta.json")
              for split in set(corpora) | set(project.eval_splits) if store.exists(*benchmark_dir(split), "meta.json")}
    # When these weights were written: scores from before then came from an earlier adapter of this model.
    weights = store.path(*adapter_dir(cfg.name), "adapter", "adapter_model.safetensors")
    trained_at = _aware(store.fs.modified(weights)).replace(microsecond=0)  # scored_at has whole seconds
    scores, matchers, stale = [], {}, []
    for split in project.eval_splits:
        folder = scores_dir(cfg.name, split)  # the model's default-policy system is named after the model
        if not store.exists(*folder, "scores.parquet"):
            continue
        rows = ScoreRow.read(store, cfg.name, split)
        if any(_when(row.scored_at) < trained_at for row in rows):
            stale.append(split)  # scored from an earlier adapter of this model: not this adapter's figures
            continue
        scores += rows
        if store.exists(*folder, "metrics.json"):
            for name, metrics in store.read_json(*folder, "metrics.json").items():
                matchers[name] = metrics.get("matcher") or {"id": metrics.get("matcher_id")}
    prompt = None
    train = corpora.get("train")
    if train and train.get("prompt_hash") == meta.prompt_hash and train.get("prompt_spec"):
        prompt = {"prompt_hash": train["prompt_hash"], **train["prompt_spec"]}
    inputs = CardInputs(
        model=cfg.name, description=cfg.description, base=cfg.base.model_dump(mode="json", exclude_none=True),
        training=cfg.training.model_dump(mode="json"), generation=cfg.generation.model_dump(mode="json"),
        prompt_config=cfg.prompt.model_dump(mode="json"), meta=meta, corpora=corpora, splits=splits, scores=scores,
        matchers=matchers, prompt=prompt, default_matcher=project.default_matcher,
    )
    return inputs, stale


def _aware(when: dt.datetime) -> dt.datetime:
    return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)


def _when(stamp: str | None) -> dt.datetime:
    if not stamp:
        return dt.datetime.min.replace(tzinfo=dt.timezone.utc)
    return _aware(dt.datetime.fromisoformat(stamp))


def provenance(inputs: CardInputs) -> dict:
    """bioreview.json: the identities behind the adapter and its scores, machine-readable (no local paths)."""
    meta = inputs.meta.to_json()
    keep = ("model", "config_hash", "corpus_hash", "prompt_hash", "global_step", "max_steps", "probe_of",
            "final_train_loss", "final_val_loss", "train_rows", "val_subset_rows", "quantization", "compute_dtype",
            "trainable_params", "tokens_per_s", "gpu", "device", "library_versions")
    return {
        "adapter": {k: meta[k] for k in keep if k in meta},
        "splits": {split: {"content_hash": s.get("content_hash"), "is_sample": s.get("is_sample")}
                   for split, s in sorted(inputs.splits.items())},
        "corpora": {split: {k: c.get(k) for k in ("corpus", "corpus_hash", "split_hash", "prompt_hash")}
                    for split, c in sorted(inputs.corpora.items())},
        "scores": [row.to_json() for row in inputs.scores],
        "matchers": inputs.matchers,
    }


def inference_requirements(meta: AdapterMeta, quantization: str) -> str:
    """Pins of what loads the adapter as it was trained (transformers 5 saves tokenizers a 4.x cannot read)."""
    versions = meta.library_versions or {}
    lines = [f"{name}=={versions[name]}" for name in ("transformers", "peft") if versions.get(name)]
    torch_version = (versions.get("torch") or "").split("+")[0]
    if torch_version:
        lines.append(f"torch>={torch_version}")
    lines.append("safetensors")
    if quantization in NF4_STORED and versions.get("bitsandbytes"):
        lines.append(f"bitsandbytes=={versions['bitsandbytes']}  # to load the base in NF4 as in training")
    return "\n".join(lines) + "\n"


def upload_published_adapter(folder: Path, repo_id: str, *, private: bool = True, token_env: str = HF_TOKEN_ENV,
                             commit_message: str | None = None) -> str:
    """Upload a published folder to the Hub (repo created private unless `private=False`); returns the commit URL."""
    token = os.environ.get(token_env)
    if not token:
        raise PublishError(f"no Hugging Face token: set {token_env} in the environment (it is never written anywhere)")
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        raise PublishError("HF_HUB_OFFLINE is set (the Makefile and the test suite set it): run the upload with "
                           "HF_HUB_OFFLINE=0")
    folder = Path(folder)
    if not (folder / "README.md").exists() or not (folder / "adapter_model.safetensors").exists():
        raise PublishError(f"{folder} is not a published adapter folder (README.md, adapter_model.safetensors)")
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    commit = api.upload_folder(
        repo_id=repo_id, repo_type="model", folder_path=str(folder),
        commit_message=commit_message or f"bioreview adapter {folder.name}",
        ignore_patterns=list(TRAINING_STATE) + [".*"],
    )
    log.info("uploaded %s to %s (%s)", folder, repo_id, "private" if private else "public")
    return str(getattr(commit, "commit_url", commit))
