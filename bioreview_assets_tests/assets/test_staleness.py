"""No stale or silently reused results: every artefact changes when an upstream input does (issue 13, item 1).

One chain on the tiny model (benchmark -> corpus -> adapter -> merged -> generations), then per artefact: change an
input, re-materialise, and assert that the output (or its resume decision) changed and Dagster shows what is stale.
"""

import dataclasses
import json
import shutil
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
import yaml
from dagster._core.definitions.data_version import StaleStatus
from dagster._utils.test.data_versions import get_stale_status_resolver

from bioreview_assets.config import loader
from bioreview_assets.config.loader import load_snapshot
from bioreview_assets.core.gt_filter import HARNESS_POLICY, filter_article
from bioreview_assets.definitions import build_assets, build_resources
from bioreview_assets.store.artifacts import ArtifactStore
from bioreview_assets.store.generation_table import parsed_columns
from bioreview_assets.store.layout import generations_dir, read_articles

pytestmark = pytest.mark.slow

TINY_VAL = dg.MultiPartitionKey({"model": "tiny-random", "split": "val"})
ORACLE = "smollm2-135m"  # its generations are written by the test (reference concerns as JSON text)


def _sys(system: str) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey({"system": system, "split": "val"})


def _run(instance, asset, partition, assets=None, **kwargs):
    return dg.materialize(assets or build_assets(), selection=[asset], partition_key=partition, instance=instance,
                          resources=build_resources(), **kwargs)


def _meta(result) -> dict:
    return {k: v.value for k, v in result.get_asset_materialization_events()[0].materialization.metadata.items()}


def _version(result) -> str:
    return result.get_asset_materialization_events()[0].materialization.tags["dagster/data_version"]


def _status(instance, asset, partition, assets=None):
    """(stale status, root causes as 'asset[partition]: reason') as the Dagster UI computes them."""
    resolver = get_stale_status_resolver(instance, assets or build_assets())
    key = dg.AssetKey(asset)
    causes = [f"{c.asset_key.to_user_string()}: {c.reason}" for c in resolver.get_stale_root_causes(key, partition)]
    return resolver.get_status(key, partition), causes


@contextmanager
def _configs(tmp_path: Path, file: str, dotted: str, value):
    """The repo's configs with one value changed (BIOREVIEW_CONFIG_DIR), for the duration of the block."""
    configs = tmp_path / f"configs-{dotted}"
    shutil.copytree(loader.configs_dir(), configs)
    data = yaml.safe_load((configs / file).read_text())
    node = data
    for part in dotted.split(".")[:-1]:
        node = node.setdefault(part, {})
    node[dotted.split(".")[-1]] = value
    (configs / file).write_text(yaml.safe_dump(data))
    # The definitions are built from the configs loaded at each run (_run -> build_assets()): nothing to reload.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BIOREVIEW_CONFIG_DIR", str(configs))
        yield


def _write_oracle_generations(store: ArtifactStore, keep: int | None = None) -> None:
    """Generations of ORACLE on val: the reference concerns as a JSON array (first `keep` per article)."""
    rows = []
    for article in read_articles(store, "val"):
        kept = filter_article(article, HARNESS_POLICY).kept[:keep]
        text = json.dumps([{"text": c.text, "category": c.category, "severity": c.severity} for c in kept])
        rows.append({"article_id": article.id, "text": text, "error": None})
    table = parsed_columns(pl.DataFrame(rows, schema_overrides={"error": pl.String}))
    store.write_parquet(table, *generations_dir(ORACLE, "val"), "generations.parquet")


@pytest.fixture(scope="module")
def chain(tiny_chain):
    """A storage root holding benchmark, corpora, adapter, merged model and generations of the tiny model, and the
    instance that materialised them: this module's own checkout of the session's tiny chain (conftest.py)."""
    with tiny_chain.checkout() as (instance, results):
        yield instance, ArtifactStore(), results


