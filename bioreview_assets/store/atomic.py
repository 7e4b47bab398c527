"""The one atomic-write helper: readers see the old artefact or the new one, never half of it (temp + rename).

Standard library only (ml/ uses it on GPU boxes without polars/pydantic); `fs` arguments are fsspec filesystems.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


def fs_write_atomic(fs, final: str, write: Callable[[IO[bytes]], Any], temp: str | None = None) -> str:
    """Write `final` on an fsspec filesystem through `write(handle)` into a temp file beside it, then rename."""
    parent = final.rsplit("/", 1)[0]
    fs.makedirs(parent, exist_ok=True)
    temp = temp or f"{parent}/.tmp-{uuid.uuid4().hex}"
    try:
        with fs.open(temp, "wb") as handle:
            write(handle)
        fs.mv(temp, final)
    except BaseException:  # a full disk or a kill mid-write: leave no half-written temp file behind
        if fs.exists(temp):
            fs.rm(temp)
        raise
    return final


def write_text_atomic(path: Path, text: str) -> None:
    """A local text file written to a temp file and renamed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


def write_json_atomic(path: Path, payload: Any) -> None:
    """JSON (indent 2) written to a temp file and renamed."""
    write_text_atomic(path, json.dumps(payload, indent=2, default=str))


def replace_dir(tmp: Path, target: Path, old: Path | None = None) -> None:
    """Move a finished folder into place, replacing an older one (removed only once the new one is in place). The
    older one is moved aside to `old` first (default: a hidden folder beside `target`); a process killed before it
    is removed leaves it there."""
    if target.exists():
        old = old or target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old)
    else:
        os.replace(tmp, target)


@contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """A temp folder beside `target` to fill; moved into place when the block succeeds, removed when it raises."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    replace_dir(tmp, target)
