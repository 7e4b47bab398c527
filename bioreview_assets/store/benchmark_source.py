"""Where the benchmark split files come from: BIOREVIEW_DATA_DIR (an authorised copy) or the bundled sample."""

from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass
from pathlib import Path

from bioreview_assets.config import env
from bioreview_assets.sample.generator import BUNDLED_DIR


@dataclass(frozen=True)
class SplitFile:
    split: str
    path: Path
    is_sample: bool

    def read(self) -> bytes:
        """The split's JSONL bytes (decompressed when the file is gzipped); a corrupt archive names the file."""
        raw = self.path.read_bytes()
        if self.path.suffix != ".gz":
            if raw[:2] == b"\x1f\x8b":  # gzip magic: every "row" would be quarantined as invalid UTF-8
                raise ValueError(f"{self.path}: the file is gzip-compressed; name it {self.path.name}.gz or "
                                 f"decompress it (expected JSONL text)")
            return raw
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as err:  # BadGzipFile is an OSError; a cut-off archive an EOFError
            raise ValueError(f"{self.path}: not a readable gzip file ({err}); expected gzip-compressed JSONL") from err


def split_file(split: str) -> SplitFile:
    """The file for a split; a configured data dir without it is an error, never a silent switch to the sample."""
    folder = env.data_dir()
    if folder is None:
        return SplitFile(split, BUNDLED_DIR / f"{split}.jsonl.gz", is_sample=True)
    for name in (f"{split}.jsonl", f"{split}.jsonl.gz"):
        if (folder / name).exists():
            return SplitFile(split, folder / name, is_sample=False)
    raise FileNotFoundError(
        f"BIOREVIEW_DATA_DIR={folder} has no {split}.jsonl (or .jsonl.gz). Point it at the folder holding the "
        f"authorised benchmark split files, or unset it to use the bundled sample."
    )