def test_first_generation_is_fresh_and_a_rerun_resumes_everything(chain):
    instance, _, results = chain
    first = _meta(results["generations"])
    assert first["resume"] == "fresh (no earlier log)" and first["generated_this_run"] == 30
    again = _run(instance, "generations", TINY_VAL)
    meta = _meta(again)
    assert meta["resume"] == f"resumed (30 articles already generated under key {first['generation_key']})"
    assert meta["generated_this_run"] == 0 and _version(again) == _version(results["generations"])
    assert _status(instance, "generations", TINY_VAL)[0] == StaleStatus.FRESH


def test_changed_sampling_settings_start_a_fresh_log_and_reverting_resumes_the_old_one(chain, tmp_path):
    instance, store, results = chain
    with _configs(tmp_path, "models/tiny-random.yaml", "generation.repetition_penalty", 1.3):
        changed = _run(instance, "generations", TINY_VAL)
    meta = _meta(changed)
    assert meta["resume"] == "fresh (key changed: sampling.repetition_penalty)" and meta["generated_this_run"] == 30
    assert _version(changed) != _version(results["generations"])
    table = store.read_parquet(*generations_dir("tiny-random", "val"), "generations.parquet")
    assert set(table["generation_key"]) == {meta["generation_key"]}  # no row of the old key survives
    back = _run(instance, "generations", TINY_VAL)
    assert _meta(back)["resume"].startswith("resumed (30 articles") and _meta(back)["generated_this_run"] == 0
    assert _version(back) == _version(results["generations"])


def test_a_changed_corpus_config_changes_the_corpus_and_shows_the_adapter_stale(chain, tmp_path):
    instance, _, _ = chain
    train = dg.MultiPartitionKey({"model": "tiny-random", "split": "train"})
    before = _run(instance, "sft_corpus", train)
    with _configs(tmp_path, "corpora/all_nonfig.yaml", "min_resolution_confidence", 0.5):
        changed = _run(instance, "sft_corpus", train)
    assert _meta(changed)["corpus_hash"] != _meta(before)["corpus_hash"]
    assert _meta(changed)["concerns_after"] < _meta(before)["concerns_after"]
    status, causes = _status(instance, "adapter", "tiny-random")
    assert status == StaleStatus.STALE and causes == ["sft_corpus: has a new data version"]
    restored = _run(instance, "sft_corpus", train)  # the same inputs again: the same version, nothing stale
    assert _version(restored) == _version(before)
    assert _status(instance, "adapter", "tiny-random")[0] == StaleStatus.FRESH


def test_a_parser_change_reparses_stored_raw_text_without_regenerating(chain, monkeypatch):
    instance, store, _ = chain
    _write_oracle_generations(store)
    system = _sys(f"{ORACLE}~raw")
    before = _run(instance, "concerns", system)
    raw_before = store.read_bytes(*generations_dir(ORACLE, "val"), "generations.parquet")
    n_before = _meta(before)["n_concerns"]
    assert _meta(before)["lineage"]["parser_version"] == "1"

    # "Parser version 2" keeps only the first concern of each output.
    import bioreview_assets.assets.concerns as concerns_asset
    import bioreview_assets.store.generation_table as generation_table

    original = generation_table.parse_concerns

    def parser_v2(text):
        return dataclasses.replace(original(text), concerns=original(text).concerns[:1])

    monkeypatch.setattr(generation_table, "parse_concerns", parser_v2)
    monkeypatch.setattr(generation_table, "PARSER_VERSION", "2")
    monkeypatch.setattr(concerns_asset, "PARSER_VERSION", "2")
    assets_v2 = [a.map_asset_specs(lambda spec: spec.replace_attributes(code_version="parser-2"))
                 if a.key == dg.AssetKey("concerns") else a for a in build_assets()]
    status, causes = _status(instance, "concerns", system, assets_v2)
    assert status == StaleStatus.STALE and causes == ["concerns: has a new code version"]
    after = _run(instance, "concerns", system, assets_v2)
    meta = _meta(after)
    assert meta["n_concerns"] == 30 < n_before  # one concern per article now
    assert meta["lineage"]["parser_version"] == "2" and meta["lineage"]["stored_parser_versions"] == ["1"]
    assert meta["lineage"]["rows_parsed_differently_than_stored"] == 30
    assert _version(after) != _version(before)
    # Nothing was generated again: the raw text is the same file, and generations were not materialised.
    assert store.read_bytes(*generations_dir(ORACLE, "val"), "generations.parquet") == raw_before
    assert _status(instance, "concerns", system, assets_v2)[0] == StaleStatus.FRESH


