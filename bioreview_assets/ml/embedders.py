"""Sentence embedders for concern matching: pinned, local-only, fail-closed (docs/reference.md: W1, harness W3)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bioreview_assets.core.matcher_spec import EmbedderSpec, MatcherSpec
from bioreview_assets.core.matching import cosine, jaccard_matrix
from bioreview_assets.ml.embedder_tokens import (
    FlatTokens,
    rust_tokeniser_pool,
    tokenise,
    tokeniser_threads,
    truncating_rust_tokenizer,
)
from bioreview_assets.ml.embedder_weights import (
    EmbedderUnavailable,
    from_hub_cache,
    resolve_weights_dir,
    weights_sha256,
)

# Texts per tokenisation chunk, in batches: small enough that tokenising overlaps the model, large enough
# that sorting by token length inside a chunk keeps padding low.
_TOKENISE_CHUNK_BATCHES = 8

_PROBE_TEXT = "The statistical analysis does not correct for multiple comparisons across the twelve outcomes."
_PROBE_UNRELATED = "Preheat the oven and bake the bread for forty minutes until the crust turns golden."


class SanityProbeFailed(EmbedderUnavailable):
    """The embedder loaded but does not separate identical from unrelated texts as required."""


def _pick_device(requested: str) -> str:
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


def _sentence_transformer_modules():
    # sentence-transformers 6 moved the modules; older releases (e.g. on the GPU image) still have `models`.
    try:
        from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    except ImportError:
        from sentence_transformers.models import Pooling, Transformer
    return Transformer, Pooling


def _build_model(spec: EmbedderSpec, folder: Path, device: str):
    from sentence_transformers import SentenceTransformer

    if spec.pooling == "model_default":
        # What the folder defines (modules.json), or sentence-transformers' automatic mean pooling for a
        # plain HF checkpoint: exactly how the harness loads allenai/specter2_base.
        model = SentenceTransformer(str(folder), device=device, local_files_only=True)
    else:
        # An explicit pooling replaces the folder's own module stack (Pooling, Dense, Normalize) by
        # Transformer + Pooling; we L2-normalise in encode() anyway.
        transformer_cls, pooling_cls = _sentence_transformer_modules()
        transformer = transformer_cls(str(folder), max_seq_length=spec.max_seq_length)
        pooling = pooling_cls(transformer.get_embedding_dimension(), pooling_mode=spec.pooling)
        model = SentenceTransformer(modules=[transformer, pooling], device=device)
    if spec.max_seq_length is not None:
        model.max_seq_length = spec.max_seq_length
    if spec.dtype == "bfloat16":
        import torch

        model = model.to(torch.bfloat16)
    model.eval()
    return model


def _attach_adapter(spec: EmbedderSpec, model) -> Path:
    """Load a (SPECTER2 proximity) adapter into the transformer and activate it; returns the adapter folder."""
    try:
        import adapters
    except ImportError as exc:
        raise EmbedderUnavailable(
            f"embedder {spec.name!r}: adapter {spec.adapter!r} needs the `adapters` package (`pip install adapters`)"
        ) from exc
    local = Path(spec.adapter).expanduser()
    folder = local if local.is_dir() else from_hub_cache(spec.adapter, None, spec, key="adapter")[0]
    auto_model = model[0].auto_model
    adapters.init(auto_model)
    auto_model.load_adapter(str(folder), load_as="proximity", set_active=True)
    return folder


def _pooling_mode(model) -> str:
    for module in model:
        config = module.get_config_dict() if hasattr(module, "get_config_dict") else {}
        if "pooling_mode" in config:
            return str(config["pooling_mode"])
    raise EmbedderUnavailable("the loaded model has no Pooling module; set `pooling: mean|cls` in the embedder spec")


@dataclass
class Embedder:
    """A loaded sentence embedder: `.identity` pins what it computes, `.encode` returns unit float32 rows."""

    spec: EmbedderSpec
    model: Any
    identity: dict[str, Any]
    location: str  # where the weights were found (machine-specific, so not part of the identity)
    device: str
    dimension: int = field(init=False)

    def __post_init__(self) -> None:
        self.dimension = int(self.model.get_embedding_dimension())
        self._tokenizer = truncating_rust_tokenizer(self.model)

    @property
    def batch_size(self) -> int:
        return self.spec.gpu_batch_size if self.device.startswith("cuda") else self.spec.batch_size

    def encode(self, texts: list[str]) -> np.ndarray:
        """L2-normalised float32 embeddings (len(texts) x dim), batched by spec.batch_size (gpu_batch_size on CUDA)."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        try:
            if self._tokenizer is not None:
                emb = self._encode_pretokenised(list(texts))
            else:
                emb = self.model.encode(list(texts), batch_size=self.batch_size, normalize_embeddings=True,
                                        convert_to_numpy=True, show_progress_bar=False)
        except Exception as exc:  # noqa: BLE001 - an encode failure must stop scoring, with its cause
            raise EmbedderUnavailable(
                f"embedder {self.spec.name!r} failed to encode: {type(exc).__name__}: {exc}"
            ) from exc
        emb = np.asarray(emb, dtype=np.float32)
        # Normalise in float32 (a bfloat16 model's own normalisation leaves norms ~4e-3 off 1).
        emb /= np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
        if emb.shape != (len(texts), self.dimension) or not np.isfinite(emb).all():
            raise EmbedderUnavailable(f"embedder {self.spec.name!r} returned unusable embeddings of shape {emb.shape}")
        return emb

    def _encode_pretokenised(self, texts: list[str]) -> np.ndarray:
        """What model.encode computes, tokenising with the Rust tokenizer in chunks and batching by token length.

        sentence-transformers tokenises per batch through transformers' Python wrapper: on an H100, 0.8 s of the
        1.0 s that 11,425 short texts took was that wrapper, not the model (benchmarks/results/score_*_h100.txt).
        Worker threads tokenise the next chunks, one batch of texts per call, and turn it into arrays, while the
        model embeds the current chunk; outputs stay on the device until the end, so the GPU computes one batch
        while the next is launched. With TOKENIZERS_PARALLELISM=false (our images set it: forked workers) one
        encode_batch call runs on one core: on the H200's host that was 0.65 s of a 1.2 s cold scoring run
        (benchmarks/results/score_throughput_h200.txt). So the calls run inside rust_tokeniser_pool, where one
        call spreads over every core (on 2 cores here: 0.38 s against 0.76 for 11,425 texts; two Python threads
        calling at once took 0.80, they contend); where the pool is unsafe, tokeniser_threads() threads call it.
        """
        import torch

        piece = self.batch_size
        # The first chunk is one batch, so the model starts after one tokeniser call rather than after a whole
        # chunk's (on the H200 the model waited 60 ms of a 280 ms encode for its first chunk).
        starts = [0, *range(piece, len(texts), _TOKENISE_CHUNK_BATCHES * piece)]
        with (rust_tokeniser_pool() as pooled,
              ThreadPoolExecutor(max_workers=1 if pooled else tokeniser_threads()) as workers,
              torch.inference_mode()):
            pending = [
                (start, [workers.submit(tokenise, self._tokenizer, texts[at:at + piece])
                         for at in range(start, end, piece)])
                for start, end in zip(starts, [*starts[1:], len(texts)])
            ]
            out = torch.empty((len(texts), self.dimension), dtype=torch.float32, device=self.device)
            for start, parts in pending:
                tokens = FlatTokens.joined([part.result() for part in parts])
                self._embed_chunk(tokens, out[start:start + len(tokens.lengths)])
            return out.cpu().numpy()

    def _embed_chunk(self, tokens: FlatTokens, out: Any) -> None:
        """Embed one tokenised chunk into `out` (a device tensor view), longest texts first to limit padding."""
        import torch

        pad_id = self.model.tokenizer.pad_token_id or 0
        with_types = "token_type_ids" in self.model.tokenizer.model_input_names
        order = np.argsort(-tokens.lengths, kind="stable")
        for start in range(0, len(order), self.batch_size):
            rows = order[start:start + self.batch_size]
            ids, mask, types = tokens.padded(rows, pad_id)
            features = {"input_ids": ids, "attention_mask": mask} | ({"token_type_ids": types} if with_types else {})
            features = {key: torch.from_numpy(value).to(self.device) for key, value in features.items()}
            out[torch.from_numpy(rows).to(self.device)] = self.model(features)["sentence_embedding"].float()


