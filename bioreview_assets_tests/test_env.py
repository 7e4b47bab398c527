import re
from pathlib import Path

import pytest

from bioreview_assets.config import env

PACKAGE = Path(env.__file__).resolve().parent


def test_env_py_is_the_only_reader_of_bioreview_variables():
    readers = [str(path.relative_to(PACKAGE)) for path in PACKAGE.rglob("*.py")
               if path.name != "env.py" and re.search(r"environ(\.get)?\(?\[?[\"']BIOREVIEW_|getenv\([\"']BIOREVIEW_",
                                                      path.read_text())]
    assert readers == []


def test_bad_values_fail_with_the_variable_named(monkeypatch, tmp_path):
    monkeypatch.setenv("BIOREVIEW_ENV", "prod")
    with pytest.raises(env.BadEnvironment, match="BIOREVIEW_ENV must be 'local' or 'k8s'"):
        env.environment()
    monkeypatch.setenv("BIOREVIEW_CONFIG_DIR", str(tmp_path / "missing"))
    with pytest.raises(env.BadEnvironment, match="BIOREVIEW_CONFIG_DIR=.* is not a folder"):
        env.config_dir()


def test_torch_threads_is_a_whole_number_of_threads(monkeypatch):
    monkeypatch.setenv("BIOREVIEW_TORCH_THREADS", "2")
    assert env.torch_threads() == 2
    for bad in ("0", "two", "-1"):
        monkeypatch.setenv("BIOREVIEW_TORCH_THREADS", bad)
        with pytest.raises(env.BadEnvironment, match="BIOREVIEW_TORCH_THREADS=.*whole number of threads >= 1"):
            env.torch_threads()
    monkeypatch.delenv("BIOREVIEW_TORCH_THREADS")
    assert env.torch_threads() is None


def test_empty_values_count_as_unset(monkeypatch):
    for name in ("BIOREVIEW_ENV", "BIOREVIEW_STORAGE", "BIOREVIEW_DATA_DIR", "BIOREVIEW_CONFIG_DIR"):
        monkeypatch.setenv(name, " ")
    assert env.environment() == "local" and env.data_dir() is None
    assert env.storage_root() == str(env.REPO_ROOT / "var" / "storage")
    assert env.config_dir() == env.REPO_ROOT / "configs"


def test_remote_storage_keeps_weights_in_the_local_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("BIOREVIEW_STORAGE", "s3://bucket/bioreview")
    monkeypatch.setenv("BIOREVIEW_LOCAL_CACHE", str(tmp_path))
    monkeypatch.delenv("BIOREVIEW_MODEL_CACHE", raising=False)
    assert env.local_cache_root() == tmp_path and env.model_cache() == tmp_path / "base_models"
