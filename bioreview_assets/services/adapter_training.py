"""One adapter partition: the model's LoRA adapter trained (or resumed) on its sft_corpus rows, then published."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from bioreview_assets.config.model import ModelConfig
from bioreview_assets.core.hashing import stable_hash
from bioreview_assets.store.artifacts import ArtifactStore
from bioreview_assets.store.layout import adapter_dir, read_corpus_rows
from bioreview_assets.store.records import AdapterMeta


@dataclass(frozen=True)
class TrainedAdapter:
    """The adapter's metadata as written beside its weights, where it was published, and the prompt it was trained
    on."""

    meta: AdapterMeta
    published: str
    prompt_hash: str


def train_model_adapter(store: ArtifactStore, cfg: ModelConfig, tracking: Any,
                        log: Callable[[str], None]) -> TrainedAdapter:
    """Train `cfg`'s adapter on its train/val corpus rows (refusing a corpus built with another prompt) and publish it.

    `tracking` is the project's TrackingConfig; `log` receives the doctor's findings and training progress lines.
    """
    from bioreview_assets.doctor.report import preflight
    from bioreview_assets.ml.training import train_adapter
    from bioreview_assets.services.tokenization import model_prompt

    model = cfg.name
    if not cfg.finetune:
        raise ValueError(f"model {model!r} has finetune: false (a base-model or API baseline): there is no adapter "
                         f"to train; materialise its generations directly")
    for finding in preflight(cfg, training=True):  # a GPU pod checks itself before loading any weights
        log(f"doctor: [{finding.level}] {finding.subject}: {finding.message}")
    train_rows, train_meta = read_corpus_rows(store, model, "train")
    val_rows, val_meta = read_corpus_rows(store, model, "val")
    _, prompt_hash, _ = model_prompt(cfg)
    for meta in (train_meta, val_meta):
        if meta["prompt_hash"] != prompt_hash:
            raise ValueError(
                f"sft_corpus[{model}|{meta['split']}] was built with prompt {meta['prompt_hash']}, the prompt builder "
                f"now gives {prompt_hash}: re-materialise sft_corpus for {model} first"
            )
    work = store.local_dir(*adapter_dir(model))

    def progress(event: dict) -> None:
        log(f"{model}: " + ", ".join(f"{k}={v}" for k, v in event.items()))

    meta = train_adapter(
        cfg,
        train_rows,
        val_rows,
        work,
        prompt_hash=prompt_hash,
        corpus_hash=stable_hash([train_meta["corpus_hash"], val_meta["corpus_hash"]]),
        progress=progress,
        tracking=tracking,
    ).meta
    published = store.publish_dir(work, *adapter_dir(model))
    return TrainedAdapter(meta=meta, published=published, prompt_hash=prompt_hash)