def test_changed_member_concerns_change_the_ensemble_and_its_scores(chain):
    from bioreview_assets.orchestration.automation import stale_score_partitions

    instance, store, _ = chain
    _write_oracle_generations(store)
    for system in (ORACLE, "bm25"):  # the ensemble's members
        assert _run(instance, "concerns", _sys(system)).success
    ensemble = _sys("embedded-union")
    first = _run(instance, "ensemble_concerns", ensemble)
    first_score = _run(instance, "scores", ensemble)
    assert stale_score_partitions(store, load_snapshot().scored_matchers()) == []

    _write_oracle_generations(store, keep=2)  # the oracle member now raises only two concerns per article
    assert _run(instance, "concerns", _sys(ORACLE)).success
    status, causes = _status(instance, "ensemble_concerns", ensemble)
    assert status == StaleStatus.STALE and causes == ["concerns: has a new data version"]
    second = _run(instance, "ensemble_concerns", ensemble)
    assert _meta(second)["after_cap"] < _meta(first)["after_cap"] and _version(second) != _version(first)
    stale = stale_score_partitions(store, load_snapshot().scored_matchers())
    assert [(s, split, changed) for s, split, changed, _ in stale] == [("embedded-union", "val", ["concerns"])]
    assert _status(instance, "scores", ensemble)[0] == StaleStatus.STALE
    second_score = _run(instance, "scores", ensemble)
    assert _meta(second_score)["recall"] < _meta(first_score)["recall"]
    assert _version(second_score) != _version(first_score)
    assert stale_score_partitions(store, load_snapshot().scored_matchers()) == []


def test_retrain_then_regenerate_never_reuses_the_old_models_outputs(chain, tmp_path):
    instance, store, results = chain
    old = _meta(_run(instance, "generations", TINY_VAL))
    with _configs(tmp_path, "models/tiny-random.yaml", "training.learning_rate", 5.0e-3):
        adapter = _run(instance, "adapter", "tiny-random")
        assert _meta(adapter)["weights_hash"] != _meta(results["adapter"])["weights_hash"]
        # The UI shows what the retrain made stale.
        for asset in ("merged_model", "generations"):
            partition = "tiny-random" if asset == "merged_model" else TINY_VAL
            status, causes = _status(instance, asset, partition)
            assert status == StaleStatus.STALE and "adapter: has a new data version" in causes, (asset, causes)
        # Serving the merged weights of the previous adapter is refused, not done silently.
        refused = _run(instance, "generations", TINY_VAL, raise_on_error=False)
        (failure,) = [e for e in refused.all_events if e.is_step_failure]
        message = failure.step_failure_data.error.to_string()
        assert "merged_model[tiny-random] was merged from adapter weights" in message
        merged = _run(instance, "merged_model", "tiny-random")
        regenerated = _run(instance, "generations", TINY_VAL)
    meta = _meta(regenerated)
    assert meta["resume"] == "fresh (key changed: weights.adapter, weights.merged)"
    assert meta["generated_this_run"] == 30 and meta["generation_key"] != old["generation_key"]
    assert meta["served_weights"]["merged"] == _meta(merged)["weights_hash"]
    assert _version(regenerated) != _version(results["generations"])
    table = store.read_parquet(*generations_dir("tiny-random", "val"), "generations.parquet")
    assert set(table["generation_key"]) == {meta["generation_key"]}
    assert _status(instance, "generations", TINY_VAL)[0] == StaleStatus.FRESH
