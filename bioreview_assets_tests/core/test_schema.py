import json

import pytest
from pydantic import ValidationError

from bioreview_assets.core.schema import Article
from bioreview_assets.sample.generator import generate_sample_splits


def _row():
    return generate_sample_splits(sizes={"val": 1})["val"][0]


def test_round_trip_is_identity_on_canonical_rows():
    row = json.loads(json.dumps(_row()))
    dumped = Article.model_validate(row).to_row()
    for key, value in row.items():
        if key != "concerns":
            assert dumped[key] == value, key
    for original, again in zip(row["concerns"], dumped["concerns"]):
        assert {k: again[k] for k in original} == original


def test_legacy_sections_key_is_accepted():
    row = _row()
    row["sections"] = row.pop("paper_text_sections")
    article = Article.model_validate(row)
    assert article.paper_text_sections == row["sections"]


def test_minimal_v4_row_loads_with_defaults():
    row = {
        "id": "peerj:17001",
        "source": "peerj",
        "doi": "10.7717/peerj.17001",
        "title": "A title",
        "abstract": "x" * 60,
        "published_date": "2024-03-08",
    }
    article = Article.model_validate(row)
    assert article.concerns == [] and article.editorial_decision == "unknown"


def test_was_valid_is_recomputed_from_stance():
    row = _row()
    concern = dict(row["concerns"][0], author_stance="conceded", evidence_of_change=True, was_valid=False)
    row["concerns"] = [concern]
    assert Article.model_validate(row).concerns[0].was_valid is True


@pytest.mark.parametrize(
    "patch, message",
    [
        ({"abstract": "too short"}, "abstract"),
        ({"source": "arxiv"}, "source"),
        ({"id": "plos:123"}, "does not match source"),
    ],
)
def test_schema_violations_name_the_field(patch, message):
    row = {**_row(), **patch}
    with pytest.raises(ValidationError, match=message):
        Article.model_validate(row)
