"""Transformers backend on the tiny random Qwen3: batching, adapters, errors, sampling, make_backend."""

from __future__ import annotations

from pathlib import Path

import pytest

from bioreview_assets.ml.generation import GenerationRequest, GenerationResult, SamplingSpec, make_backend
from bioreview_assets.ml.generation.rendering import render_chat
from bioreview_assets.ml.generation.transformers_backend import TransformersBackend
from bioreview_assets.ml.runtime_env import cpu_has_native_bf16
from bioreview_assets.config.model import ModelConfig
from bioreview_assets_tests.ml.conftest import tiny_model_config

pytestmark = pytest.mark.slow


def tiny_config(**generation) -> ModelConfig:
    return tiny_model_config("transformers", **{"max_new_tokens": 12, "batch_size": 3, **generation})


def requests(n: int = 5) -> list[GenerationRequest]:
    """Prompts of different lengths, so batches need padding."""
    return [
        GenerationRequest(
            f"art:{i}",
            [
                {"role": "system", "content": "You are an expert peer reviewer."},
                {"role": "user", "content": "The methods lack a control group. " * (1 + 3 * i)},
            ],
        )
        for i in range(n)
    ]


def collect(backend, reqs) -> dict[str, GenerationResult]:
    out: list[GenerationResult] = []
    backend.generate(reqs, out.append)
    assert len(out) == len(reqs)
    return {r.article_id: r for r in out}


def test_batched_equals_one_at_a_time_and_decodes_only_new_tokens(tiny_dir: Path) -> None:
    spec = SamplingSpec(max_new_tokens=12, repetition_penalty=1.05)
    batched = TransformersBackend.from_dirs(tiny_dir, None, spec, batch_size=3)
    single = TransformersBackend.from_dirs(tiny_dir, None, spec, batch_size=1)
    reqs = requests()
    a, b = collect(batched, reqs), collect(single, reqs)
    assert {k: r.text for k, r in a.items()} == {k: r.text for k, r in b.items()}
    assert all(r.error is None and 0 < r.completion_tokens <= 12 for r in a.values())
    lengths = [a[r.article_id].prompt_tokens for r in reqs]
    assert lengths == sorted(lengths) and len(set(lengths)) == len(lengths)  # really padded batches
    # Only new tokens are decoded: the prompt's words never come back in the output of a 12-token answer.
    assert not any("control group" in r.text for r in a.values())
    assert any(r.text.strip() for r in a.values())


def test_static_cache_with_left_padding_matches_the_dynamic_cache(tiny_dir: Path) -> None:
    """The GPU default (static cache, chunked prefill) must not change what a padded batch generates."""
    from bioreview_assets.ml.generation.transformers_backend import CUDA_GENERATE_DEFAULTS

    spec = SamplingSpec(max_new_tokens=12, repetition_penalty=1.05)
    reqs = requests(4)
    gpu_like = {**CUDA_GENERATE_DEFAULTS, "prefill_chunk_size": 16}  # small chunks: several per prompt
    static = collect(TransformersBackend.from_dirs(tiny_dir, None, spec, batch_size=4, generate_kwargs=gpu_like), reqs)
    dynamic = collect(TransformersBackend.from_dirs(tiny_dir, None, spec, batch_size=4), reqs)
    assert {k: r.text for k, r in static.items()} == {k: r.text for k, r in dynamic.items()}


def test_ignore_eos_generates_exactly_max_new_tokens(tiny_dir: Path) -> None:
    backend = TransformersBackend.from_dirs(tiny_dir, None, SamplingSpec(max_new_tokens=9, ignore_eos=True))
    assert {r.completion_tokens for r in collect(backend, requests(3)).values()} == {9}


