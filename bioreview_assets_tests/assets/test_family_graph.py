"""Every model family of the reference through the whole graph on CPU: corpus -> adapter -> merged -> generations
-> concerns -> scores, each on its tiny same-architecture model (configs/models/tiny-*.yaml)."""

import json
import shutil

import dagster as dg
import pytest
import yaml

from bioreview_assets.config import loader
from bioreview_assets.config.loader import load_snapshot
from bioreview_assets.store.layout import adapter_dir, merged_dir

FAMILIES = ["tiny-qwen3.5", "tiny-qwen2", "tiny-deepseek-r1", "tiny-gemma2", "tiny-gemma4"]

pytestmark = pytest.mark.slow


def _key(**dims):
    return dg.MultiPartitionKey(dims)


@pytest.fixture(scope="module")
def family_graph(tmp_path_factory):
    """A config dir whose project lists the tiny families (only: they are test fixtures, not UI partitions)."""
    from bioreview_assets.definitions import build_assets, build_resources

    root = tmp_path_factory.mktemp("families")
    configs = root / "configs"
    shutil.copytree(loader.configs_dir(), configs)
    project = yaml.safe_load((configs / "project.yaml").read_text())
    project.update(models=FAMILIES, demo_models=[], sweeps=[], probes=[], ensembles=[], matchers=["minilm"],
                   default_matcher="minilm")
    (configs / "project.yaml").write_text(yaml.safe_dump(project))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BIOREVIEW_CONFIG_DIR", str(configs))
        patch.setenv("BIOREVIEW_STORAGE", str(root / "storage"))
        instance = dg.DagsterInstance.ephemeral()
        assets, resources = build_assets(load_snapshot()), build_resources()  # partitions of this config

        def run(asset, partition):
            result = dg.materialize(assets, selection=[asset], partition_key=partition, instance=instance,
                                    resources=resources)
            assert result.success, (asset, partition)
            return {k: v.value for k, v in result.get_asset_materialization_events()[0].materialization.metadata.items()}

        for split in ("train", "val"):
            run("benchmark_split", split)
        results = {}
        for model in FAMILIES:
            for split in ("train", "val"):
                run("sft_corpus", _key(model=model, split=split))
            results[model] = {
                "adapter": run("adapter", model),
                "merged": run("merged_model", model),
                "generations": run("generations", _key(model=model, split="val")),
                "concerns": run("concerns", _key(system=model, split="val")),
                "scores": run("scores", _key(system=model, split="val")),
            }
        from bioreview_assets.store.artifacts import ArtifactStore

        yield results, ArtifactStore()


EXPECTED_WRAPPED = {
    # Qwen3.5: the linear-attention projections are targets on purpose (in_proj_a/b are not), kept bf16 under NF4.
    "tiny-qwen3.5": {
        "linear_attention": {"linear_attn.in_proj_qkv", "linear_attn.in_proj_z", "linear_attn.out_proj",
                             "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"},
        "full_attention": {f"self_attn.{p}_proj" for p in "qkvo"} | {"mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"},
    },
    "tiny-gemma4": {  # language model only: no vision_or_audio entry
        kind: {f"self_attn.{p}_proj" for p in "qkvo"} | {"mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"}
        for kind in ("sliding_attention", "full_attention")
    },
}


@pytest.mark.parametrize("model", FAMILIES)
def test_family_runs_through_the_graph(family_graph, model):
    results, store = family_graph
    steps = results[model]
    assert steps["adapter"]["global_step"] == 2 and steps["adapter"]["trainable_params"] > 0
    assert steps["generations"]["articles"] == 4 and steps["generations"]["failed_generations"] == 0
    assert "f1" in steps["scores"]
    meta = store.read_json(*adapter_dir(model), "adapter_meta.json")
    wrapped = steps["adapter"]["lora_wrapped_modules"]
    if model in EXPECTED_WRAPPED:
        assert {kind: set(names) for kind, names in wrapped.items()} == EXPECTED_WRAPPED[model]
    else:
        assert all("self_attn.q_proj" in names for names in wrapped.values())
    assert meta["quantization"] == "nf4" and meta["lora_target_modules"]


def test_gemma4_merge_leaves_the_vision_tower_untouched(family_graph):
    from safetensors.torch import load_file

    from bioreview_assets.ml.models import resolve_base_model

    _, store = family_graph
    merged = store.fetch_dir(*merged_dir("tiny-gemma4"))
    base = load_file(str(resolve_base_model(loader.load_model("tiny-gemma4")) / "model.safetensors"))
    weights = load_file(str(merged / "model.safetensors"))
    vision = [key for key in base if "vision_tower" in key]
    assert vision and all(bool((base[k] == weights[k]).all()) for k in vision)
    changed = [k for k in base if "language_model" in k and k.endswith("q_proj.weight")
               and not (base[k] == weights[k]).all()]
    assert changed  # the LoRA did land in the language model
    assert json.loads((merged / "config.json").read_text())["architectures"] == ["Gemma4ForConditionalGeneration"]
