import dagster as dg
import polars as pl
import pytest

from bioreview_assets.definitions import build_assets, build_resources, defs
from bioreview_assets.store.artifacts import ArtifactStore
from bioreview_assets.store.layout import corpus_dir


def test_definitions_load_with_the_expected_graph():
    keys = {key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys()}
    assert {"benchmark_split", "sft_corpus"} <= keys


@pytest.fixture(scope="module")
def materialised(_isolated_roots):
    instance = dg.DagsterInstance.ephemeral()
    assets, resources = build_assets(), build_resources()
    for split in ("train", "val", "test"):
        assert dg.materialize(assets, selection=["benchmark_split"], partition_key=split, instance=instance,
                              resources=resources).success
    results = {}
    for split in ("train", "val"):
        key = dg.MultiPartitionKey({"model": "tiny-random", "split": split})
        results[split] = dg.materialize(assets, selection=["sft_corpus"], partition_key=key, instance=instance,
                                        resources=resources)
    return results


def test_corpus_materialises_for_two_partitions_with_passing_checks(materialised):
    for split, result in materialised.items():
        assert result.success
        checks = result.get_asset_check_evaluations()
        assert {c.check_name for c in checks} == {"no_figure_concerns_leaked", "every_row_has_target",
                                                  "truncation_rate"}
        assert all(c.passed for c in checks)
        metadata = result.get_asset_materialization_events()[0].materialization.metadata
        assert metadata["rows"].value == {"train": 120, "val": 30}[split]
        assert metadata["removed_by_rule"].value.get("figure_flag", 0) > 0


def test_corpus_rows_use_the_model_chat_template_and_share_a_prompt_hash(materialised):
    store = ArtifactStore()
    train = store.read_parquet(*corpus_dir("tiny-random", "train"), "rows.parquet")
    val = store.read_parquet(*corpus_dir("tiny-random", "val"), "rows.parquet")
    assert train["prompt_hash"].n_unique() == 1 and train["prompt_hash"][0] == val["prompt_hash"][0]
    first = train.row(0, named=True)
    assert first["text"].startswith("<|im_start|>system\n") and first["target"] in first["text"]
    assert train.filter(pl.col("n_concerns") == 0).height == 0


def test_quarantined_rows_are_written_with_reasons(tmp_path, monkeypatch, storage_root):
    from bioreview_assets.sample.generator import write_sample

    written = write_sample(tmp_path / "data")
    with written["train"].open("a") as handle:
        handle.write("{broken\n")
    monkeypatch.setenv("BIOREVIEW_DATA_DIR", str(tmp_path / "data"))
    result = dg.materialize(build_assets(), selection=["benchmark_split"], partition_key="train",
                            instance=dg.DagsterInstance.ephemeral(), resources=build_resources())
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    assert metadata["n_quarantined"].value == 1 and metadata["is_sample"].value is False
    quarantined = ArtifactStore().read_jsonl("benchmark", "train", "quarantine.jsonl")
    assert quarantined[0]["line"] == 121 and quarantined[0]["reason"] == "unparsable_json"
    (check,) = result.get_asset_check_evaluations()
    assert check.check_name == "no_quarantined_rows" and not check.passed
    assert check.metadata["reasons"].value == {"unparsable_json": 1}


def test_too_many_bad_rows_fail_the_asset(tmp_path, monkeypatch, storage_root):
    from bioreview_assets.sample.generator import write_sample

    written = write_sample(tmp_path / "data")
    with written["val"].open("a") as handle:
        handle.write("{broken\n")
    monkeypatch.setenv("BIOREVIEW_DATA_DIR", str(tmp_path / "data"))
    with pytest.raises(Exception, match="1 of 31 rows are bad"):
        dg.materialize(build_assets(), selection=["benchmark_split"], partition_key="val",
                       instance=dg.DagsterInstance.ephemeral(), resources=build_resources())


def test_missing_split_file_in_data_dir_is_a_clear_error(tmp_path, monkeypatch, storage_root):
    monkeypatch.setenv("BIOREVIEW_DATA_DIR", str(tmp_path))
    with pytest.raises(Exception, match="has no train.jsonl"):
        dg.materialize(build_assets(), selection=["benchmark_split"], partition_key="val",
                       instance=dg.DagsterInstance.ephemeral(), resources=build_resources())
