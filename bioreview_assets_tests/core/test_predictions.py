import pytest

from bioreview_assets.core.predictions import BadPredictions, read_predictions


def test_harness_rules_for_ids_strings_and_dicts():
    lines = [
        '{"article_id": "a:1", "concerns": ["x one", "  ", "x two"]}',
        '{"id": "a:2", "concerns": [{"text": "t"}, {"concern_text": "c"}, {"category": "other"}, 5]}',
        "",
        '{"article_id": "a:3", "concerns": []}',
    ]
    out = read_predictions(lines)
    assert [c["text"] for c in out["a:1"]] == ["x one", "x two"]
    assert [c["text"] for c in out["a:2"]] == ["t", "c", ""]  # empty text kept and counted, non-dict dropped
    assert out["a:3"] == []


@pytest.mark.parametrize(
    "lines, message",
    [
        (['{"article_id": "a", "concerns": []}', '{"article_id": "a", "concerns": []}'], "line 2: duplicate"),
        (["{oops"], "line 1: not JSON"),
        (['{"concerns": []}'], "no article_id"),
        (['{"article_id": "a", "concerns": ["s", {"text": "d"}]}'], "only strings"),
    ],
)
def test_bad_files_name_the_line(lines, message):
    with pytest.raises(BadPredictions, match=message):
        read_predictions(lines)
