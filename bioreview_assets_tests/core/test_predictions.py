import json

import pytest

from bioreview_assets.core.predictions import BadPredictions, prediction_coverage, read_predictions


def test_harness_rules_for_ids_strings_and_dicts():
    lines = [
        '{"article_id": "a:1", "concerns": ["x one", "  ", "x two"]}',
        '{"id": "a:2", "concerns": [{"text": "t"}, {"concern_text": "c"}, {"category": "other"}, 5]}',
        "",
        '{"article_id": "a:3", "concerns": []}',
        '{"article_id": "", "id": "a:4", "concerns": null}',
    ]
    out = read_predictions(lines)
    assert [c["text"] for c in out.by_article["a:1"]] == ["x one", "x two"]
    assert [c["text"] for c in out.by_article["a:2"]] == ["t", "c", ""]  # empty text kept, non-dict dropped
    assert out.by_article["a:3"] == [] and out.by_article["a:4"] == []  # a falsy article_id falls back to id
    assert out.line_of == {"a:1": 1, "a:2": 2, "a:3": 4, "a:4": 5}
    # Harness semantics kept, but nothing is dropped without a word.
    assert any("line 2: 'a:2': 1 non-object items" in w and "concerns[3]" in w for w in out.warnings)
    assert any("line 5: 'a:4' has no \"concerns\"" in w for w in out.warnings)


@pytest.mark.parametrize(
    "row, expected",
    [
        ('{"article_id": "a", "concerns": "one string"}',
         '"concerns" must be a list of strings or of objects, got a string (a string would be scored as one concern '
         'per character)'),
        ('["a", ["x"]]', "the row is an array, expected an object"),
        ('"just a string"', "the row is a string, expected an object"),
        ("42", "the row is a number, expected an object"),
        ('{"article_id": "a", "concerns": {"text": "x"}}', '"concerns" must be a list of strings or of objects, got an '
                                                          'object'),
        ('{"article_id": "a", "concerns": 3}', '"concerns" must be a list of strings or of objects, got a number'),
        ('{"article_id": "a", "concerns": [{"text": "x", "category": 3}]}',
         "concerns[0].category must be a string or null, got a number 3"),
        ('{"article_id": "a", "concerns": [{"text": "x", "severity": ["major"]}]}',
         "concerns[0].severity must be a string or null, got an array"),
        ('{"article_id": "a", "concerns": [{"text": 7}]}', "concerns[0].text must be a string, got a number"),
        ('{"article_id": 123, "concerns": []}', '"article_id" must be a string, got a number 123 (write it as "123")'),
        ('{"id": 7, "concerns": []}', '"id" must be a string, got a number 7'),
        ('{"article_id": "a", "concerns": ["s", {"text": "d"}]}',
         "a concern list that starts with a string must hold only strings; concerns[1] is an object"),
        ('{"article_id": "a", "concerns": [1, 2]}', 'concerns[0] is a number, expected a string or an object'),
        ('{"concerns": []}', 'no "article_id" or "id"'),
        ("{oops", "not JSON (Expecting property name"),
    ],
)
def test_every_malformed_row_names_file_line_and_expectation(row, expected):
    raw = '{"article_id": "ok", "concerns": []}\n' + row + "\n"
    with pytest.raises(BadPredictions) as err:
        read_predictions(raw.encode(), source="preds.jsonl")
    message = str(err.value)
    assert message.startswith("preds.jsonl: 1 malformed rows (expected one JSON object per line")
    assert f"line 2: {expected}" in message


def test_all_malformed_rows_are_reported_at_once_and_duplicates_name_the_first_line():
    raw = b'{"article_id": "a", "concerns": []}\n[1]\n{"article_id": "a", "concerns": []}\n\xff\n'
    with pytest.raises(BadPredictions) as err:
        read_predictions(raw, source="p.jsonl")
    message = str(err.value)
    assert "p.jsonl: 3 malformed rows" in message
    assert "line 2: the row is an array" in message
    assert "line 3: duplicate article id 'a' (first on line 1)" in message
    assert "line 4: invalid UTF-8 at byte 0" in message


def test_u2028_inside_a_concern_neither_breaks_the_row_nor_shifts_line_numbers():
    raw = json.dumps({"article_id": "a", "concerns": ["one\u2028two\u0085three"]}, ensure_ascii=False) + "\n[1]\n"
    with pytest.raises(BadPredictions, match="1 malformed rows.*\n  line 2: the row is an array"):
        read_predictions(raw.encode(), source="p.jsonl")
    ok = read_predictions(raw.split("\n")[0].encode())
    assert ok.by_article["a"] == [{"text": "one\u2028two\u0085three"}]


def test_an_empty_file_is_an_error():
    with pytest.raises(BadPredictions, match="empty.jsonl: no predictions"):
        read_predictions(b"\n \n", source="empty.jsonl")


def test_coverage_lists_missing_and_unknown_ids_with_examples():
    raw = b'{"article_id": "a", "concerns": ["x"]}\n{"article_id": "zz", "concerns": ["y"]}\n'
    coverage = prediction_coverage(read_predictions(raw, source="p.jsonl"), ["a", "b", "c"], "val")
    assert coverage["covered_articles"] == 1 and coverage["missing_articles"] == 2
    assert coverage["missing_examples"] == ["b", "c"]
    assert coverage["unknown_ids"] == 1 and coverage["unknown_examples"] == [{"id": "zz", "line": 2}]
    unknown, missing = coverage["warnings"]
    assert "1 predictions are for ids not in the val split and are ignored, as the harness does: 'zz' (line 2)" \
        in unknown
    assert "2 of 3 val articles have no prediction and are scored with zero concerns, e.g. 'b', 'c'" in missing


def test_a_file_covering_no_article_of_the_split_is_an_error():
    raw = b'{"article_id": "other:1", "concerns": ["x"]}\n'
    with pytest.raises(BadPredictions) as err:
        prediction_coverage(read_predictions(raw, source="p.jsonl"), ["elife:1", "plos:2"], "val")
    assert "p.jsonl: none of its 1 article ids is in the val split (2 articles), e.g. 'other:1' (line 1)" \
        in str(err.value)
    assert "'elife:1', 'plos:2'" in str(err.value)
