"""Where a sentence embedder's pinned weights are found (path > package > local hub cache, never a download) and
their content hash (the matcher identity's weights_sha256)."""

from __future__ import annotations

import hashlib
import importlib
from pathlib import Path

from bioreview_assets.core.matcher_spec import EmbedderSpec

_WEIGHT_SUFFIXES = (".safetensors", ".bin")
_CHUNK = 1 << 20
# (resolved path, size, mtime_ns) -> sha256: weights are hashed once per process, not per load.
_FILE_HASHES: dict[tuple[str, int, int], str] = {}


class EmbedderUnavailable(RuntimeError):
    """The configured embedder cannot be loaded or used; scoring must stop (never substitute another matcher)."""


def _local_dir_hint(repo_id: str, revision: str | None, key: str) -> str:
    local = f"models/{repo_id.rsplit('/', 1)[-1]}"
    return (
        f"get it with `huggingface-cli download {repo_id}"
        + (f" --revision {revision}" if revision else "")
        + f" --local-dir {local}` on a machine with hub access, copy it here, and set "
        f"`{key}: {local}` under `embedder:` in configs/matchers/<matcher>.yaml"
    )


def weights_problem(spec: EmbedderSpec) -> str | None:
    """Why the embedder's weights cannot be loaded here (None: they are found); loads nothing (`bioreview doctor`)."""
    try:
        resolve_weights_dir(spec)
    except EmbedderUnavailable as err:
        return str(err)
    return None


def resolve_weights_dir(spec: EmbedderSpec) -> tuple[Path, str, str | None]:
    """(model folder, where it came from, hub commit if from the hub cache); resolution: path > package > hub cache."""
    if spec.path is not None:
        path = Path(spec.path).expanduser()
        if not path.is_dir():
            raise EmbedderUnavailable(
                f"embedder {spec.name!r}: path {str(path)!r} does not exist or is not a folder; "
                + _local_dir_hint(spec.model_id, spec.revision, "path")
            )
        return path, f"path:{path}", None
    if spec.package is not None:
        pip_name = spec.package.replace("_", "-")
        try:
            module = importlib.import_module(spec.package)
        except ImportError as exc:
            raise EmbedderUnavailable(
                f"embedder {spec.name!r}: python package {spec.package!r} is not installed ({exc}); "
                f"`pip install {pip_name}`"
            ) from exc
        getter = getattr(module, "get_model_path", None)
        if getter is None:
            raise EmbedderUnavailable(f"embedder {spec.name!r}: package {spec.package!r} has no get_model_path()")
        path = Path(getter())
        if not path.is_dir():
            raise EmbedderUnavailable(
                f"embedder {spec.name!r}: package {spec.package!r} points at {str(path)!r}, which is missing; "
                f"reinstall it (`pip install --force-reinstall {pip_name}`)"
            )
        return path, f"package:{spec.package}", None
    return from_hub_cache(spec.model_id, spec.revision, spec, key="path")


def from_hub_cache(repo_id: str, revision: str | None, spec: EmbedderSpec, key: str) -> tuple[Path, str, str]:
    from huggingface_hub import snapshot_download

    try:
        # local_files_only: a run must never download (offline clusters, pinned weights).
        folder = snapshot_download(repo_id, revision=revision, local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - every failure here means "not available locally"
        raise EmbedderUnavailable(
            f"embedder {spec.name!r}: {'model' if key == 'path' else key} {repo_id!r}"
            + (f" at revision {revision!r}" if revision else "")
            + f" is not in the local Hugging Face cache ({type(exc).__name__}); "
            + _local_dir_hint(repo_id, revision, key)
        ) from exc
    path = Path(folder)
    return path, f"hub-cache:{repo_id}", path.name


def _file_sha256(path: Path) -> str:
    resolved = path.resolve()
    stat = resolved.stat()
    key = (str(resolved), stat.st_size, stat.st_mtime_ns)
    if key not in _FILE_HASHES:
        digest = hashlib.sha256()
        with open(resolved, "rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
        _FILE_HASHES[key] = digest.hexdigest()
    return _FILE_HASHES[key]


def weights_sha256(folders: dict[str, Path], length: int = 16) -> str:
    """Short sha256 over every weight file (*.safetensors, *.bin) under the named folders, by relative path."""
    digest = hashlib.sha256()
    for label, folder in sorted(folders.items()):
        files = sorted(
            p for p in folder.rglob("*")
            if p.suffix in _WEIGHT_SUFFIXES and p.is_file() and ".cache" not in p.relative_to(folder).parts
        )
        for file in files:
            digest.update(f"{label}/{file.relative_to(folder).as_posix()}\0{_file_sha256(file)}\n".encode())
        if not files:
            raise EmbedderUnavailable(f"no weight files ({', '.join(_WEIGHT_SUFFIXES)}) under {str(folder)!r}")
    return digest.hexdigest()[:length]
