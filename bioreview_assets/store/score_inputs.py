"""What a stored score depends on: a partition whose stored signature differs is stale (re-evaluation schedule)."""

from __future__ import annotations

from bioreview_assets.core.gt_filter import GT_FILTER_VERSION
from bioreview_assets.core.matcher_spec import MatcherSpec
from bioreview_assets.store.artifacts import ArtifactStore
from bioreview_assets.store.layout import concerns_dir, read_split_meta


def score_inputs_signature(store: ArtifactStore, system: str, split: str, matchers: list[MatcherSpec]) -> dict:
    """Split content, GT filter version, every scored matcher (the project's, in its order) and the concerns'
    identity of one score."""
    return {
        "split_hash": read_split_meta(store, split)["content_hash"],
        "gt_filter": GT_FILTER_VERSION,
        "matchers": {spec.name: spec.model_dump(mode="json") for spec in matchers},
        # What the concerns are, not when they were written (a re-run with the same output is not a change).
        "concerns": _concerns_identity(store.read_json(*concerns_dir(system, split), "meta.json")),
    }


def _concerns_identity(meta: dict) -> str | None:
    """The concerns' content hash (older partitions without one: their write time)."""
    return meta.get("content_hash") or meta.get("written_at")
