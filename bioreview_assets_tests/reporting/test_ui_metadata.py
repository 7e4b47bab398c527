"""What the UI shows beside a materialisation: F1 with its CI as text, rounded numbers, previews, table schemas."""

import json

import dagster as dg
import polars as pl

from bioreview_assets.reporting.formatting import (
    aligned_table, frame_table, labelled_ci, markdown_table, number, rounded, with_ci,
)
from bioreview_assets.orchestration.ui_metadata import GLOSSARY, generation_preview, match_preview, table_metadata, without_nulls


def test_f1_with_ci_is_plain_text_with_three_digits():
    assert labelled_ci("F1", 0.39212, (0.3431, 0.44349)) == "F1 0.392 [0.343, 0.443]"
    assert labelled_ci("F1", 0.5, None) == "F1 0.500"
    assert with_ci(0.5, (0.4, None), missing="-") == "0.500" and with_ci(None, None, missing="-") == "-"


def test_one_formatting_for_the_ui_the_report_the_card_and_the_terminal():
    assert (number(None), number(None, missing="-"), number(0.12345, 4), number(3)) == ("n/a", "-", "0.1235", "3")
    assert markdown_table(["a", "b"], [["1", "x"]]) == "| a | b |\n|---|---|\n| 1 | x |"
    assert markdown_table(["a"], []) == "_no rows_"
    frame = pl.DataFrame({"system": ["bm25", "tuned"], "f1": [0.25, None]})
    assert frame_table(frame) == "| system | f1 |\n|---|---|\n| bm25 | 0.250 |\n| tuned |  |"
    assert aligned_table(["system", "f1"], [["bm25", 0.25], ["x", None]]) == [
        "system     f1", "bm25    0.250", "x        None"]


def test_numbers_are_rounded_and_not_measured_entries_dropped():
    meta = without_nulls({"f1": 0.4771234567, "peak_gpu_memory_gib": None, "nested": {"a": 0.12345, "b": None}})
    assert meta == {"f1": 0.477, "nested": {"a": 0.123}}
    assert rounded([0.11111, 2]) == [0.111, 2]


def test_glossary_defines_every_metric_once():
    for term in ("**F1**", "**null F1**", "**count-oracle F1**", "**F1 above null**", "**recall-major**", "**CI**"):
        assert GLOSSARY.count(term) == 1, term


def test_match_preview_puts_reference_beside_generated_with_similarity_and_match():
    rows = pl.DataFrame([
        {"article_id": "a1", "source": "plos", "row_kind": "reference", "gt_text": "No controls | shown",
         "generated_text": "Controls are missing", "similarity": 0.81234, "matched": True},
        {"article_id": "a1", "source": "plos", "row_kind": "reference", "gt_text": "Small n",
         "generated_text": None, "similarity": None, "matched": False},
        {"article_id": "a1", "source": "plos", "row_kind": "generated_only", "gt_text": None,
         "generated_text": "Typos", "similarity": 0.2, "matched": False},
    ])
    text = match_preview(rows).value
    assert "**a1** (plos): 1 of 2 reference concerns matched" in text
    assert "| No controls / shown | Controls are missing | 0.812 | yes |" in text
    assert "| (none matched) | Typos | 0.200 | no |" in text


def test_generation_preview_shows_first_concerns_beside_the_references():
    table = pl.DataFrame([{"article_id": "a1", "parse_method": "json", "error": None,
                           "concerns": json.dumps([{"text": "Add a control"}])}])
    text = generation_preview(table, {"a1": ["Controls missing", "Sample size"]}).value
    assert "**a1**: 1 generated (json), 2 reference" in text
    assert "| Add a control | Controls missing |" in text and "|  | Sample size |" in text


def test_table_metadata_uses_dagsters_standard_keys():
    meta = table_metadata(pl.DataFrame({"a": [1, 2], "b": ["x", "y"]}), {"a": "a number"})
    assert meta["dagster/row_count"] == 2
    schema = meta["dagster/column_schema"]
    assert isinstance(schema, dg.TableSchema)
    assert [(c.name, c.type, c.description) for c in schema.columns] == [("a", "int", "a number"), ("b", "string", None)]
