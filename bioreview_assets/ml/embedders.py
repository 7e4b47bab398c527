"""Sentence embedders for concern matching: pinned, local-only, fail-closed (PIPELINE W1, BENCHMARK W3)."""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import itertools
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bioreview_assets.core.matcher_spec import EmbedderSpec, MatcherSpec
from bioreview_assets.core.matching import cosine, jaccard_matrix

_WEIGHT_SUFFIXES = (".safetensors", ".bin")
_CHUNK = 1 << 20
# (resolved path, size, mtime_ns) -> sha256: weights are hashed once per process, not per load.
_FILE_HASHES: dict[tuple[str, int, int], str] = {}

# Texts per tokenisation chunk, in batches: small enough that tokenising overlaps the model, large enough
# that sorting by token length inside a chunk keeps padding low.
_TOKENISE_CHUNK_BATCHES = 8

_PROBE_TEXT = "The statistical analysis does not correct for multiple comparisons across the twelve outcomes."
_PROBE_UNRELATED = "Preheat the oven and bake the bread for forty minutes until the crust turns golden."


class EmbedderUnavailable(RuntimeError):
    """The configured embedder cannot be loaded or used; scoring must stop (never substitute another matcher)."""


class SanityProbeFailed(EmbedderUnavailable):
    """The embedder loaded but does not separate identical from unrelated texts as required."""


def _local_dir_hint(repo_id: str, revision: str | None, key: str) -> str:
    local = f"models/{repo_id.rsplit('/', 1)[-1]}"
    return (
        f"get it with `huggingface-cli download {repo_id}"
        + (f" --revision {revision}" if revision else "")
        + f" --local-dir {local}` on a machine with hub access, copy it here, and set "
        f"`{key}: {local}` under `embedder:` in configs/matchers/<matcher>.yaml"
    )


def weights_problem(spec: EmbedderSpec) -> str | None:
    """Why the embedder's weights cannot be loaded here (None: they are found); loads nothing (`bioreview doctor`)."""
    try:
        _resolve_dir(spec)
    except EmbedderUnavailable as err:
        return str(err)
    return None


def _resolve_dir(spec: EmbedderSpec) -> tuple[Path, str, str | None]:
    """(model folder, where it came from, hub commit if from the hub cache); resolution: path > package > hub cache."""
    if spec.path is not None:
        path = Path(spec.path).expanduser()
        if not path.is_dir():
            raise EmbedderUnavailable(
                f"embedder {spec.name!r}: path {str(path)!r} does not exist or is not a folder; "
                + _local_dir_hint(spec.model_id, spec.revision, "path")
            )
        return path, f"path:{path}", None
    if spec.package is not None:
        pip_name = spec.package.replace("_", "-")
        try:
            module = importlib.import_module(spec.package)
        except ImportError as exc:
            raise EmbedderUnavailable(
                f"embedder {spec.name!r}: python package {spec.package!r} is not installed ({exc}); "
                f"`pip install {pip_name}`"
            ) from exc
        getter = getattr(module, "get_model_path", None)
        if getter is None:
            raise EmbedderUnavailable(f"embedder {spec.name!r}: package {spec.package!r} has no get_model_path()")
        path = Path(getter())
        if not path.is_dir():
            raise EmbedderUnavailable(
                f"embedder {spec.name!r}: package {spec.package!r} points at {str(path)!r}, which is missing; "
                f"reinstall it (`pip install --force-reinstall {pip_name}`)"
            )
        return path, f"package:{spec.package}", None
    return _from_hub_cache(spec.model_id, spec.revision, spec, key="path")


