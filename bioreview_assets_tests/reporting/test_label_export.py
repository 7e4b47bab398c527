"""label-export: the CSV is the labelled-pairs format once filled; the HTML page is self-contained."""

import csv
import io
import json
import re

from bioreview_assets.core.matcher_validation import parse_labelled_pairs
from bioreview_assets.reporting.label_export import EXPORT_COLUMNS, export_rows, to_csv, to_html

PAIRS = [{"text_a": 'Too few mice, "n=3".', "text_b": "The sample is small.", "similarity": 0.71, "system": "bm25",
          "split": "val", "article_id": "elife:1"},
         {"text_a": "Ends a tag </script><b>x</b>", "text_b": "Define ROS.", "similarity": 0.2}]


def test_filled_csv_reads_back_as_labelled_pairs():
    text = to_csv(export_rows(PAIRS, "minilm"))
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0]) == EXPORT_COLUMNS and rows[0]["label"] == "" and rows[0]["similarity"] == "0.71"
    assert parse_labelled_pairs(text) == []  # nothing labelled yet
    rows[0].update(label="1", annotator="ann")
    rows[1].update(label="0", annotator="ann")
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=EXPORT_COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    pairs = parse_labelled_pairs(out.getvalue())
    assert [(p.text_a, p.label, p.annotator) for p in pairs] == [('Too few mice, "n=3".', True, "ann"),
                                                                 ("Ends a tag </script><b>x</b>", False, "ann")]


def test_html_page_is_self_contained_and_embeds_every_pair():
    page = to_html(export_rows(PAIRS, "minilm"), "pairs-minilm.csv", "minilm pairs")
    assert not re.search(r"(src|href)=[\"']?https?:", page)  # no network
    data = re.search(r'<script id="data" type="application/json">(.*?)</script>', page, re.S).group(1)
    assert [r["text_a"] for r in json.loads(data)] == [p["text_a"] for p in PAIRS]  # "</script>" did not end it
    assert "keydown" in page and "'y'" in page and "'n'" in page and "text/csv" in page
    assert json.dumps(EXPORT_COLUMNS) in page  # the page saves the same columns as the CSV