def load_embedder(spec: EmbedderSpec) -> Embedder:
    """Load the embedder from spec.path, spec.package or the local hub cache; raise EmbedderUnavailable otherwise."""
    folder, location, hub_commit = resolve_weights_dir(spec)
    folders = {"model": folder}
    try:
        device = _pick_device(spec.device)
        model = _build_model(spec, folder, device)
        if spec.adapter is not None:
            folders["adapter"] = _attach_adapter(spec, model)
    except EmbedderUnavailable:
        raise
    except Exception as exc:  # noqa: BLE001 - any load failure is fatal and must name its cause
        raise EmbedderUnavailable(
            f"embedder {spec.name!r}: loading {str(folder)!r} failed: {type(exc).__name__}: {exc}"
        ) from exc
    identity = {
        "model_id": spec.model_id,
        "revision": spec.revision if spec.revision is not None else hub_commit,
        "weights_sha256": weights_sha256(folders),
        "pooling": _pooling_mode(model),
        "adapter": spec.adapter,
        "max_seq_length": int(model.max_seq_length) if model.max_seq_length is not None else None,
        "dtype": spec.dtype,
    }
    return Embedder(spec=spec, model=model, identity=identity, location=location, device=device)


def sanity_probe(embedder: Embedder, max_unrelated: float = 0.5, min_identical: float = 0.99) -> dict[str, float]:
    """Identical texts (separate calls) must agree > min_identical; an unrelated pair must stay < max_unrelated."""
    first = embedder.encode([_PROBE_TEXT, _PROBE_UNRELATED])
    # A separate call with another batch composition catches non-determinism (e.g. dropout left on).
    again = embedder.encode([_PROBE_TEXT])
    identical = float(cosine(first[:1], again)[0, 0])
    unrelated = float(cosine(first[:1], first[1:])[0, 0])
    result = {"identical_cosine": identical, "unrelated_cosine": unrelated,
              "min_identical": min_identical, "max_unrelated": max_unrelated}
    if not identical > min_identical:
        raise SanityProbeFailed(f"embedder {embedder.spec.name!r}: identical texts have cosine {identical:.4f} "
                                f"<= {min_identical}: the model is not deterministic or not loaded properly")
    if not unrelated < max_unrelated:
        raise SanityProbeFailed(f"embedder {embedder.spec.name!r}: unrelated texts have cosine {unrelated:.4f} "
                                f">= {max_unrelated}: it does not discriminate content (docs/reference.md: harness W1)")
    return result


@dataclass(frozen=True)
class LexicalSimilarity:
    """Upstream Jaccard matcher; only for MatcherSpec.method == 'lexical', never a fallback for a failed embedder."""

    spec: MatcherSpec

    def __post_init__(self) -> None:
        if self.spec.method != "lexical":
            raise ValueError(f"matcher {self.spec.name!r} is {self.spec.method!r}; Jaccard never substitutes for it")

    @property
    def effective_threshold(self) -> float:
        """Configured threshold x 0.3, as upstream."""
        return self.spec.effective_threshold

    @property
    def identity(self) -> dict[str, Any]:
        """The lexical matcher's identity (with hash)."""
        return self.spec.identity()

    def similarity(self, generated: list[str], reference: list[str]) -> np.ndarray:
        """Jaccard matrix (len(generated) x len(reference))."""
        return jaccard_matrix(generated, reference)
