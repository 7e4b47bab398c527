"""Shared fixtures: every test session writes artefacts and built models under its own temporary root."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# Where the environment forbids bytecode files (PYTHONDONTWRITEBYTECODE, as on the 2-core CI image), every Python
# process of the suite compiles torch, transformers, dagster (and vLLM in .venv-vllm) from source again: this one and
# each of the many it starts (dagster dev and its run workers, benchmark scripts, torchrun ranks, generation shards,
# vLLM workers, catalog readers), 3 to 15 s each on 2 cores. The suite keeps the bytecode under var/pycache instead
# (PYTHONPYCACHEPREFIX: nothing is written beside the sources or into the venvs), for this process from here on and
# for every process it starts. Bytecode caching changes no result.
if os.environ.get("PYTHONDONTWRITEBYTECODE") and not os.environ.get("PYTHONPYCACHEPREFIX"):
    _PYCACHE = str(Path(__file__).resolve().parents[1] / "var" / "pycache")
    del os.environ["PYTHONDONTWRITEBYTECODE"]
    os.environ["PYTHONPYCACHEPREFIX"] = _PYCACHE
    sys.dont_write_bytecode = False
    sys.pycache_prefix = _PYCACHE


@pytest.fixture(scope="session", autouse=True)
def _isolated_roots(tmp_path_factory):
    """Storage, model cache and Dagster home under a session tmp dir; built base models are reused across tests."""
    root = tmp_path_factory.mktemp("bioreview")
    previous = {k: os.environ.get(k) for k in ("BIOREVIEW_STORAGE", "BIOREVIEW_MODEL_CACHE", "DAGSTER_HOME")}
    os.environ["BIOREVIEW_STORAGE"] = str(root / "storage")
    # Base models are deterministic builds: share them between test sessions to keep the suite fast.
    os.environ.setdefault("BIOREVIEW_MODEL_CACHE", os.path.join(os.getcwd(), "var", "test_model_cache"))
    os.environ["DAGSTER_HOME"] = str(root / "dagster_home")
    (root / "dagster_home").mkdir()
    yield root
    for key, value in previous.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(autouse=True)
def _torch_threads_restored():
    """A test that calibrates threads (the demo's recalibrate) must not change the count later tests compute with:
    a resume test compares a subprocess's steps bit for bit with this process's, which needs equal thread counts."""
    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch else None
    yield
    torch = sys.modules.get("torch")
    if torch is not None and before is not None and torch.get_num_threads() != before:
        torch.set_num_threads(before)


@pytest.fixture
def storage_root(tmp_path, monkeypatch):
    """A fresh storage root for one test."""
    monkeypatch.setenv("BIOREVIEW_STORAGE", str(tmp_path / "storage"))
    return tmp_path / "storage"