def test_adapter_unmerged_merged_in_memory_and_merged_folder_agree(tiny_dir, adapter_dir, tmp_path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    spec = SamplingSpec(max_new_tokens=12)
    reqs = requests(4)
    base = collect(TransformersBackend.from_dirs(tiny_dir, None, spec), reqs)
    unmerged = collect(TransformersBackend.from_dirs(tiny_dir, adapter_dir, spec, merge_adapter=False), reqs)
    merged = collect(TransformersBackend.from_dirs(tiny_dir, adapter_dir, spec), reqs)
    folder = tmp_path / "merged"
    PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(tiny_dir)), str(adapter_dir)) \
        .merge_and_unload().save_pretrained(str(folder))
    AutoTokenizer.from_pretrained(str(tiny_dir)).save_pretrained(str(folder))
    from_folder = collect(TransformersBackend.from_dirs(folder, None, spec), reqs)
    texts = lambda results: [results[r.article_id].text for r in reqs]  # noqa: E731
    assert texts(unmerged) == texts(merged) == texts(from_folder)
    assert texts(merged) != texts(base)  # the adapter is really applied


def test_generation_errors_are_per_article_and_never_silently_empty(tiny_dir, monkeypatch) -> None:
    backend = TransformersBackend.from_dirs(tiny_dir, None, SamplingSpec(max_new_tokens=6), batch_size=4)
    reqs = requests(4) + [GenerationRequest("art:broken", [{"role": "user"}])]  # no content: template fails
    poisoned = len(backend.tokenizer(render_chat(backend.tokenizer, reqs[2].messages, False))["input_ids"])
    real = backend.generate_ids

    def flaky(prompts):
        if any(len(p) == poisoned for p in prompts):
            raise RuntimeError("CUDA error: device-side assert triggered")
        return real(prompts)

    monkeypatch.setattr(backend, "generate_ids", flaky)
    results = collect(backend, reqs)
    assert "prompt rendering failed" in results["art:broken"].error
    assert "device-side assert" in results["art:2"].error and results["art:2"].prompt_tokens == poisoned
    for key in ("art:0", "art:1", "art:3"):  # the batch was split until the bad article stood alone
        assert results[key].error is None and results[key].completion_tokens > 0
    assert all(r.error for r in results.values() if not r.text)


def test_seeded_sampling_is_reproducible(tiny_dir: Path) -> None:
    reqs = requests(3)

    def run(seed: int) -> list[str]:
        spec = SamplingSpec(max_new_tokens=12, temperature=1.0, top_p=0.95, seed=seed)
        results = collect(TransformersBackend.from_dirs(tiny_dir, None, spec), reqs)
        return [results[r.article_id].text for r in reqs]

    assert run(7) == run(7)
    assert run(7) != run(8)


def test_describe_records_sampling_and_provenance(tiny_dir: Path, adapter_dir: Path) -> None:
    backend = make_backend(tiny_config(seed=5, temperature=0.7), tiny_dir, adapter_dir)
    info = backend.describe()
    assert info["backend"] == "transformers"
    assert info["model_dir"] == str(tiny_dir) and info["adapter_dir"] == str(adapter_dir)
    assert info["sampling"]["seed"] == 5 and info["sampling"]["temperature"] == 0.7
    # bf16 on CPUs with native bf16 matmuls (where decoding is ~20x faster), fp32 elsewhere.
    expected = "bfloat16" if cpu_has_native_bf16() else "float32"
    assert info["batch_size"] == 3 and info["dtype"] == expected and info["enable_thinking"] is False
    fp32 = tiny_config()
    fp32 = fp32.model_copy(update={"training": fp32.training.model_copy(update={"bf16": False})})
    assert make_backend(fp32, tiny_dir, None).describe()["dtype"] == "float32"  # served as it was trained


def test_render_chat_passes_enable_thinking(tiny_dir: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_dir))
    tokenizer.chat_template = (
        "{% for m in messages %}{{ m['content'] }}{% endfor %}"
        "{% if enable_thinking is defined and enable_thinking is false %}<think></think>{% endif %}"
    )
    msgs = [{"role": "user", "content": "x"}]
    assert render_chat(tokenizer, msgs, enable_thinking=False) == "x<think></think>"
    assert render_chat(tokenizer, msgs, enable_thinking=True) == "x"


def test_make_backend_requires_a_model_folder_for_local_backends() -> None:
    with pytest.raises(ValueError, match="needs a model folder"):
        make_backend(tiny_config(), None, None)
