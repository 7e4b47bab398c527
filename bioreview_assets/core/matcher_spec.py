"""Declarative matcher configuration (configs/matchers/*.yaml) and its stable identity."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from bioreview_assets.core.matching import JACCARD_THRESHOLD_SCALE, LEXICAL_TOKEN_RE

# Keys of a loaded embedder's identity that must agree with the spec that asked for it.
_EMBEDDER_IDENTITY_KEYS = ("model_id", "revision", "weights_sha256", "pooling", "adapter", "max_seq_length", "dtype")


def short_hash(payload: Any, length: int = 12) -> str:
    """Short sha256 of the canonical JSON of `payload` (sorted keys), stable across runs and machines."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


class EmbedderSpec(BaseModel):
    """Which sentence embedder to load, and from where (never downloaded at run time)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    kind: Literal["sentence_transformers"]
    model_id: str
    path: str | None = None
    package: str | None = None
    revision: str | None = None
    pooling: Literal["mean", "cls", "model_default"] = "model_default"
    adapter: str | None = None
    max_seq_length: int | None = Field(default=None, gt=0)
    # bfloat16 is ~1.8x faster on CPUs with avx512_bf16 and moves cosines by ~1e-3: part of the identity.
    dtype: Literal["float32", "bfloat16"] = "float32"
    device: str = "auto"
    batch_size: int = Field(default=64, gt=0)
    # On a GPU small batches leave it idle between launches: 11k short texts took 2.1 s at 64 on an H100.
    gpu_batch_size: int = Field(default=512, gt=0)
    # Sanity probe before scoring: an unrelated pair must stay below this cosine. Anisotropic embedders (unadapted
    # SPECTER2 gives nearly every pair >= 0.67) need a looser bound; discrimination is judged by the null baseline.
    probe_max_unrelated: float = Field(default=0.5, gt=-1.0, le=1.0)

    def identity(self) -> dict[str, Any]:
        """What the spec declares about the embedding function (not where the files lie); with its short hash."""
        # path/package/device/batch sizes/probe bound are left out on purpose: they say where and how fast, not what is
        # computed. The weights themselves are pinned by the loaded embedder's weights_sha256.
        body = {
            "kind": self.kind,
            "model_id": self.model_id,
            "revision": self.revision,
            "pooling": self.pooling,
            "adapter": self.adapter,
            "max_seq_length": self.max_seq_length,
            "dtype": self.dtype,
        }
        return {**body, "hash": short_hash(body)}


class JudgeSpec(BaseModel):
    """An LLM judge asked whether two concerns raise the same issue (Liang et al., NEJM AI 2024), over an
    OpenAI-compatible chat-completions API; pairs below `prefilter_threshold` (embedding cosine) are never asked."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    api_base: str
    api_model: str
    api_key_env: str = "OPENAI_API_KEY"
    prefilter_threshold: float = Field(default=0.4, ge=-1.0, le=1.0)
    concurrency: int = Field(default=4, gt=0)
    max_tokens: int = Field(default=8, gt=0)


class MatcherSpec(BaseModel):
    """How generated concerns are matched to reference concerns."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    method: Literal["embedding", "lexical", "llm_judge"] = "embedding"
    embedder: EmbedderSpec | None = None  # llm_judge: the embedder of the pre-filter
    judge: JudgeSpec | None = None
    threshold: float = Field(default=0.65, gt=0.0, le=1.0)
    algorithm: Literal["hungarian", "greedy"] = "hungarian"
    require_category_agreement: bool = False
    figure_policy: Literal["exclude"] = "exclude"

    @model_validator(mode="after")
    def _embedder_matches_method(self) -> MatcherSpec:
        if self.method == "embedding" and self.embedder is None:
            raise ValueError(f"matcher {self.name!r}: method 'embedding' needs an `embedder:` block")
        if self.method == "lexical" and self.embedder is not None:
            raise ValueError(f"matcher {self.name!r}: method 'lexical' must not name an embedder")
        if self.method == "llm_judge":
            if self.embedder is None or self.judge is None:
                raise ValueError(f"matcher {self.name!r}: method 'llm_judge' needs an `embedder:` (pre-filter) and "
                                 "a `judge:` block")
            if not 0.0 < self.threshold <= 0.5:
                # Judged pairs score 0.5 + cosine / 2 (a "same" verdict) or 0: the threshold must let every yes in.
                raise ValueError(f"matcher {self.name!r}: an llm_judge threshold is 0.5 ('the judge said same')")
        elif self.judge is not None:
            raise ValueError(f"matcher {self.name!r}: a `judge:` block needs method 'llm_judge'")
        return self

    @property
    def effective_threshold(self) -> float:
        """Threshold the matcher actually applies to similarities (see `effective`)."""
        return self.effective(self.threshold)

    def effective(self, configured: float) -> float:
        """A configured threshold on this matcher's similarity scale: as is, or x 0.3 for Jaccard (upstream)."""
        if self.method == "lexical":
            return configured * JACCARD_THRESHOLD_SCALE
        return configured

    def identity(self, embedder_identity: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Stable matcher identity dict with a short `hash`; embedding matchers need the loaded embedder's identity."""
        body: dict[str, Any] = {
            "method": self.method,
            "configured_threshold": self.threshold,
            "effective_threshold": self.effective_threshold,
            "algorithm": self.algorithm,
            "require_category_agreement": self.require_category_agreement,
            "figure_policy": self.figure_policy,
        }
        if self.method == "lexical":
            if embedder_identity is not None:
                raise ValueError(f"matcher {self.name!r} is lexical; an embedder identity makes no sense for it")
            body["similarity"] = {
                "rule": "jaccard",
                "token_pattern": LEXICAL_TOKEN_RE.pattern,
                "lowercase": True,
                "threshold_scale": JACCARD_THRESHOLD_SCALE,
            }
        else:
            body["embedder"] = self._checked_embedder_identity(embedder_identity)
        if self.method == "llm_judge":
            from bioreview_assets.core.judge import judge_identity

            body["judge"] = judge_identity(self.judge)
        return {**body, "hash": short_hash(body)}

    def _checked_embedder_identity(self, loaded: Mapping[str, Any] | None) -> dict[str, Any]:
        # Without the loaded weights' hash a score could not say which weights produced it
        # (docs/reference.md: harness W1/W3).
        assert self.embedder is not None  # guaranteed by the validator
        if loaded is None or not loaded.get("weights_sha256"):
            raise ValueError(
                f"matcher {self.name!r}: pass the loaded embedder's identity (with weights_sha256) "
                "so the score records which weights produced it"
            )
        declared = self.embedder
        if loaded.get("model_id") != declared.model_id:
            raise ValueError(f"embedder identity model_id {loaded.get('model_id')!r} != spec {declared.model_id!r}")
        if declared.pooling != "model_default" and loaded.get("pooling") != declared.pooling:
            raise ValueError(f"embedder identity pooling {loaded.get('pooling')!r} != spec {declared.pooling!r}")
        if loaded.get("dtype", "float32") != declared.dtype:
            raise ValueError(f"embedder identity dtype {loaded.get('dtype')!r} != spec {declared.dtype!r}")
        if declared.revision is not None and loaded.get("revision") != declared.revision:
            raise ValueError(f"embedder identity revision {loaded.get('revision')!r} != spec {declared.revision!r}")
        return {"kind": declared.kind, **{key: loaded.get(key) for key in _EMBEDDER_IDENTITY_KEYS}}
