"""The generations table of a model x split: raw text per article, parsed with a stated parser version."""

from __future__ import annotations

import json

import polars as pl

from bioreview_assets.core.generated_concern import GeneratedConcern
from bioreview_assets.core.parsing import PARSER_VERSION, parse_concerns
from bioreview_assets.core.hashing import stable_hash
from bioreview_assets.store.artifacts import ArtifactStore, CorruptArtifact
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
    folder = generations_dir(model, split)
    table = store.read_parquet(*folder, "generations.parquet")
    meta = store.read_json(*folder, "meta.json") if store.exists(*folder, "meta.json") else {}
    _check_data_version(store, folder, table, meta)
    stored_versions = sorted(set(table["parser_version"].to_list())) if "parser_version" in table.columns else []
    reparsed = parsed_columns(table.select("article_id", "text", "error"))
    changed = 0
    if "concerns" in table.columns:
        changed = int((reparsed["concerns"] != table["concerns"]).sum())
    by_article = {
        row["article_id"]: [GeneratedConcern.from_dict(c) for c in json.loads(row["concerns"])]
        for row in reparsed.iter_rows(named=True)
    }
    lineage = {
        "parser_version": PARSER_VERSION,
        "stored_parser_versions": stored_versions,
        "rows_parsed_differently_than_stored": changed,
        "generations_data_version": meta.get("data_version"),
        "generation_key": meta.get("generation_key"),
    }
    return by_article, lineage


def generations_data_version(generation_key: str, table: pl.DataFrame) -> str:
    """The data version of a generations table: its raw texts under the generation key (unchanged outputs keep the
    version, so nothing downstream looks stale). meta.json records it; readers check the table against it."""
    return stable_hash([generation_key, table.select("article_id", "text", "error").rows()])


def _check_data_version(store: ArtifactStore, folder: tuple[str, ...], table: pl.DataFrame, meta: dict) -> None:
    """generations.parquet is rewritten beside its resume log (not committed with a manifest): the data_version its
    meta.json records (hash of the raw texts under the generation key) must be the table's, or the table was cut or
    changed after it was written (or the write of meta.json never happened) -- never parsed as if whole."""
    if not (meta.get("data_version") and meta.get("generation_key")):
        return  # written before data versions were recorded, or by hand (tests' oracle outputs)
    found = generations_data_version(meta["generation_key"], table)
    if found != meta["data_version"]:
        model, split = folder[-2:]
        raise CorruptArtifact(
            f"{store.url(*folder, 'generations.parquet')}: {table.height} rows whose content hash {found} is not the "
            f"data_version {meta['data_version']} of {store.url(*folder, 'meta.json')}: re-materialise "
            f"generations[{model}|{split}] (it resumes from its log)")
