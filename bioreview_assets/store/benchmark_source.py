"""Where the benchmark split files come from: BIOREVIEW_DATA_DIR (an authorised copy) or the bundled sample."""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path

from bioreview_assets.sample.generator import BUNDLED_DIR


@dataclass(frozen=True)
class SplitFile:
    split: str
    path: Path
    is_sample: bool

    def read(self) -> bytes:
        """The split's JSONL bytes (decompressed when the file is gzipped)."""
        raw = self.path.read_bytes()
        return gzip.decompress(raw) if self.path.suffix == ".gz" else raw


def data_dir() -> Path | None:
    value = os.environ.get("BIOREVIEW_DATA_DIR")
    return Path(value).expanduser() if value else None


def split_file(split: str) -> SplitFile:
    """The file for a split; a configured data dir without it is an error, never a silent switch to the sample."""
    folder = data_dir()
    if folder is None:
        return SplitFile(split, BUNDLED_DIR / f"{split}.jsonl.gz", is_sample=True)
    for name in (f"{split}.jsonl", f"{split}.jsonl.gz"):
        if (folder / name).exists():
            return SplitFile(split, folder / name, is_sample=False)
    raise FileNotFoundError(
        f"BIOREVIEW_DATA_DIR={folder} has no {split}.jsonl (or .jsonl.gz). Point it at the folder holding the "
        f"authorised benchmark split files, or unset it to use the bundled sample."
    )
