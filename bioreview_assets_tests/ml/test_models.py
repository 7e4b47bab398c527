import json

from bioreview_assets.config import loader
from bioreview_assets.ml.models import resolve_base_model


def test_smollm2_is_converted_to_a_plain_trainable_folder():
    folder = resolve_base_model(loader.load_model("smollm2-135m"))
    config = json.loads((folder / "config.json").read_text())
    # A leftover gguf quantization_config makes transformers keep packed weights and refuse training.
    assert "quantization_config" not in config
    assert config["architectures"] == ["LlamaForCausalLM"] and (folder / "tokenizer.json").exists()
    assert resolve_base_model(loader.load_model("smollm2-135m")) == folder  # built once, then reused


def test_tiny_random_is_deterministic():
    folder = resolve_base_model(loader.load_model("tiny-random"))
    config = json.loads((folder / "config.json").read_text())
    assert config["head_dim"] == 64 and config["num_hidden_layers"] == 2
    assert "<|im_start|>" in (folder / "tokenizer.json").read_text()
