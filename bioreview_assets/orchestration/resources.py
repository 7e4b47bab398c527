"""Dagster resources: the artefact store, the matchers' embedders, the generation backends, the DuckDB catalog.

Each is a thin handle on code in store/ and ml/ (imported lazily: the code location loads without torch), so an
asset states what it uses in its signature and the UI lists it.
"""

from __future__ import annotations

from typing import Any, Callable

import dagster as dg

from bioreview_assets.config import env
from bioreview_assets.store.artifacts import ArtifactStore


class StorageResource(dg.ConfigurableResource):
    """The artefact store under BIOREVIEW_STORAGE (local folder, shared volume or s3://): the one root every asset,
    check, schedule, the embedding cache and the `bioreview` command read and write."""

    def store(self) -> ArtifactStore:
        return ArtifactStore(env.storage_root())


class EmbedderResource(dg.ConfigurableResource):
    """Sentence embedders of the configured matchers: loaded once per process, sanity-probed, behind the cache."""

    def encoder(self, spec) -> tuple[Callable, dict[str, Any]]:
        """(encode(texts) through the embedding cache, the loaded embedder's identity) of a MatcherSpec; fails
        closed."""
        from bioreview_assets.services.similarity import cached_encoder, matcher_embedder

        return cached_encoder(spec, StorageResource().store()), matcher_embedder(spec).identity

    def similarity(self, spec) -> Callable:
        """similarity(left_texts, right_texts) -> cosine matrix with a MatcherSpec's embedder (or its lexical rule)."""
        from bioreview_assets.services.similarity import similarity_fn

        return similarity_fn(spec, StorageResource().store())


class GenerationResource(dg.ConfigurableResource):
    """Generation backends (vLLM, transformers, OpenAI-compatible API) built from a model's generation config."""

    def backend(self, cfg, model_dir, adapter_path):
        from bioreview_assets.ml.generation import make_backend

        return make_backend(cfg, model_dir, adapter_path)


class CatalogResource(dg.ConfigurableResource):
    """The DuckDB views over the stored parquet partitions (a file at a local root, in memory on an object store)."""

    def refresh(self, store: ArtifactStore):
        """Add views that got data to the catalog file; never raises (the data has landed already)."""
        from bioreview_assets.store.catalog import refresh_catalog

        return refresh_catalog(store)

    def query(self, sql: str, store: ArtifactStore, max_rows: int = 50) -> str:
        from bioreview_assets.store.catalog import query_table

        return query_table(sql, max_rows=max_rows, store=store)
