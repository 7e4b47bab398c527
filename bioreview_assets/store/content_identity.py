"""Content hashes of model folders (base weights, adapters, merged models): what a resume or cache is keyed by.

A folder's hash covers every file's relative path and bytes (weights, config.json, generation_config.json, the
tokenizer), except the provenance JSON we write beside the weights (it holds machine-specific paths). Hashing 16 GB
of weights takes seconds, so the result is kept on local disk keyed by the files' (path, size, mtime): an
unchanged folder is hashed once per machine.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from bioreview_assets.store.artifacts import local_cache_root
from bioreview_assets.store.atomic import write_text_atomic

# Written by us beside the weights; they describe where things came from, not what the model computes.
PROVENANCE_FILES = frozenset({"adapter_meta.json", "merge_meta.json", "bioreview_checkpoint.json", "README.md"})
_CHUNK = 1 << 22


def folder_hash(folder: Path, length: int = 16) -> str:
    """Short sha256 over the relative paths and bytes of every file under `folder` (provenance files excluded)."""
    folder = Path(folder)
    files = _content_files(folder)
    if not files:
        raise FileNotFoundError(f"no files under {folder} to identify the model by")
    stats = [[rel, st.st_size, st.st_mtime_ns] for rel, st in ((rel, (folder / rel).stat()) for rel in files)]
    memo = _memo_path(folder)
    try:
        cached = json.loads(memo.read_text())
        if cached["stats"] == stats and cached["length"] == length:
            return cached["hash"]
    except (OSError, ValueError, KeyError):
        pass
    digest = hashlib.sha256()
    for rel in files:
        digest.update(f"{rel}\0".encode())
        with open(folder / rel, "rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
        digest.update(b"\n")
    value = digest.hexdigest()[:length]
    try:
        write_text_atomic(memo, json.dumps({"folder": str(folder), "stats": stats, "length": length, "hash": value}))
    except OSError:  # a read-only cache only costs a re-hash next time
        pass
    return value


def _content_files(folder: Path) -> list[str]:
    """Relative paths of the files that make up a model (hidden files and provenance JSON left out), sorted."""
    out = []
    for path in folder.rglob("*"):
        rel = path.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts) or path.name in PROVENANCE_FILES or not path.is_file():
            continue
        out.append(rel.as_posix())
    return sorted(out)


def _memo_path(folder: Path) -> Path:
    key = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:24]
    return local_cache_root() / "content_hashes" / f"{key}.json"
