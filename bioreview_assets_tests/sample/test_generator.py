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


def _flaw_of(text: str) -> str:
    return next(f.key for f in FLAWS for c in f.concerns if _pattern(c).fullmatch(text))


def test_reviewers_overlap_as_real_ones_do():
    """About 30% of a reviewer's concerns (articles with >= 2 reviewers) are raised by another reviewer too, in other
    words; single-reviewer articles have no second reviewer."""
    shared = total = 0
    for rows in generate_sample_splits().values():
        for row in rows:
            concerns = [c for c in row["concerns"] if not c["requires_figure_reading"]]
            reviewers_of: dict[str, set[int]] = {}
            texts_of: dict[str, set[str]] = {}
            for c in concerns:
                reviewers_of.setdefault(_flaw_of(c["concern_text"]), set()).add(c["reviewer_num"])
                texts_of.setdefault(_flaw_of(c["concern_text"]), set()).add(c["concern_text"])
            if len({c["reviewer_num"] for c in concerns}) < 2:
                assert all(len(r) == 1 for r in reviewers_of.values())
                continue
            for flaw, reviewers in reviewers_of.items():
                if len(reviewers) > 1:
                    assert len(texts_of[flaw]) == len(reviewers)  # each reviewer in its own words
            for c in concerns:
                total += 1
                shared += len(reviewers_of[_flaw_of(c["concern_text"])]) > 1
    assert 0.25 <= shared / total <= 0.38, shared / total
    ids = [c["concern_id"] for rows in generate_sample_splits().values() for row in rows for c in row["concerns"]]
    assert len(ids) == len(set(ids))


def test_bundled_matcher_pairs_are_the_generator_output(tmp_path):
    from bioreview_assets.sample.generator import MATCHER_PAIRS_FILE, matcher_pairs, write_matcher_pairs

    assert write_matcher_pairs(tmp_path).read_bytes() == (BUNDLED_DIR / MATCHER_PAIRS_FILE).read_bytes()
    rows = matcher_pairs()
    kinds = {k: [r for r in rows if r["kind"] == k] for k in ("positive", "hard_negative", "negative")}
    assert all(r["label"] for r in kinds["positive"]) and not any(r["label"] for r in rows if r["kind"] != "positive")
    for r in kinds["hard_negative"]:  # same category, different flaw
        fa = [f for f in FLAWS if any(_pattern(c).fullmatch(r["text_a"]) for c in f.concerns)]
        fb = [f for f in FLAWS if any(_pattern(c).fullmatch(r["text_b"]) for c in f.concerns)]
        assert fa[0].category == fb[0].category and fa[0].key != fb[0].key
    assert len(kinds["hard_negative"]) >= 100 and len(kinds["positive"]) >= 200
