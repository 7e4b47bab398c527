"""The generations table of a model x split: raw text per article, parsed with a stated parser version."""

from __future__ import annotations

import json

import polars as pl

from bioreview_assets.core.generated_concern import GeneratedConcern
from bioreview_assets.core.parsing import PARSER_VERSION, parse_concerns
from bioreview_assets.store.artifacts import ArtifactStore
from bioreview_assets.store.layout import generations_dir


def parsed_columns(table: pl.DataFrame) -> pl.DataFrame:
    """Parse every raw output (typed parser, explicit method per row), stamped with the parser version."""
    results = [parse_concerns(text or "") if err is None else None for text, err in zip(table["text"], table["error"])]
    return table.with_columns(
        pl.Series("parse_method", [r.method if r else "generation_error" for r in results]),
        pl.Series("parse_ok", [bool(r and r.ok) for r in results]),
        pl.Series("parse_detail", [r.detail if r else "" for r in results]),
        pl.Series("n_concerns", [len(r.concerns) if r else 0 for r in results], dtype=pl.Int32),
        pl.Series("concerns", [json.dumps([c.to_dict() for c in r.concerns]) if r else "[]" for r in results]),
        pl.lit(PARSER_VERSION).alias("parser_version"),
    )


def generated_concerns(store: ArtifactStore, model: str, split: str) -> tuple[dict[str, list[GeneratedConcern]], dict]:
    """Concerns per article parsed from the stored raw text with the current parser, and where they came from.

    Parsing here rather than trusting the stored parsed column means a parser change needs no regeneration: the
    raw text is re-parsed, and the lineage (which generations, which parser, how many rows changed) is returned.
    """
    table = store.read_parquet(*generations_dir(model, split), "generations.parquet")
    stored_versions = sorted(set(table["parser_version"].to_list())) if "parser_version" in table.columns else []
    reparsed = parsed_columns(table.select("article_id", "text", "error"))
    changed = 0
    if "concerns" in table.columns:
        changed = int((reparsed["concerns"] != table["concerns"]).sum())
    by_article = {
        row["article_id"]: [GeneratedConcern.from_dict(c) for c in json.loads(row["concerns"])]
        for row in reparsed.iter_rows(named=True)
    }
    meta = store.read_json(*generations_dir(model, split), "meta.json") if store.exists(
        *generations_dir(model, split), "meta.json") else {}
    lineage = {
        "parser_version": PARSER_VERSION,
        "stored_parser_versions": stored_versions,
        "rows_parsed_differently_than_stored": changed,
        "generations_data_version": meta.get("data_version"),
        "generation_key": meta.get("generation_key"),
    }
    return by_article, lineage
