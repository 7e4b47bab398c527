import gzip
import re

from bioreview_assets.core.benchmark import parse_split
from bioreview_assets.core.schema import ALL_CATEGORIES, SOURCES
from bioreview_assets.sample.generator import BUNDLED_DIR, FLAWS, generate_sample_splits, write_sample


def test_bundled_files_are_the_generator_output(tmp_path):
    written = write_sample(tmp_path, compress=True)
    for split, path in written.items():
        assert path.read_bytes() == (BUNDLED_DIR / path.name).read_bytes(), split


def test_sample_covers_sources_categories_and_flags():
    splits = {s: parse_split(s, gzip.decompress((BUNDLED_DIR / f"{s}.jsonl.gz").read_bytes())) for s in
              ("train", "val", "test")}
    assert [len(splits[s].articles) for s in ("train", "val", "test")] == [120, 30, 30]
    for loaded in splits.values():
        assert not loaded.quarantined
        assert {a.source for a in loaded.articles} == set(SOURCES)
    concerns = [c for a in splits["train"].articles for c in a.concerns]
    assert {c.category for c in concerns} == set(ALL_CATEGORIES)
    assert {c.severity for c in concerns} == {"major", "minor", "optional"}
    assert any(c.requires_figure_reading for c in concerns)
    assert sum((BUNDLED_DIR / f"{s}.jsonl.gz").stat().st_size for s in splits) < 400_000


def _pattern(template: str) -> re.Pattern:
    parts = re.split(r"\{\w+\}", template)
    return re.compile(".+?".join(re.escape(p) for p in parts), re.IGNORECASE)


def test_every_concern_follows_from_the_article_text():
    for article in generate_sample_splits()["val"]:
        text = " ".join(article["paper_text_sections"].values())
        for concern in article["concerns"]:
            flaws = [f for f in FLAWS if any(_pattern(c).fullmatch(concern["concern_text"]) for c in f.concerns)]
            assert flaws, concern["concern_text"]
            assert any(_pattern(f.evidence).search(text) for f in flaws), (concern["concern_text"], article["id"])
