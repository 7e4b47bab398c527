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


def _materialise_split(split: str):
    return dg.materialize(build_assets(), selection=["benchmark_split"], partition_key=split,
                          instance=dg.DagsterInstance.ephemeral(), resources=build_resources(),
                          raise_on_error=False)


def _failure_message(result) -> str:
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    return failure.step_failure_data.error.to_string()


def test_over_the_limit_the_quarantine_file_is_still_written_and_the_error_says_everything(
        tmp_path, monkeypatch, storage_root):
    from bioreview_assets.sample.generator import write_sample

    written = write_sample(tmp_path / "data")
    with written["val"].open("ab") as handle:
        handle.write(b"{broken\n[1, 2]\n\xff\xfe{}\n")
    monkeypatch.setenv("BIOREVIEW_DATA_DIR", str(tmp_path / "data"))
    result = _materialise_split("val")
    assert not result.success
    message = _failure_message(result)
    assert f"{written['val']}: 3 of 33 rows are bad" in message
    assert "invalid_utf8=1, not_an_object=1, unparsable_json=1" in message
    assert "max_bad_row_fraction (configs/project.yaml)" in message
    quarantine = ArtifactStore().path("benchmark", "val", "quarantine.jsonl")
    assert quarantine in message
    rows = ArtifactStore().read_jsonl("benchmark", "val", "quarantine.jsonl")
    assert [(r["line"], r["reason"]) for r in rows] == [(31, "unparsable_json"), (32, "not_an_object"),
                                                        (33, "invalid_utf8")]
    assert not ArtifactStore().exists("benchmark", "val", "articles.jsonl")  # a failed split publishes no articles


def test_a_bad_val_file_does_not_fail_the_train_partition_but_leakage_still_does(
        tmp_path, monkeypatch, storage_root):
    from bioreview_assets.sample.generator import write_sample

    written = write_sample(tmp_path / "data")
    train_lines = written["train"].read_text().split("\n")
    with written["val"].open("a") as handle:
        handle.write("{broken\n" * 10)
    monkeypatch.setenv("BIOREVIEW_DATA_DIR", str(tmp_path / "data"))
    assert not _materialise_split("val").success
    result = _materialise_split("train")
    assert result.success
    assert result.get_asset_materialization_events()[0].materialization.metadata["n_articles"].value == 120
    # A train article copied into the (still bad) val file: the cross-split check runs and names both files.
    with written["val"].open("a") as handle:
        handle.write(train_lines[4] + "\n")
    message = _failure_message(_materialise_split("train"))
    assert f"in train ({written['train']} line 5) and val ({written['val']} line 41)" in message


def test_a_row_holding_u2028_survives_the_round_trip(tmp_path, monkeypatch, storage_root):
    import json

    from bioreview_assets.sample.generator import write_sample
    from bioreview_assets.store.layout import read_articles

    written = write_sample(tmp_path / "data")
    lines = written["test"].read_text(encoding="utf-8").split("\n")
    row = json.loads(lines[0])
    row["title"] = row["title"] + " \u2028 and \u0085 inside"
    lines[0] = json.dumps(row, ensure_ascii=False)
    written["test"].write_text("\n".join(lines), encoding="utf-8")
    monkeypatch.setenv("BIOREVIEW_DATA_DIR", str(tmp_path / "data"))
    result = _materialise_split("test")
    assert result.success
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    assert metadata["n_quarantined"].value == 0 and metadata["n_articles"].value == 30
    assert read_articles(ArtifactStore(), "test")[0].title.endswith("\u2028 and \u0085 inside")


def test_missing_split_file_in_data_dir_is_a_clear_error(tmp_path, monkeypatch, storage_root):
    monkeypatch.setenv("BIOREVIEW_DATA_DIR", str(tmp_path))
    with pytest.raises(Exception, match="has no val.jsonl"):
        dg.materialize(build_assets(), selection=["benchmark_split"], partition_key="val",
                       instance=dg.DagsterInstance.ephemeral(), resources=build_resources())


def test_a_corrupt_or_misnamed_gzip_split_names_the_file(tmp_path, monkeypatch, storage_root):
    import gzip

    from bioreview_assets.sample.generator import write_sample

    written = write_sample(tmp_path / "data")
    raw = written["val"].read_bytes()
    written["val"].write_bytes(gzip.compress(raw))  # gzip bytes under a .jsonl name
    monkeypatch.setenv("BIOREVIEW_DATA_DIR", str(tmp_path / "data"))
    assert f"{written['val']}: the file is gzip-compressed" in _failure_message(_materialise_split("val"))
    written["val"].unlink()
    cut = tmp_path / "data" / "val.jsonl.gz"
    cut.write_bytes(gzip.compress(raw)[:200])  # a cut-off download
    assert f"{cut}: not a readable gzip file" in _failure_message(_materialise_split("val"))


def test_a_partition_being_materialised_is_not_materialised_twice(storage_root):
    """Issue 34: a second run of a partition whose lock another run holds is refused with the holder named, and
    writes nothing; the partition builds once the lock is free."""
    from bioreview_assets.store.locks import partition_lock

    store = ArtifactStore()
    with partition_lock(store, "benchmark_split", "val"):  # another run of benchmark_split[val] in progress
        result = _materialise_split("val")
        assert not result.success
        assert "benchmark_split[val] is being materialised by pid" in _failure_message(result)
        assert not store.exists("benchmark", "val", "meta.json")
    assert _materialise_split("val").success and store.read_json("benchmark", "val", "meta.json")["n_articles"] > 0
    assert store.exists("benchmark", "val", "manifest.json")
