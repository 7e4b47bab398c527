"""The post-processed concerns of a system x split: one parquet row per concern, plus the covered articles."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import polars as pl

from bioreview_assets.core.generated_concern import GeneratedConcern
from bioreview_assets.core.hashing import stable_hash
from bioreview_assets.store.artifacts import ArtifactStore, CorruptArtifact
from bioreview_assets.store.layout import concerns_dir

SCHEMA = {
    "system": pl.String,
    "split": pl.String,
    "article_id": pl.String,
    "source": pl.String,
    "idx": pl.Int32,
    "text": pl.String,
    "category": pl.String,
    "severity": pl.String,
    "category_valid": pl.Boolean,
    "severity_valid": pl.Boolean,
    "members": pl.List(pl.String),
}


class WrittenConcerns(NamedTuple):
    path: str
    content_hash: str


def write_concerns(
    store: ArtifactStore,
    system: str,
    split: str,
    by_article: Mapping[str, Sequence[Any]],
    sources: Mapping[str, str],
    meta: dict,
    produced_by: str | None = None,
) -> WrittenConcerns:
    """Write concerns (GeneratedConcern or EnsembleConcern) and meta.json (with a content hash); returns both."""
    rows = []
    for article_id, concerns in by_article.items():
        for idx, concern in enumerate(concerns):
            generated = GeneratedConcern.of(concern.text, concern.category, concern.severity)
            rows.append({
                "system": system,
                "split": split,
                "article_id": article_id,
                "source": sources[article_id],
                "idx": idx,
                "text": concern.text,
                "category": concern.category,
                "severity": concern.severity,
                "category_valid": generated.category_valid,
                "severity_valid": generated.severity_valid,
                "members": list(getattr(concern, "members", (produced_by or system,))),
            })
    folder = concerns_dir(system, split)
    frame = pl.DataFrame(rows, schema=SCHEMA)
    with store.partition(*folder) as staged:  # committed as a unit: all new files or all old ones
        store.write_parquet(frame, *staged, "concerns.parquet")
        # What the concerns are, not when they were written: scores and Dagster data versions compare this.
        content_hash = stable_hash([sorted(by_article), frame.drop("system").rows()])
        written_at = dt.datetime.now(dt.timezone.utc).isoformat()
        store.write_json({**meta, "written_at": written_at, "content_hash": content_hash,
                          "covered_articles": list(by_article)}, *staged, "meta.json")
    return WrittenConcerns(store.path(*folder, "concerns.parquet"), content_hash)


def read_concerns(store: ArtifactStore, system: str, split: str) -> dict[str, list[GeneratedConcern]]:
    """Concerns per covered article (articles covered with zero concerns map to an empty list)."""
    folder = concerns_dir(system, split)
    if not store.exists(*folder, "meta.json"):
        raise FileNotFoundError(f"concerns of system {system!r} on {split!r} are not materialised under {store.root}")
    meta = store.read_json(*folder, "meta.json")
    out: dict[str, list[GeneratedConcern]] = {aid: [] for aid in meta["covered_articles"]}
    frame = store.read_parquet(*folder, "concerns.parquet")
    # The rows must be the ones meta.json vouches for (a cut or edited table is not scored as if whole).
    content_hash = stable_hash([sorted(meta["covered_articles"]), frame.drop("system").rows()])
    if meta.get("content_hash") and content_hash != meta["content_hash"]:
        raise CorruptArtifact(f"{store.url(*folder, 'concerns.parquet')}: {frame.height} rows whose content hash "
                              f"{content_hash} is not the {meta['content_hash']} of {store.url(*folder, 'meta.json')}"
                              f": re-materialise concerns[{system}|{split}]")
    frame = frame.sort(["article_id", "idx"])
    for row in frame.iter_rows(named=True):
        out[row["article_id"]].append(GeneratedConcern.of(row["text"], row["category"], row["severity"]))
    return out
