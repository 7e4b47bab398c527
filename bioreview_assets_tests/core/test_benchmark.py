import json

import pytest

import base64

from bioreview_assets.core.benchmark import (
    EmptySplit,
    OverlappingSplits,
    TooManyBadRows,
    check_disjoint,
    enforce_bad_row_limit,
    load_split,
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
    with pytest.raises(OverlappingSplits, match=r"in train \(split .train. line 1\) and val"):
        check_disjoint([parse_split("train", raw), parse_split("val", raw)])


def _with_text(line: str, text: str) -> str:
    row = json.loads(line)
    row["abstract"] = row["abstract"] + text
    return json.dumps(row, ensure_ascii=False)


def test_unicode_line_separators_inside_a_row_neither_break_it_nor_shift_line_numbers():
    lines = _lines(4)
    # U+2028, U+2029, U+0085, form feed and \x1c are line breaks to str.splitlines, but legal inside JSON strings.
    lines[1] = _with_text(lines[1], " one\u2028two\u2029three\u0085four\x0cfive\x1csix")
    raw = "\n".join([lines[0], lines[1], "{broken", lines[2], lines[3]]).encode()
    loaded = load_split("val", raw, "val.jsonl")
    assert len(loaded.articles) == 4 and "one\u2028two" in loaded.articles[1].abstract
    assert [(q.line, q.reason) for q in loaded.quarantined] == [(3, "unparsable_json")]
    assert loaded.line_of[loaded.articles[3].id] == 5


def test_invalid_utf8_quarantines_the_row_with_its_line_and_exact_bytes():
    lines = [line.encode() for line in _lines(3)]
    bad = lines[1].replace(b'"abstract": "', b'"abstract": "\xff\xfe', 1)
    raw = b"\n".join([lines[0], bad, lines[2]])
    loaded = load_split("val", raw, "val.jsonl")
    (row,) = loaded.quarantined
    assert (row.line, row.reason) == (2, "invalid_utf8") and "invalid UTF-8 at byte" in row.detail
    assert base64.b64decode(row.to_dict()["raw_base64"]) == bad  # nothing replaced, nothing lost
    assert "\\xff" in row.raw and len(loaded.articles) == 2


def test_lone_surrogate_escapes_bom_and_crlf():
    lines = _lines(3)
    surrogate = _with_text(lines[1], "\\ud800").replace("\\\\ud800", "\\ud800")
    raw = ("\ufeff" + lines[0] + "\r\n" + surrogate + "\r\n" + lines[2] + "\r\n").encode()
    loaded = load_split("val", raw, "val.jsonl")
    assert [(q.line, q.reason) for q in loaded.quarantined] == [(2, "invalid_unicode")]
    assert len(loaded.articles) == 2  # the BOM and the \r of CRLF are not part of any row


def test_too_many_bad_rows_names_file_reasons_key_and_quarantine_file():
    lines = _lines(3)
    raw = "\n".join([lines[0], "{oops", "[1]", lines[1], "nope", lines[2]]).encode() + b"\n\xff\n"
    loaded = load_split("val", raw, "/data/val.jsonl")
    with pytest.raises(TooManyBadRows) as err:
        enforce_bad_row_limit(loaded, 0.02, "/storage/benchmark/val/quarantine.jsonl")
    message = str(err.value)
    assert message.startswith("/data/val.jsonl: 4 of 7 rows are bad")
    assert "invalid_utf8=1, not_an_object=1, unparsable_json=2" in message
    assert "max_bad_row_fraction (configs/project.yaml)" in message and "line 2 (unparsable_json)" in message
    assert "/storage/benchmark/val/quarantine.jsonl" in message


def test_an_empty_split_file_is_an_error():
    with pytest.raises(EmptySplit, match="val.jsonl: no rows"):
        parse_split("val", b"\n  \n", source="val.jsonl")


def test_overlap_names_both_files_and_lines():
    lines = _lines(3)
    train = load_split("train", "\n".join(lines).encode(), "/d/train.jsonl")
    val = load_split("val", "\n".join([lines[2]]).encode(), "/d/val.jsonl")
    with pytest.raises(OverlappingSplits) as err:
        check_disjoint([train, val])
    assert "in train (/d/train.jsonl line 3) and val (/d/val.jsonl line 1)" in str(err.value)


def test_pathological_json_is_quarantined_not_raised():
    lines = _lines(1)
    raw = "\n".join([lines[0], "[" * 100_000, '{"id": ' + "9" * 5000 + "}", "null"]).encode()
    loaded = load_split("val", raw, "val.jsonl")
    assert [(q.line, q.reason) for q in loaded.quarantined] == [(2, "unparsable_json"), (3, "unparsable_json"),
                                                                (4, "not_an_object")]
    assert "expected an object" in loaded.quarantined[2].detail
