"""Shared fixtures: every test session writes artefacts and built models under its own temporary root."""

from __future__ import annotations

import os
import sys

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


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
