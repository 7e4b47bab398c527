import json

import pytest

from bioreview_assets.core.benchmark import (
    OverlappingSplits,
    TooManyBadRows,
    check_disjoint,
    parse_split,
)
from bioreview_assets.sample.generator import generate_sample_splits


def _lines(n=10):
    return [json.dumps(row) for row in generate_sample_splits(sizes={"val": n})["val"]]


def test_each_quarantine_reason_with_line_numbers():
    lines = _lines(6)
    bad_schema = json.loads(lines[1])
    bad_schema["abstract"] = "short"
    raw = "\n".join(
        [lines[0], json.dumps(bad_schema), "{not json", "[1, 2]", lines[0], lines[2]]
    ).encode()
    loaded = parse_split("val", raw, max_bad_fraction=1.0)
    reasons = {row.line: row.reason for row in loaded.quarantined}
    assert reasons == {2: "schema", 3: "unparsable_json", 4: "not_an_object", 5: "duplicate_id"}
    assert [a.id for a in loaded.articles] == [json.loads(lines[0])["id"], json.loads(lines[2])["id"]]
    assert "abstract" in loaded.quarantined[0].detail
    assert loaded.quarantined[1].raw == "{not json"  # no data lost: the raw line is kept


def test_too_many_bad_rows_fails_loudly():
    raw = "\n".join(_lines(3) + ["oops"]).encode()
    with pytest.raises(TooManyBadRows, match="1 of 4 rows"):
        parse_split("val", raw, max_bad_fraction=0.2)
    assert len(parse_split("val", raw, max_bad_fraction=0.3).quarantined) == 1


def test_content_hash_tracks_bytes():
    raw = "\n".join(_lines(3)).encode()
    assert parse_split("val", raw).content_hash == parse_split("val", raw).content_hash
    assert parse_split("val", raw).content_hash != parse_split("val", raw + b"\n ").content_hash


def test_blank_lines_are_ignored():
    raw = ("\n\n".join(_lines(2)) + "\n\n").encode()
    loaded = parse_split("val", raw)
    assert len(loaded.articles) == 2 and not loaded.quarantined


def test_splits_sharing_an_article_is_an_error():
    raw = "\n".join(_lines(2)).encode()
    with pytest.raises(OverlappingSplits, match="train and val|val and train"):
        check_disjoint([parse_split("train", raw), parse_split("val", raw)])
