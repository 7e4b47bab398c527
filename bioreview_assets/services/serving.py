"""What a generations partition serves (merged weights, or base + adapter) and the key its resume log is stored under.

The key holds everything that determines the generated text: the served weights' content hashes, the prompt
hash, the sampling and generation settings, the backend. A retrained adapter, a re-merged model or a new
temperature therefore opens a fresh log instead of resuming the previous model's outputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bioreview_assets.ml.generation.base import SamplingSpec
from bioreview_assets.config.model import ModelConfig
from bioreview_assets.core.gt_filter import CorpusConfig
from bioreview_assets.store.artifacts import ArtifactStore
from bioreview_assets.store.content_identity import folder_hash
from bioreview_assets.store.layout import adapter_dir, merged_dir
from bioreview_assets.store.records import AdapterMeta, MergeMeta

# Generation settings that change how fast or how much is generated, not what an article's output is. gpus and
# parallelism are here like batch_size: a data-parallel shard runs exactly the batches one process would (so a
# partition may resume on another GPU count), and tensor parallelism changes only the order of float reductions.
NOT_CONTENT = frozenset({"batch_size", "max_articles", "api_key_env", "concurrency", "use_merged", "gpus",
                         "parallelism"})
_SAMPLING_FIELDS = frozenset({"max_new_tokens", "temperature", "top_p", "repetition_penalty", "seed"})


class PromptMismatch(ValueError):
    """The adapter was trained on prompts from a different builder/tokenizer/budget than inference would use."""


class StaleMergedModel(ValueError):
    """The merged model was merged from another adapter than the one now trained."""


@dataclass(frozen=True)
class Serving:
    """The folders to generate with and the content identity of the weights they hold."""

    model_dir: Path | None  # None for an API model
    adapter_dir: Path | None  # a PEFT adapter applied on top of model_dir (None when merged or base-only)
    weights: dict[str, Any]


def resolve_serving(store: ArtifactStore, cfg: ModelConfig, prompt_hash: str) -> Serving:
    """Merged weights when configured and present, else base + adapter; checks prompt hash and merge freshness."""
    from bioreview_assets.ml.models import resolve_base_model

    if cfg.base.kind == "api":
        return Serving(None, None, {"kind": "api", "api_base": cfg.generation.api_base,
                                    "api_model": cfg.generation.api_model})
    if not cfg.finetune:
        base = resolve_base_model(cfg)
        return Serving(base, None, {"kind": "base", "base": folder_hash(base)})
    adapter_root = store.fetch_dir(*adapter_dir(cfg.name))
    meta = AdapterMeta.read(adapter_root)
    if meta.prompt_hash != prompt_hash:
        raise PromptMismatch(
            f"adapter[{cfg.name}] was trained with prompt hash {meta.prompt_hash} but inference would use "
            f"{prompt_hash}: rebuild the corpus and retrain, or restore the prompt config the adapter was trained with"
        )
    # Adapters trained before content hashes were recorded are hashed here (the same function, the same value).
    adapter_hash = meta.weights_hash or folder_hash(adapter_root / "adapter")
    if cfg.generation.use_merged and store.exists(*merged_dir(cfg.name), "config.json"):
        merged = store.fetch_dir(*merged_dir(cfg.name))
        merge_meta = MergeMeta.read(merged)
        if merge_meta.adapter_weights_hash != adapter_hash:
            raise StaleMergedModel(
                f"merged_model[{cfg.name}] was merged from adapter weights "
                f"{merge_meta.adapter_weights_hash or '(not recorded)'}, but adapter[{cfg.name}] now holds "
                f"{adapter_hash}: re-materialise merged_model[{cfg.name}] (or set generation.use_merged: false)"
            )
        return Serving(merged, None, {"kind": "merged", "merged": merge_meta.weights_hash,
                                      "adapter": adapter_hash})
    base = resolve_base_model(cfg)
    return Serving(base, adapter_root / "adapter", {"kind": "base+adapter", "base": folder_hash(base),
                                                    "adapter": adapter_hash})


def generation_key(cfg: ModelConfig, weights: dict[str, Any], prompt_hash: str,
                   numerics: dict[str, Any] | None = None) -> dict[str, Any]:
    """Everything that determines an article's generated text (the resume log of a partition is kept per key).

    numerics: the backend's device kind, compute dtype and KV cache layout (TransformersBackend.numerics()), where the
    backend reports them; keys of backends that do not (API, vLLM) stay as they were."""
    gen = cfg.generation
    settings = gen.model_dump(mode="json", exclude=set(NOT_CONTENT | _SAMPLING_FIELDS))
    if settings["decode"] == "eager":
        # Eager decoding is what every key made before the field existed generated with: leaving the default out
        # keeps those keys (and their resumable outputs) valid, while compiled decoding gets keys of its own.
        del settings["decode"]
    key = {
        "weights": weights,
        "prompt_hash": prompt_hash,
        "backend": gen.backend,
        "sampling": SamplingSpec.from_config(gen).describe(),
        "generation": settings,
    }
    if numerics:
        key["numerics"] = dict(numerics)
    return key


def resolve_max_new_tokens(cfg: ModelConfig, corpus: CorpusConfig, train_articles,
                           count_tokens) -> tuple[ModelConfig, str]:
    """The config with a numeric max_new_tokens ("auto" derived from the train targets under the model's corpus
    policy `corpus`) and where it came from."""
    from bioreview_assets.core.generation_limits import target_token_limit

    if cfg.generation.max_new_tokens != "auto":
        return cfg, "config"
    limit = target_token_limit(train_articles, corpus, count_tokens)
    generation = cfg.generation.model_copy(update={"max_new_tokens": limit.max_new_tokens})
    return cfg.model_copy(update={"generation": generation}), f"auto: {limit.explain()}"
