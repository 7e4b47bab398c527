import pytest

from bioreview_assets.config import loader
from bioreview_assets.config.model import GenerationConfig
from bioreview_assets.core.gt_filter import CorpusConfig
from bioreview_assets.ml.models import ModelWeightsUnavailable, resolve_base_model


def test_every_config_file_validates():
    project = loader.load_project()
    for name in loader.all_model_names():
        cfg = loader.load_model(name)
        loader.load_corpus(cfg.corpus)
    for name in project.matchers + ["specter2-frozen", "lexical"]:
        loader.load_matcher(name)
    for name in project.ensembles:
        loader.load_ensemble(name)


def test_reference_hyper_parameters_for_qwen3_8b():
    train = loader.load_model("qwen3-8b").training
    assert (train.lora.r, train.lora.alpha, train.learning_rate, train.max_length) == (16, 32, 2e-4, 16384)
    assert train.per_device_batch_size * train.gradient_accumulation_steps == 8
    assert train.lora.target_modules == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    assert (train.quantization, train.optim, train.epochs, train.warmup_ratio) == ("nf4", "adamw_8bit", 3, 0.03)


def test_sweep_variants_are_models_with_overrides():
    assert "qwen3-8b@lr1e-4" in loader.all_model_names()
    variant = loader.load_model("qwen3-8b@r32")
    assert (variant.training.lora.r, variant.training.lora.alpha) == (32, 64)
    assert loader.load_model("qwen3-8b@lr1e-4").training.learning_rate == 1e-4


def test_hub_models_without_weights_fail_with_instructions(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(ModelWeightsUnavailable, match="huggingface-cli download Qwen/Qwen3-8B"):
        resolve_base_model(loader.load_model("qwen3-8b"))


def test_invalid_config_names_the_file(tmp_path, monkeypatch):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "bad.yaml").write_text("base: {kind: hub}\n")
    monkeypatch.setenv("BIOREVIEW_CONFIG_DIR", str(tmp_path))
    try:
        with pytest.raises(ValueError, match="bad.yaml"):
            loader.load_model("bad")
    finally:
        monkeypatch.delenv("BIOREVIEW_CONFIG_DIR")


def test_config_types_are_owned_once():
    """A corpus config is the core GT policy, a project's postprocess entry is the core policy, and the generation
    config decodes with the backends' defaults: no hand copy whose defaults can drift."""
    from bioreview_assets.core.gt_filter import CorpusConfig as CoreCorpus
    from bioreview_assets.core.gt_filter import GTPolicy
    from bioreview_assets.core.postprocess import PostprocessPolicy
    from bioreview_assets.core.sampling import SamplingSpec

    assert CorpusConfig is CoreCorpus and issubclass(CoreCorpus, GTPolicy)
    assert all(isinstance(p, PostprocessPolicy) for p in loader.load_project().postprocess)
    assert SamplingSpec.from_config(GenerationConfig()) == SamplingSpec()
