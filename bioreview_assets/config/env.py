"""The one reader of BIOREVIEW_* environment variables, validated (standard library only: ml/ uses it on GPU boxes).

Every value is read when asked for (tests and the demo switch them per run); an empty value counts as unset.
Test-only switches (BIOREVIEW_UPDATE_EXAMPLES, BIOREVIEW_SAVE_SCREENSHOT) stay in the tests.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

REPO_ROOT = Path(__file__).resolve().parents[2]

VARIABLES = {
    "BIOREVIEW_ENV": "local (default) or k8s: executor, retries, sensors/schedules running by default",
    "BIOREVIEW_STORAGE": "artefact root: a local folder (default var/storage), a shared volume or s3://...",
    "BIOREVIEW_LOCAL_CACHE": "local folder for weights and staged folders when the storage root is remote",
    "BIOREVIEW_CONFIG_DIR": "folder of the YAML configs (default configs/ in the checkout)",
    "BIOREVIEW_DATA_DIR": "folder with the authorised benchmark's {train,val,test}.jsonl[.gz] (default: the sample)",
    "BIOREVIEW_MODEL_CACHE": "folder for built base models (default <local cache>/base_models)",
    "BIOREVIEW_VLLM_PYTHON": "interpreter of the separate vLLM venv (default .venv-vllm in the checkout)",
    "BIOREVIEW_CPU_IMAGE": "image tag for CPU steps on Kubernetes (default configs/k8s.yaml images.cpu)",
    "BIOREVIEW_GPU_IMAGE": "image tag for GPU steps on Kubernetes (default configs/k8s.yaml images.gpu)",
    "BIOREVIEW_TORCH_THREADS": "torch CPU threads for the demo (default: calibrated on this machine before each step)",
}
ENVIRONMENTS = ("local", "k8s")


class BadEnvironment(ValueError):
    """A BIOREVIEW_* variable holds a value that cannot work."""


def _get(name: str) -> str | None:
    if name not in VARIABLES:
        raise KeyError(f"{name} is not a BIOREVIEW_* variable of bioreview_assets/config/env.py")
    value = os.environ.get(name, "").strip()
    return value or None


def environment() -> Literal["local", "k8s"]:
    """BIOREVIEW_ENV: local (default) or k8s."""
    value = _get("BIOREVIEW_ENV") or "local"
    if value not in ENVIRONMENTS:
        raise BadEnvironment(f"BIOREVIEW_ENV must be 'local' or 'k8s', not {value!r}")
    return value  # type: ignore[return-value]


def on_kubernetes() -> bool:
    return environment() == "k8s"


def storage_root() -> str:
    """BIOREVIEW_STORAGE, or var/storage in the checkout for local development."""
    return _get("BIOREVIEW_STORAGE") or str(REPO_ROOT / "var" / "storage")


def local_cache_root() -> Path:
    """A local folder for things that must be on disk (model weights): the storage root itself when it is local."""
    root = storage_root()
    if "://" in root and not root.startswith("file://"):
        return Path(_get("BIOREVIEW_LOCAL_CACHE") or "/tmp/bioreview-cache")
    return Path(root.removeprefix("file://"))


def config_dir() -> Path:
    """BIOREVIEW_CONFIG_DIR (must be an existing folder), or the repo's configs/."""
    value = _get("BIOREVIEW_CONFIG_DIR")
    if value is None:
        return REPO_ROOT / "configs"
    path = Path(value).expanduser()
    if not path.is_dir():
        raise BadEnvironment(f"BIOREVIEW_CONFIG_DIR={value} is not a folder (it should hold project.yaml)")
    return path


def data_dir() -> Path | None:
    """BIOREVIEW_DATA_DIR, or None for the bundled sample (a folder without the split files fails where it is read)."""
    value = _get("BIOREVIEW_DATA_DIR")
    return Path(value).expanduser() if value else None


def model_cache() -> Path:
    """BIOREVIEW_MODEL_CACHE, or base_models/ under the local cache."""
    value = _get("BIOREVIEW_MODEL_CACHE")
    return Path(value).expanduser() if value else local_cache_root() / "base_models"


def vllm_python() -> Path | None:
    """BIOREVIEW_VLLM_PYTHON, or None (ml/generation/vllm_backend.py says when it does not exist)."""
    value = _get("BIOREVIEW_VLLM_PYTHON")
    return Path(value).expanduser() if value else None


def torch_threads() -> int | None:
    """BIOREVIEW_TORCH_THREADS: a fixed torch thread count for the demo on CPU, or None to calibrate."""
    value = _get("BIOREVIEW_TORCH_THREADS")
    if value is None:
        return None
    if not value.isdigit() or int(value) < 1:
        raise BadEnvironment(f"BIOREVIEW_TORCH_THREADS={value!r}: expected a whole number of threads >= 1")
    return int(value)


def image_override(kind: Literal["cpu", "gpu"]) -> str | None:
    """BIOREVIEW_CPU_IMAGE / BIOREVIEW_GPU_IMAGE: an image tag pinned at deploy time."""
    return _get(f"BIOREVIEW_{kind.upper()}_IMAGE")
