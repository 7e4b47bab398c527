"""Fixtures shared by the generation backend tests: the tiny random Qwen3 and a LoRA adapter that changes it."""

from __future__ import annotations

from pathlib import Path

import pytest

from bioreview_assets.ml.models import resolve_base_model
from bioreview_assets.config.model import BaseModelSource, ModelConfig


def tiny_model_config(backend: str, **generation) -> ModelConfig:
    """The tiny random model (same name and seed as configs/models/tiny-random.yaml, so the build is shared)."""
    return ModelConfig(name="tiny-random", base=BaseModelSource(kind="tiny_random", seed=0),
                       generation={"backend": backend, **generation})


@pytest.fixture(scope="module")
def tiny_dir() -> Path:
    return resolve_base_model(tiny_model_config("transformers"))


@pytest.fixture(scope="module")
def adapter_dir(tiny_dir: Path, tmp_path_factory) -> Path:
    """A LoRA adapter on every projection with random (non-zero) B matrices, so it visibly changes the output."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(3)  # a seed whose greedy texts have no near-ties between vLLM and transformers
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(str(tiny_dir), dtype=torch.float32),
        LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                   "up_proj", "down_proj"], init_lora_weights=False, task_type="CAUSAL_LM"),
    )
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    out = tmp_path_factory.mktemp("adapter")
    model.save_pretrained(str(out))
    return out
