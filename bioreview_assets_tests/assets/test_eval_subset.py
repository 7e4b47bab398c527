"""The article subset knob applies to every system, and max_new_tokens: auto comes from the train targets."""

import shutil

import dagster as dg
import pytest
import yaml

from bioreview_assets.config import loader
from bioreview_assets.definitions import build_assets, build_resources

SUBSET = 5
BASE = "tiny-base"  # a tiny model served without fine-tuning, generating with max_new_tokens: auto


@pytest.fixture
def subset_configs(tmp_path, monkeypatch, storage_root):
    """The repo's configs with eval_max_articles set and a tiny base-model system added."""
    configs = tmp_path / "configs"
    shutil.copytree(loader.configs_dir(), configs)
    project = yaml.safe_load((configs / "project.yaml").read_text())
    project.update(eval_max_articles=SUBSET, models=["tiny-random", BASE], demo_models=[], sweeps=[],
                   probes=[{"model": "tiny-random", "steps": [3], "max_articles": 3}],
                   ensembles=[], matchers=["minilm"])
    (configs / "project.yaml").write_text(yaml.safe_dump(project))
    tiny = yaml.safe_load((configs / "models" / "tiny-random.yaml").read_text())
    base = {"description": "tiny random Qwen3, not fine-tuned", "base": tiny["base"], "finetune": False,
            "gpu": False, "prompt": tiny["prompt"],
            "generation": {"backend": "transformers", "max_new_tokens": "auto", "batch_size": 8}}
    (configs / "models" / f"{BASE}.yaml").write_text(yaml.safe_dump(base))
    # build_assets() builds the partitions from the configs loaded at each call: this one, tiny-base among them.
    monkeypatch.setenv("BIOREVIEW_CONFIG_DIR", str(configs))


def _materialize(instance, asset, partition):
    result = dg.materialize(build_assets(), selection=[asset], partition_key=partition, instance=instance,
                            resources=build_resources())
    assert result.success
    return {k: v.value for k, v in result.get_asset_materialization_events()[0].materialization.metadata.items()}


def test_subset_and_auto_token_limit_apply_to_every_system(subset_configs):
    instance = dg.DagsterInstance.ephemeral()
    for split in ("train", "val", "test"):
        _materialize(instance, "benchmark_split", split)
    generated = _materialize(instance, "generations", dg.MultiPartitionKey({"model": BASE, "split": "val"}))
    assert generated["articles"] == SUBSET
    # The limit is the 95th percentile of the train targets in the model's tokens, and the metadata says so.
    assert generated["max_new_tokens_source"].startswith("auto: p95 of ")
    at = int(generated["max_new_tokens_source"].split(" is ")[1].split()[0])
    assert at <= generated["max_new_tokens"] < at + 16
    assert 0 <= generated["outputs_at_token_limit"] <= SUBSET  # counted, not hidden
    for system in (BASE, "bm25"):
        key = dg.MultiPartitionKey({"system": system, "split": "val"})
        concerns = _materialize(instance, "concerns", key)
        assert concerns["articles_in_split"] == SUBSET  # BM25 answers for the same articles as the model
        scores = _materialize(instance, "scores", key)
        coverage = scores["coverage"]  # both are scored on those articles only, none missing
        assert (coverage["n_articles_in_output"], coverage["n_articles_missing_from_output"]) == (SUBSET, 0), system


def test_probe_subset_is_the_smaller_of_its_own_and_the_project_knob(subset_configs):
    snapshot = loader.load_snapshot()
    assert snapshot.eval_article_limit() == SUBSET  # baselines and ensembles
    assert snapshot.eval_article_limit(BASE) == SUBSET
    assert snapshot.eval_article_limit("tiny-random@step3") == 3  # the probe's own val subset is smaller
