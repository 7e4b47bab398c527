"""Dagster resources: the artefact store (and, through it, the DuckDB catalog)."""

from __future__ import annotations

import dagster as dg

from bioreview_assets.store.artifacts import ArtifactStore, storage_root


class StorageResource(dg.ConfigurableResource):
    """Root of every artefact (BIOREVIEW_STORAGE: local folder, shared volume or s3://)."""

    root: str = ""

    def store(self) -> ArtifactStore:
        return ArtifactStore(self.root or storage_root())
