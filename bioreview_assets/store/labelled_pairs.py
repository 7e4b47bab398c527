"""Labelled "same concern?" pairs: the bundled sample's generated pairs and people's label files (CSV or JSONL)."""

from __future__ import annotations

import gzip
from pathlib import Path

from bioreview_assets.config import env
from bioreview_assets.core.matcher_validation import LabelledPair, parse_labelled_pairs

SAMPLE_SOURCE = "sample-generator"


def read_label_file(path: str | Path) -> list[LabelledPair]:
    """One labels file (relative paths are from the repository root); missing or unreadable is an error."""
    file = Path(path)
    if not file.is_absolute():
        file = env.REPO_ROOT / file
    if not file.exists():
        raise FileNotFoundError(f"labelled pairs file {file} does not exist (configs/project.yaml "
                                "matcher_validation.labelled_pairs)")
    data = file.read_bytes()
    text = (gzip.decompress(data) if file.suffix == ".gz" else data).decode("utf-8")
    pairs = parse_labelled_pairs(text, str(file))
    if not pairs:
        raise ValueError(f"{file}: no labelled pair (every label empty?)")
    return pairs


def labelled_pair_sources(cfg) -> dict[str, list[LabelledPair]]:
    """Source name -> pairs: the sample generator's (when on) and each configured file, validated separately."""
    from bioreview_assets.sample.generator import BUNDLED_DIR, MATCHER_PAIRS_FILE

    sources = {}
    if cfg.sample_pairs:
        sources[SAMPLE_SOURCE] = read_label_file(BUNDLED_DIR / MATCHER_PAIRS_FILE)
    for path in cfg.labelled_pairs:
        sources[Path(path).name] = read_label_file(path)
    if not sources:
        raise ValueError("matcher_validation has no labelled pairs: turn sample_pairs on or name labelled_pairs files")
    return sources
