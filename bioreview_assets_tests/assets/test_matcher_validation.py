"""matcher_validation[matcher] in the graph: labelled pairs in, P/R/F1 with CIs and the check against the bar out."""

import dagster as dg

from bioreview_assets.checks.matcher_validation import evaluate_matcher_validation
from bioreview_assets.definitions import build_assets, build_resources
from bioreview_assets.config.project import MatcherValidationConfig
from bioreview_assets.store.artifacts import ArtifactStore
from bioreview_assets.store.labelled_pairs import SAMPLE_SOURCE, labelled_pair_sources


def test_lexical_matcher_is_validated_on_the_sample_pairs_and_misses_the_bar(storage_root):
    result = dg.materialize(build_assets(), selection=["matcher_validation"], partition_key="lexical",
                            instance=dg.DagsterInstance.ephemeral(), resources=build_resources())
    (check,) = result.get_asset_check_evaluations()
    record = ArtifactStore().read_json("matcher_validation", "lexical", "validation.json")
    sample = record["sources"][SAMPLE_SOURCE]
    # Jaccard at 0.65 x 0.3 misses most paraphrases: precision high, recall low, F1 under the 0.8 bar.
    assert sample["precision"] > 0.8 > sample["f1"] and sample["recall"] < 0.5
    assert sample["ci"]["f1"][0] <= sample["f1"] <= sample["ci"]["f1"][1]
    assert len(sample["curve"]) == 14 and sample["best_f1"] >= sample["f1"]
    assert record["matcher"]["method"] == "lexical" and record["min_f1"] == 0.8
    assert not check.passed and check.description.startswith("lexical: below the bar of 0.8: sample-generator")


def test_user_label_files_are_a_source_of_their_own(tmp_path):
    labels = tmp_path / "ours.csv"
    labels.write_text("text_a,text_b,label,annotator\nToo few mice.,The sample is small.,1,ann\n"
                      "Too few mice.,The sample is small.,1,bob\nDefine ROS.,Too few mice.,0,ann\n")
    sources = labelled_pair_sources(MatcherValidationConfig(sample_pairs=False, labelled_pairs=[str(labels)]))
    assert list(sources) == ["ours.csv"] and len(sources["ours.csv"]) == 3
    missing = MatcherValidationConfig(labelled_pairs=[str(tmp_path / "nope.csv")])
    try:
        labelled_pair_sources(missing)
    except FileNotFoundError as err:
        assert "nope.csv" in str(err)
    else:
        raise AssertionError("a missing labels file must be an error")


def test_check_passes_only_when_every_source_reaches_the_bar():
    good = {"f1": 0.9, "precision": 0.9, "recall": 0.9, "n_pairs": 10, "ci": {"f1": (0.8, 0.95)},
            "best_configured_threshold": 0.6}
    bad = {**good, "f1": 0.7, "ci": {"f1": (0.6, 0.8)}}
    assert evaluate_matcher_validation({"a": good}, 0.8)[0].passed
    (result,) = evaluate_matcher_validation({"a": good, "b": bad}, 0.8, label="m")
    assert not result.passed and result.description.startswith("m: below the bar of 0.8: b;")
