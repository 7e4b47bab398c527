"""What the Dagster UI shows beside a materialisation: metric glossary, previews of generated vs reference concerns, inline PNG plots, row counts and column schemas (pure
functions, no I/O)."""

from __future__ import annotations

import base64
import json

import dagster as dg
import polars as pl

from bioreview_assets.reporting.formatting import record_table, rounded

GLOSSARY = """\
| term | meaning |
|---|---|
| **F1** | micro F1 over every article of the split: 2PR/(P+R), where a generated concern counts as a hit when the \
matcher pairs it one-to-one with a reference concern (articles missing from the output count with zero concerns) |
| **recall / precision** | matched reference concerns / all reference concerns; matched generated concerns / all \
generated concerns |
| **recall-major** | recall over the reference concerns of major severity only |
| **CI** | 95% bootstrap interval over articles (resampled with replacement), written `F1 0.392 [0.343, 0.443]` |
| **null F1** | F1 of the same concerns scored against another article of the same source: what the concern count \
alone earns. A system whose F1 is close to its null F1 is rewarded for how many concerns it writes, not for what \
they say |
| **F1 above null** | F1 minus null F1: the part of the score earned by content |
| **count-oracle F1** | F1 if min(#generated, #reference) pairs matched on every article: the ceiling at this \
concern count |
| **similarity** | the matcher's cosine similarity of a generated and a reference concern; a pair matches above the \
matcher's threshold |
"""


def glossary() -> dg.MetadataValue:
    return dg.MetadataValue.md(GLOSSARY)


def without_nulls(metadata: dict) -> dict:
    """Metadata with None values dropped and floats rounded (a None in the UI reads as a broken value)."""
    return {k: rounded(v) for k, v in metadata.items() if v is not None}


_POLARS_TO_NAME = {pl.String: "string", pl.Boolean: "bool", pl.Float64: "float", pl.Float32: "float",
                   pl.Int64: "int", pl.Int32: "int", pl.Int16: "int", pl.Int8: "int", pl.UInt32: "int",
                   pl.UInt64: "int"}


def column_schema(frame: pl.DataFrame, descriptions: dict[str, str] | None = None) -> dg.TableSchema:
    descriptions = descriptions or {}
    return dg.TableSchema(columns=[
        dg.TableColumn(name, _POLARS_TO_NAME.get(dtype.base_type(), str(dtype)), description=descriptions.get(name))
        for name, dtype in frame.schema.items()
    ])


def table_metadata(frame: pl.DataFrame, descriptions: dict[str, str] | None = None) -> dict:
    """Dagster's standard row count and column schema entries for a table asset."""
    return {"dagster/row_count": frame.height, "dagster/column_schema": column_schema(frame, descriptions)}


def match_preview(matches: pl.DataFrame, articles: int = 3, per_article: int = 4) -> dg.MetadataValue:
    """Reference concerns of the first articles beside the generated concern matched to them (or the nearest one),
    with the similarity and whether it matched; then generated concerns that matched nothing."""
    if matches.is_empty():
        return dg.MetadataValue.md("_no reference or generated concerns in this partition_")
    ids = matches["article_id"].unique(maintain_order=True).head(articles).to_list()
    parts = []
    for aid in ids:
        rows = matches.filter(pl.col("article_id") == aid)
        refs = rows.filter(pl.col("row_kind") == "reference").head(per_article).to_dicts()
        extra = rows.filter(pl.col("row_kind") == "generated_only").head(2).to_dicts()
        table = [{"reference concern": r["gt_text"], "generated concern (matched or nearest)": r["generated_text"],
                  "similarity": r["similarity"], "match": "yes" if r["matched"] else "no"} for r in refs]
        table += [{"reference concern": "(none matched)", "generated concern (matched or nearest)": r["generated_text"],
                   "similarity": r["similarity"], "match": "no"} for r in extra]
        n_ref = rows.filter(pl.col("row_kind") == "reference").height
        n_hit = int(rows["matched"].sum())
        parts += [f"**{aid}** ({rows['source'][0]}): {n_hit} of {n_ref} reference concerns matched",
                  record_table(table, ["reference concern", "generated concern (matched or nearest)",
                                         "similarity", "match"])]
    return dg.MetadataValue.md("\n\n".join(parts))


def generation_preview(table: pl.DataFrame, references: dict[str, list[str]], articles: int = 3,
                       per_article: int = 4) -> dg.MetadataValue:
    """The first parsed concerns of the first articles beside the article's reference concerns (not yet matched)."""
    if table.is_empty():
        return dg.MetadataValue.md("_no generations_")
    parts = []
    for row in table.head(articles).to_dicts():
        generated = [c.get("text", "") for c in json.loads(row.get("concerns") or "[]")]
        reference = references.get(row["article_id"], [])
        n = min(max(len(generated), len(reference)), per_article)
        lines = [{"generated concern": generated[i] if i < len(generated) else "",
                  "reference concern": reference[i] if i < len(reference) else ""} for i in range(n)]
        status = row.get("error") or row.get("parse_method")
        parts += [f"**{row['article_id']}**: {len(generated)} generated ({status}), {len(reference)} reference",
                  record_table(lines, ["generated concern", "reference concern"]) if lines else "_empty output_"]
    return dg.MetadataValue.md("\n\n".join(parts))


def link(store, *parts: str) -> dg.MetadataValue:
    """A stored file as a path (local storage) or a URL (object storage), so the UI shows it as a link."""
    return dg.MetadataValue.path(store.url(*parts)) if store.is_local else dg.MetadataValue.url(store.url(*parts))


def png_markdown(png: bytes, alt: str) -> dg.MetadataValue:
    """An inline PNG for the Dagster UI (a markdown MetadataValue with a data URI); reporting/plots.py draws it."""
    return dg.MetadataValue.md(f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})")
