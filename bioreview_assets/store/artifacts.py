"""Artefact store: one root (local folder, shared volume or s3://), layout <asset>/<system>/<split>/..., atomic writes."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import fsspec
import polars as pl

from bioreview_assets.env import local_cache_root, storage_root
from bioreview_assets.store.atomic import fs_write_atomic, replace_dir


class ArtifactStore:
    """Reads and writes artefacts under one root through fsspec; every write is temp file + rename."""

    def __init__(self, root: str | None = None):
        self.root = (root or storage_root()).rstrip("/")
        self.fs, self._root_path = fsspec.url_to_fs(self.root)

    @property
    def is_local(self) -> bool:
        return "file" in (self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,))

    def path(self, *parts: str) -> str:
        """Path of an artefact under the root (parts are joined with '/')."""
        return "/".join([self._root_path, *[str(p).strip("/") for p in parts]])

    def url(self, *parts: str) -> str:
        """The same path with the protocol, for metadata and DuckDB."""
        path = self.path(*parts)
        return path if self.is_local else self.fs.unstrip_protocol(path)

    def exists(self, *parts: str) -> bool:
        return self.fs.exists(self.path(*parts))

    def write_bytes(self, data: bytes, *parts: str) -> str:
        """Atomic write: readers see the old file or the new one, never half a file."""
        return fs_write_atomic(self.fs, self.path(*parts), lambda handle: handle.write(data))

    def read_bytes(self, *parts: str) -> bytes:
        with self.fs.open(self.path(*parts), "rb") as handle:
            return handle.read()

    def write_json(self, payload: Any, *parts: str) -> str:
        return self.write_bytes(json.dumps(payload, indent=2, ensure_ascii=False, default=str).encode(), *parts)

    def read_json(self, *parts: str) -> Any:
        return json.loads(self.read_bytes(*parts))

    def write_jsonl(self, rows: list[dict], *parts: str) -> str:
        return self.write_bytes("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode(), *parts)

    def read_jsonl(self, *parts: str) -> list[dict]:
        # Split on "\n" only: str.splitlines would also cut at U+2028/U+0085 inside JSON strings (ensure_ascii=False).
        return [json.loads(line) for line in self.read_bytes(*parts).decode().split("\n") if line.strip()]

    def write_parquet(self, frame: pl.DataFrame, *parts: str) -> str:
        buffer = io.BytesIO()
        frame.write_parquet(buffer)
        return self.write_bytes(buffer.getvalue(), *parts)

    def read_parquet(self, *parts: str) -> pl.DataFrame:
        return pl.read_parquet(io.BytesIO(self.read_bytes(*parts)))

    def glob(self, *parts: str) -> list[str]:
        return sorted(self.fs.glob(self.path(*parts)))

    def local_dir(self, *parts: str) -> Path:
        """A local folder for a directory artefact (adapter, merged model). Remote roots stage under the local cache."""
        if self.is_local:
            path = Path(self.path(*parts))
        else:
            path = local_cache_root() / "staged" / "/".join(parts)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def publish_dir(self, local: Path, *parts: str) -> str:
        """Make a finished local folder the artefact at parts (upload for remote roots; rename locally)."""
        target = self.path(*parts)
        if self.is_local:
            if Path(target).resolve() != local.resolve():
                Path(target).parent.mkdir(parents=True, exist_ok=True)
                replace_dir(local, Path(target))
            return target
        self.fs.put(str(local), target, recursive=True)
        return self.url(*parts)

    def fetch_dir(self, *parts: str) -> Path:
        """Local copy of a directory artefact (itself when the root is local)."""
        if self.is_local:
            path = Path(self.path(*parts))
            if not path.exists():
                raise FileNotFoundError(f"artefact folder {path} does not exist; materialise its asset first")
            return path
        local = local_cache_root() / "fetched" / "/".join(parts)
        if not local.exists():
            self.fs.get(self.path(*parts), str(local), recursive=True)
        return local
