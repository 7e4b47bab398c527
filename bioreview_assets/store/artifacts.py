"""Artefact store: one root (local folder, shared volume or s3://), layout <asset>/<system>/<split>/..., atomic writes."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import fsspec
import polars as pl

from bioreview_assets.config.env import local_cache_root, storage_root
from bioreview_assets.store.atomic import fs_write_atomic, replace_dir

log = logging.getLogger(__name__)

# A committed partition folder lists every file it was committed with (bytes, sha256); readers check against it.
MANIFEST = "manifest.json"
# Partitions are staged under <root>/.staging/<asset>/.../<key>.tmp-<id>: the same filesystem as the partition (so
# the commit is a rename), outside every glob the catalog reads (<asset>/*/*/...).
STAGING = ".staging"


class CorruptArtifact(ValueError):
    """A stored file that cannot be parsed, or that differs from what its partition was committed with."""


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
            data = handle.read()
        self._check_against_manifest(parts, data)
        return data

    def _check_against_manifest(self, parts: tuple[str, ...], data: bytes) -> None:
        """A file of a committed partition must have the bytes and hash the commit recorded (a cut or replaced file
        is an error naming it, never read as if whole)."""
        if parts[-1] == MANIFEST or not self.exists(*parts[:-1], MANIFEST):
            return
        recorded = self.read_json(*parts[:-1], MANIFEST)["files"].get(parts[-1])
        if recorded is None:
            return
        digest = hashlib.sha256(data).hexdigest()
        if (len(data), digest) != (recorded["bytes"], recorded["sha256"]):
            raise CorruptArtifact(
                f"{self.url(*parts)}: {len(data)} bytes with sha256 {digest[:16]}, but the partition was committed "
                f"with {recorded['bytes']} bytes, sha256 {recorded['sha256'][:16]} ({self.url(*parts[:-1], MANIFEST)})"
                f": the file was cut or changed after it was written; re-materialise this partition")

    @contextmanager
    def partition(self, *parts: str) -> Iterator[tuple[str, ...]]:
        """Write a partition folder as a unit: yields the parts of a staging folder to write every file into; when
        the block succeeds a manifest is added and the folder replaces `parts` at once (a rename on a local root),
        when it raises the staging folder is removed. Staging leftovers of an earlier failed write (a killed
        process) are removed first: callers hold the partition's lock (store/locks.py), so no one else writes it.
        """
        parent, key = (STAGING, *parts[:-1]), parts[-1]
        for leftover in self.fs.glob(self.path(*parent, f"{key}.tmp-*")):
            log.warning("removing %s, left by a failed write of %s", leftover, self.url(*parts))
            self.fs.rm(leftover, recursive=True)
        staging = (*parent, f"{key}.tmp-{uuid.uuid4().hex}")
        self.fs.makedirs(self.path(*staging), exist_ok=True)
        try:
            yield staging
            files, folder = {}, self.path(*staging)
            for path in sorted(self.fs.find(folder)):
                with self.fs.open(path, "rb") as handle:
                    data = handle.read()
                files[path[len(folder) + 1:]] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
            self.write_json({"files": files}, *staging, MANIFEST)
            target = self.path(*parts)
            if self.is_local:
                Path(target).parent.mkdir(parents=True, exist_ok=True)
                # The replaced partition goes aside under .staging (a name the next commit's leftover sweep
                # removes), never beside `target` where the globs <asset>/*/*/... would read it as a second copy.
                replace_dir(Path(self.path(*staging)), Path(target), old=Path(self.path(*staging) + "-old"))
            else:  # object stores have no folder rename: the copy is visible file by file
                if self.fs.exists(target):
                    self.fs.rm(target, recursive=True)
                self.fs.mv(self.path(*staging), target, recursive=True)
        except BaseException:
            if self.fs.exists(self.path(*staging)):
                self.fs.rm(self.path(*staging), recursive=True)
            raise

    def write_json(self, payload: Any, *parts: str) -> str:
        return self.write_bytes(json.dumps(payload, indent=2, ensure_ascii=False, default=str).encode(), *parts)

    def read_json(self, *parts: str) -> Any:
        try:
            return json.loads(self.read_bytes(*parts))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise CorruptArtifact(f"{self.url(*parts)}: not readable as JSON ({err})") from err

    def write_jsonl(self, rows: list[dict], *parts: str) -> str:
        return self.write_bytes("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode(), *parts)

    def read_jsonl(self, *parts: str) -> list[dict]:
        # Split on "\n" only: str.splitlines would also cut at U+2028/U+0085 inside JSON strings (ensure_ascii=False).
        try:
            lines = self.read_bytes(*parts).decode().split("\n")
        except UnicodeDecodeError as err:
            raise CorruptArtifact(f"{self.url(*parts)}: not UTF-8 text ({err})") from err
        rows = []
        for number, line in enumerate(lines, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise CorruptArtifact(f"{self.url(*parts)} line {number}: not readable as JSON ({err})") from err
        return rows

    def write_parquet(self, frame: pl.DataFrame, *parts: str) -> str:
        buffer = io.BytesIO()
        frame.write_parquet(buffer)
        return self.write_bytes(buffer.getvalue(), *parts)

    def read_parquet(self, *parts: str) -> pl.DataFrame:
        data = self.read_bytes(*parts)
        try:
            return pl.read_parquet(io.BytesIO(data))
        except (pl.exceptions.PolarsError, OSError) as err:  # polars' message names no file: add it
            raise CorruptArtifact(f"{self.url(*parts)}: not readable as parquet ({err})") from err

    def glob(self, *parts: str) -> list[str]:
        return sorted(self.fs.glob(self.path(*parts)))

    def parts_of(self, path: str) -> tuple[str, ...]:
        """The parts under the root of a path `glob` returned (to read it through the checked readers)."""
        prefix = self._root_path.rstrip("/") + "/"
        if not path.startswith(prefix):
            raise ValueError(f"{path} is not under the storage root {self.root}")
        return tuple(path[len(prefix):].split("/"))

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