def _from_hub_cache(repo_id: str, revision: str | None, spec: EmbedderSpec, key: str) -> tuple[Path, str, str]:
    from huggingface_hub import snapshot_download

    try:
        # local_files_only: a run must never download (offline clusters, pinned weights).
        folder = snapshot_download(repo_id, revision=revision, local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - every failure here means "not available locally"
        raise EmbedderUnavailable(
            f"embedder {spec.name!r}: {'model' if key == 'path' else key} {repo_id!r}"
            + (f" at revision {revision!r}" if revision else "")
            + f" is not in the local Hugging Face cache ({type(exc).__name__}); "
            + _local_dir_hint(repo_id, revision, key)
        ) from exc
    path = Path(folder)
    return path, f"hub-cache:{repo_id}", path.name


def _file_sha256(path: Path) -> str:
    resolved = path.resolve()
    stat = resolved.stat()
    key = (str(resolved), stat.st_size, stat.st_mtime_ns)
    if key not in _FILE_HASHES:
        digest = hashlib.sha256()
        with open(resolved, "rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
        _FILE_HASHES[key] = digest.hexdigest()
    return _FILE_HASHES[key]


def weights_sha256(folders: dict[str, Path], length: int = 16) -> str:
    """Short sha256 over every weight file (*.safetensors, *.bin) under the named folders, by relative path."""
    digest = hashlib.sha256()
    for label, folder in sorted(folders.items()):
        files = sorted(
            p for p in folder.rglob("*")
            if p.suffix in _WEIGHT_SUFFIXES and p.is_file() and ".cache" not in p.relative_to(folder).parts
        )
        for file in files:
            digest.update(f"{label}/{file.relative_to(folder).as_posix()}\0{_file_sha256(file)}\n".encode())
        if not files:
            raise EmbedderUnavailable(f"no weight files ({', '.join(_WEIGHT_SUFFIXES)}) under {str(folder)!r}")
    return digest.hexdigest()[:length]


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
    folder = local if local.is_dir() else _from_hub_cache(spec.adapter, None, spec, key="adapter")[0]
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


def _truncating_rust_tokenizer(model):
    """A private copy of the model's Rust tokenizer that truncates at max_seq_length; None if it has none."""
    backend = getattr(getattr(model, "tokenizer", None), "backend_tokenizer", None)
    if backend is None:
        return None
    backend = type(backend).from_str(backend.to_str())
    backend.no_padding()
    if model.max_seq_length is not None:
        backend.enable_truncation(int(model.max_seq_length))
    return backend


# Whether the Rust tokenizer may use its own thread pool (rayon) in this process. Our images set
# TOKENIZERS_PARALLELISM=false because a process forked after rayon has run deadlocks on its first parallel call;
# so the pool is switched on only around the embedder's own calls, and never in a child forked after one.
_RUST_POOL = {"used": False, "allowed": True}


def _after_fork_in_child() -> None:
    if _RUST_POOL["used"]:
        _RUST_POOL["allowed"] = False


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


@contextlib.contextmanager
def rust_tokeniser_pool():
    """Yield True with TOKENIZERS_PARALLELISM=true inside (one tokeniser call then spreads over every core), or
    False where that is unsafe (a child forked after this process used the pool); the variable is restored after.
    """
    if not _RUST_POOL["allowed"]:
        yield False
        return
    before = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "true"
    _RUST_POOL["used"] = True
    try:
        yield True
    finally:
        if before is None:
            os.environ.pop("TOKENIZERS_PARALLELISM", None)
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = before


def tokeniser_threads() -> int:
    """Threads that tokenise at once: the cores this process may use, at most 8 (short texts: more buys nothing)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(8, cores))


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
        self._tokenizer = _truncating_rust_tokenizer(self.model)

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
                (start, [workers.submit(_tokenise, self._tokenizer, texts[at:at + piece])
                         for at in range(start, end, piece)])
                for start, end in zip(starts, [*starts[1:], len(texts)])
            ]
            out = torch.empty((len(texts), self.dimension), dtype=torch.float32, device=self.device)
            for start, parts in pending:
                tokens = _FlatTokens.joined([part.result() for part in parts])
                self._embed_chunk(tokens, out[start:start + len(tokens.lengths)])
            return out.cpu().numpy()

    def _embed_chunk(self, tokens: _FlatTokens, out: Any) -> None:
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


def _tokenise(tokenizer: Any, texts: list[str]) -> "_FlatTokens":
    """One tokeniser call and its conversion to flat arrays, on a worker thread (off the thread that embeds)."""
    return _FlatTokens(tokenizer.encode_batch(texts))


class _FlatTokens:
    """Token ids of many texts in flat arrays, cut into padded batches without a Python loop per text."""

    def __init__(self, encodings: list[Any] | None = None) -> None:
        encodings = encodings or []
        ids = [e.ids for e in encodings]  # each .ids access builds a new Python list: take it once
        self.lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
        total = int(self.lengths.sum())
        self._ids = np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int64, count=total)
        self._types = np.fromiter(itertools.chain.from_iterable(e.type_ids for e in encodings), dtype=np.int64,
                                  count=total)
        self._starts = np.concatenate([[0], np.cumsum(self.lengths)[:-1]]).astype(np.int64)

    @classmethod
    def joined(cls, pieces: list["_FlatTokens"]) -> "_FlatTokens":
        """The pieces' texts in order, as one _FlatTokens."""
        out = cls()
        out.lengths = np.concatenate([p.lengths for p in pieces])
        out._ids = np.concatenate([p._ids for p in pieces])
        out._types = np.concatenate([p._types for p in pieces])
        out._starts = np.concatenate([[0], np.cumsum(out.lengths)[:-1]]).astype(np.int64)
        return out

    def padded(self, rows: np.ndarray, pad_id: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(input ids, attention mask, token type ids) of `rows`, right-padded to their longest text."""
        lengths = self.lengths[rows]
        width = int(lengths.max())
        valid = np.arange(width) < lengths[:, None]
        positions = (self._starts[rows][:, None] + np.arange(width))[valid]
        ids = np.full((len(rows), width), pad_id, dtype=np.int64)
        types = np.zeros((len(rows), width), dtype=np.int64)
        ids[valid] = self._ids[positions]
        types[valid] = self._types[positions]
        return ids, valid.astype(np.int64), types


def load_embedder(spec: EmbedderSpec) -> Embedder:
    """Load the embedder from spec.path, spec.package or the local hub cache; raise EmbedderUnavailable otherwise."""
    folder, location, hub_commit = _resolve_dir(spec)
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
                                f">= {max_unrelated}: it does not discriminate content (BENCHMARK W1)")
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
