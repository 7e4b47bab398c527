"""The whole graph in-process on the tiny model, with a crafted 'oracle' system standing in for the second model."""

import json
import re
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from bioreview_assets.services.serving import PromptMismatch
from bioreview_assets.store.generation_table import parsed_columns
from bioreview_assets.core.gt_filter import HARNESS_POLICY, filter_article
from bioreview_assets.core.schema import SPLITS
from bioreview_assets.definitions import build_assets, build_resources
from bioreview_assets.store.artifacts import ArtifactStore
from bioreview_assets.store.catalog import query_table
from bioreview_assets.cli.demo import Step
from bioreview_assets.cli.summary import check_summary_lines, leaderboard_summary_lines
from bioreview_assets.config.loader import load_snapshot
from bioreview_assets.store.layout import adapter_dir, generations_dir, read_articles

ORACLE = "smollm2-135m"  # its generations are replaced by the reference concerns: a perfect reviewer
PROBE = "tiny-random@step3"  # checkpoint probe configured in configs/project.yaml
BASE = "smollm2-135m-base"  # the oracle's base_system: stands in as a base model that says nothing useful


def _key(**dims):
    return dg.MultiPartitionKey(dims)


def _run(instance, asset, partition):
    result = dg.materialize(build_assets(), selection=[asset], partition_key=partition, instance=instance,
                            resources=build_resources())
    assert result.success, asset
    return result


def _write_oracle_generations(store: ArtifactStore, split: str, model: str = ORACLE) -> None:
    """The reference concerns as the model's output (for BASE: a base model's refusal, which parses to nothing)."""
    rows = []
    for article in read_articles(store, split):
        kept = filter_article(article, HARNESS_POLICY).kept
        text = json.dumps([{"text": c.text, "category": c.category, "severity": c.severity} for c in kept])
        if model == BASE:
            text = "As an AI model I cannot review the full article."
        rows.append({"article_id": article.id, "text": text, "prompt_tokens": 0, "completion_tokens": 0,
                     "seconds": 0.0, "error": None, "attempt": 1, "prompt_hash": "oracle"})
    table = parsed_columns(pl.DataFrame(rows, schema_overrides={"error": pl.String}))
    sources = {a.id: a.source for a in read_articles(store, split)}
    table = table.with_columns(pl.col("article_id").replace_strict(sources).alias("source"))
    store.write_parquet(table, *generations_dir(model, split), "generations.parquet")


# The graph is built in stages, one module-scoped fixture each: a failing materialisation errors the tests of its
# stage and later ones under that fixture's name (and the failing asset partition), while earlier stages' tests run.
# Each test asks for the earliest stage that holds what it checks. The tiny model's chain (splits, corpora, adapter,
# merged model and its val generations) comes from the session's `tiny_chain` (conftest.py), shared with
# test_staleness.py; this module adds the rest on its own checkout of it.


class Graph:
    def __init__(self, instance: dg.DagsterInstance, results: dict[str, dg.ExecuteInProcessResult]):
        self.instance = instance
        self.store = ArtifactStore()
        self.results = results

    def run(self, stage: str, asset: str, partition, name: str | None = None):
        try:
            result = _run(self.instance, asset, partition)
        except Exception as err:
            raise AssertionError(f"stage {stage!r}: {asset}[{partition}] failed: {err}") from err
        if name:
            self.results[name] = result
        return result


@pytest.fixture(scope="module")
def splits_stage(tiny_chain) -> Graph:
    """Every split; from the tiny chain also the tiny model's corpora, adapter ("adapter"), merged model and val
    generations ("generations")."""
    with tiny_chain.checkout() as (instance, results):
        built = Graph(instance, results)
        for split in SPLITS:
            if split not in ("train", "val"):  # the chain's own
                built.run("splits", "benchmark_split", split)
        yield built


@pytest.fixture(scope="module")
def training_stage(splits_stage) -> Graph:
    """Corpus, adapter, merged model (the chain's) and the checkpoint probe of the tiny model."""
    built = splits_stage
    built.run("training", "adapter", PROBE, "probe")
    return built


@pytest.fixture(scope="module")
def generation_stage(training_stage) -> Graph:
    """Generations of the tiny model (the chain's) and its probe; the oracle's and the base model's stand-ins."""
    built = training_stage
    built.run("generation", "generations", _key(model=PROBE, split="val"))
    _write_oracle_generations(built.store, "val")
    _write_oracle_generations(built.store, "val", BASE)
    return built


@pytest.fixture(scope="module")
def concerns_stage(generation_stage) -> Graph:
    built = generation_stage
    for system in ("tiny-random", "tiny-random~raw", ORACLE, BASE, "bm25", PROBE):
        built.run("concerns", "concerns", _key(system=system, split="val"))
    built.run("concerns", "ensemble_concerns", _key(system="embedded-union", split="val"), "ensemble")
    built.run("concerns", "ensemble_concerns", _key(system="embedded-union~single-at-count", split="val"))
    return built


@pytest.fixture(scope="module")
def scores_stage(concerns_stage) -> Graph:
    built = concerns_stage
    for system in ("tiny-random", "tiny-random~raw", ORACLE, BASE, "bm25", "embedded-union",
                   "embedded-union~single-at-count", PROBE):
        built.run("scores", "scores", _key(system=system, split="val"), f"scores:{system}")
    return built


@pytest.fixture(scope="module")
def graph(scores_stage) -> Graph:
    """The whole graph: leaderboard and published adapter on top of the scores."""
    built = scores_stage
    built.run("report", "leaderboard", None, "leaderboard")
    built.run("report", "published_adapter", "tiny-random", "published")
    return built


def _metadata(result):
    return {k: v.value for k, v in result.get_asset_materialization_events()[0].materialization.metadata.items()}


def test_adapter_metadata_shows_training_facts(training_stage):
    meta = _metadata(training_stage.results["adapter"])
    assert meta["global_step"] >= 1 and meta["trainable_params"] > 0
    targets = {f"self_attn.{p}_proj" for p in "qkvo"} | {f"mlp.{p}_proj" for p in ("gate", "up", "down")}
    assert meta["lora_wrapped_modules"] == {"full_attention": sorted(targets)}  # every projection of every layer
    assert meta["loss_curve"].startswith("![train/val loss](data:image/png;base64,")


def test_adapter_and_probe_runs_are_tensorboard_runs_side_by_side(training_stage):
    """Acceptance (#19): the adapter's event files read back with TensorBoard's own reader; the probe is a run too."""
    from bioreview_assets_tests.tensorboard import read_scalars

    store = training_stage.store
    meta = _metadata(training_stage.results["adapter"])
    assert meta["tensorboard"] == store.path(*adapter_dir("tiny-random"), "tensorboard")
    assert meta["tensorboard_command"] == f"tensorboard --logdir {store.path('adapter')} --host 127.0.0.1"
    scalars = read_scalars(Path(meta["tensorboard"]))
    steps = store.read_json(*adapter_dir("tiny-random"), "adapter_meta.json")["global_step"]
    assert [s for s, _ in scalars["train/loss"]] == list(range(1, steps + 1)) and scalars["eval/loss"]
    assert {"train/learning_rate", "train/grad_norm", "train/tokens_per_s"} <= set(scalars)
    probe = read_scalars(Path(_metadata(training_stage.results["probe"])["tensorboard"]))
    assert max(s for s, _ in probe["train/loss"]) == 3 and [s for s, _ in probe["eval/loss"]] == [3]
    runs = sorted(p.parent.relative_to(store.path("adapter")).as_posix()
                  for p in Path(store.path("adapter")).glob("*/tensorboard/events.out.tfevents.*"))
    assert runs == sorted({"tiny-random/tensorboard", f"{PROBE}/tensorboard"})


def test_published_adapter_card_validates_and_carries_the_scores(graph):
    """Acceptance (#19): the demo adapter's published folder; its card parses with huggingface_hub's ModelCard."""
    from huggingface_hub import ModelCard

    store = graph.store
    meta = _metadata(graph.results["published"])
    folder = Path(meta["path"])
    assert folder == Path(store.path("published_adapter", "tiny-random"))
    assert {"adapter_model.safetensors", "adapter_config.json", "tokenizer.json", "README.md", "prompt.json"} <= set(
        meta["files"])
    assert not {"optimizer.pt", "scheduler.pt", "trainer_state.json"} & {p.name for p in folder.iterdir()}
    card = ModelCard.load(folder / "README.md")
    assert card.data.library_name == "peft" and "qlora" in card.data.tags
    split_hash = store.read_json("benchmark", "train", "meta.json")["content_hash"]
    assert f"bioreview-sample/train-{split_hash}" in card.data.datasets
    f1 = _metadata(graph.results["scores:tiny-random"])["f1"]
    assert {(r.dataset_split, r.metric_type): r.metric_value for r in card.data.eval_results}[("val", "f1")] == \
        pytest.approx(f1, abs=1e-3)  # the UI shows 3 digits
    assert meta["scored_splits"] == ["val"] and meta["prompt_shipped"] is True
    adapter = store.read_json(*adapter_dir("tiny-random"), "adapter_meta.json")
    assert adapter["prompt_hash"] in card.text and adapter["corpus_hash"] in card.text


def test_adapter_and_probe_report_the_val_loss_check(training_stage):
    results = training_stage.results
    checks = {key: {check.check_name: check for check in results[key].get_asset_check_evaluations()}
              for key in ("adapter", "probe")}
    for key in ("adapter", "probe"):
        assert set(checks[key]) == {"val_loss_improved", "train_loss_fell"}
        assert checks[key]["val_loss_improved"].metadata["val_points"].value >= 1
    final, probe = checks["adapter"]["val_loss_improved"], checks["probe"]["val_loss_improved"]
    assert probe.metadata["val_points"].value <= final.metadata["val_points"].value  # history up to the step
    assert checks["adapter"]["train_loss_fell"].passed  # the blocking check lets the graph's adapter through


def test_checkpoint_probe_generates_from_its_step_and_shows_in_the_report(graph):
    meta = _metadata(graph.results["probe"])
    assert meta["probe_of"] == "tiny-random" and meta["step"] == 3
    store = graph.store
    assert store.read_parquet("generations", PROBE, "val", "generations.parquet").height == 8
    report = store.read_bytes("reports", "leaderboard.md").decode()
    probe_section = report.split("## Checkpoint probes")[1].split("##")[0]
    assert "| tiny-random | 3 | val |" in probe_section and "| tiny-random |  | val |" in probe_section


def test_generations_are_parsed_and_checked(generation_stage):
    result = generation_stage.results["generations"]
    meta = _metadata(result)
    assert meta["articles"] == 30  # every article of the val split (no per-model subset)
    assert {c.check_name for c in result.get_asset_check_evaluations()} == {"parse_failure_rate",
                                                                           "no_failed_generations"}


def test_oracle_scores_perfectly_and_the_matcher_discriminates(scores_stage):
    result = scores_stage.results[f"scores:{ORACLE}"]
    meta = _metadata(result)
    assert meta["f1"] == pytest.approx(1.0) and meta["recall"] == pytest.approx(1.0)
    assert meta["null_f1"] < 0.5
    check = result.get_asset_check_evaluations()[0]
    assert check.check_name == "matcher_discriminates" and check.passed


def test_bm25_sits_between_the_random_model_and_the_oracle(scores_stage):
    f1 = {s: _metadata(scores_stage.results[f"scores:{s}"])["f1"] for s in ("tiny-random", "bm25", ORACLE)}
    assert f1["tiny-random"] < f1["bm25"] < f1[ORACLE]


def test_ensemble_is_capped_like_a_single_model(concerns_stage):
    store = concerns_stage.store
    table = store.read_parquet("concerns", "embedded-union", "val", "concerns.parquet")
    assert table.group_by("article_id").len()["len"].max() <= 20
    assert set(table["members"].explode().unique().to_list()) <= {ORACLE, "bm25"}
    # The count baseline: the first member's concerns, never more per article than the ensemble emitted.
    single = store.read_parquet("concerns", "embedded-union~single-at-count", "val", "concerns.parquet")
    counts = table.group_by("article_id").len().join(single.group_by("article_id").len(), on="article_id",
                                                      how="left", suffix="_single").fill_null(0)
    assert (counts["len_single"] <= counts["len"]).all() and single.height > 0
    assert set(single["members"].explode().unique().to_list()) == {ORACLE}


def test_leaderboard_reconciles_with_score_rows_and_sql(graph):
    store = graph.store
    board = pl.read_json(store.read_bytes("reports", "leaderboard.json"))
    scores = pl.read_parquet(store.read_bytes("scores", "bm25", "val", "scores.parquet"))
    row = board.filter((pl.col("system") == "bm25") & (pl.col("split") == "val")).row(0, named=True)
    expected = scores.filter(pl.col("matcher") == "minilm").row(0, named=True)
    assert row["f1"] == pytest.approx(expected["f1"])
    # Micro F1 recomputed from the per-article rows equals the leaderboard's.
    articles = pl.read_parquet(store.read_bytes("scores", "bm25", "val", "articles.parquet")).filter(
        pl.col("matcher") == "minilm")
    matched, gt, tool = articles["n_matched"].sum(), articles["n_gt"].sum(), articles["n_tool"].sum()
    assert row["recall"] == pytest.approx(matched / gt) and row["precision"] == pytest.approx(matched / tool)
    text = query_table("SELECT system, count(*) AS n FROM matches WHERE matched GROUP BY system ORDER BY system",
                       store=store)
    assert "bm25" in text and ORACLE in text
    assert store.read_bytes("reports", "leaderboard_val.png").startswith(b"\x89PNG\r\n\x1a\n")


def test_every_documented_query_runs_on_the_graph_database(scores_stage):
    readme = (Path(__file__).resolve().parents[2] / "docs" / "sql.md").read_text()
    queries = [q for q in re.findall(r'bioreview sql "(SELECT.*?)"', readme, re.S) if q != "SELECT ..."]
    assert len(queries) >= 5
    for query in queries:
        assert query_table(query, max_rows=5, store=ArtifactStore()).startswith("shape: ("), query


def test_demo_summary_prints_the_leaderboard_and_plot_paths(graph):
    store = graph.store
    lines = leaderboard_summary_lines(store, load_snapshot())
    header = lines.index("Leaderboard, val split (minilm matcher, default post-processing dedup-cap20):")
    end = lines.index("", header)
    table = lines[header + 1:end]
    assert table[0].split()[:3] == ["system", "F1", "[95%"] and "null F1" in table[0] and "oracle F1" in table[0]
    rows = [line.split() for line in table[1:]]
    assert rows[0][:2] == [ORACLE, "1.000"]  # the oracle on top, its CI printed beside its F1
    assert all("~" not in row[0] for row in rows)  # policy variants and count baselines have their own table
    assert {row[0] for row in rows} >= {ORACLE, "bm25", BASE, "tiny-random"}
    assert [row for row in rows if row[0] == "tiny-random"][0][1] == "(produced"  # marked, not a silent zero
    assert all(row[-1] == "30/30" for row in rows if row[0] != PROBE)  # every row over the same articles
    variants = lines.index("Policy variants and count baselines, val:")
    assert any(line.split()[0] == "tiny-random~raw" for line in lines[variants + 2:])
    verdict = lines[lines.index("Verdict:") + 1]
    assert verdict.strip().startswith(f"val: fine-tuning raised F1 from 0.00 ({BASE}) to 1.00") and "bm25" in verdict
    assert any(line.strip().endswith("reports/leaderboard_val.png") for line in lines)


def test_single_models_and_ensembles_respect_their_cap(concerns_stage):
    checks = {c.check_name: c for c in concerns_stage.results["ensemble"].get_asset_check_evaluations()}
    assert checks["cap_respected"].passed and checks["cap_respected"].metadata["cap"].value == 20
    assert 0 < checks["cap_respected"].metadata["max_per_article"].value <= 20


def test_demo_summary_lists_failed_checks_by_partition(graph):
    results = graph.results
    steps = [(Step(("scores",), None, f"scores[{system}|val]"), results[f"scores:{system}"])
             for system in (ORACLE, "tiny-random")]
    lines = check_summary_lines(steps + [(Step(("leaderboard",), None, "leaderboard"), results["leaderboard"])])
    by_check = {line.split()[0]: line for line in lines[2:]}
    # The oracle's concerns discriminate; for the untrained tiny model (F1 0) the question does not apply.
    assert by_check["matcher_discriminates"].endswith("1 passed, 0 failed, 1 not applicable (F1 too low to judge)")
    (tiny,) = results["scores:tiny-random"].get_asset_check_evaluations()
    assert tiny.passed and tiny.description.startswith("tiny-random / val: not applicable: F1 0.000 is below 0.05")
    assert {"success_gate", "beats_base"} <= set(by_check)


def test_prompt_hash_mismatch_is_refused(training_stage):
    instance, store = training_stage.instance, training_stage.store
    original = store.read_json(*adapter_dir("tiny-random"), "adapter_meta.json")
    try:
        store.write_json({**original, "prompt_hash": "0000"}, *adapter_dir("tiny-random"), "adapter_meta.json")
        with pytest.raises(PromptMismatch, match="trained with prompt hash 0000 but inference would use"):
            dg.materialize(build_assets(), selection=["generations"], partition_key=_key(model="tiny-random",
                           split="test"), instance=instance, resources=build_resources())
        assert not store.exists(*generations_dir("tiny-random", "test"), "generations.parquet")  # nothing served
    finally:
        store.write_json(original, *adapter_dir("tiny-random"), "adapter_meta.json")


def test_stale_scores_are_detected_and_scheduled(scores_stage, tmp_path, monkeypatch):
    import shutil

    import yaml

    from bioreview_assets.config import loader
    from bioreview_assets.definitions import build_definitions
    from bioreview_assets.orchestration.automation import stale_score_partitions

    def tick():
        """The schedule of definitions built from the configs as they are now (a code location reload)."""
        repo = build_definitions(load_snapshot()).get_repository_def()
        schedule = repo.get_schedule_def("rescore_stale_schedule")
        return schedule.evaluate_tick(dg.build_schedule_context(instance=instance, repository_def=repo))

    instance, store = scores_stage.instance, scores_stage.store
    assert stale_score_partitions(store, load_snapshot().scored_matchers()) == []
    assert isinstance(tick().skip_message, str)

    configs = tmp_path / "configs"
    shutil.copytree(loader.configs_dir(), configs)
    matcher = yaml.safe_load((configs / "matchers" / "minilm.yaml").read_text())
    (configs / "matchers" / "minilm.yaml").write_text(yaml.safe_dump({**matcher, "threshold": 0.7}))
    monkeypatch.setenv("BIOREVIEW_CONFIG_DIR", str(configs))
    try:
        stale = stale_score_partitions(store, load_snapshot().scored_matchers())
        assert {(system, split) for system, split, _, _ in stale} == {
            (s, "val") for s in ("tiny-random", "tiny-random~raw", ORACLE, BASE, "bm25", "embedded-union",
                                 "embedded-union~single-at-count", PROBE)}  # every scored system
        assert all(changed == ["matchers"] for _, _, changed, _ in stale)
        requests = tick().run_requests
        assert len(requests) == 8 and requests[0].tags["bioreview/stale_inputs"] == "matchers"
    finally:
        monkeypatch.delenv("BIOREVIEW_CONFIG_DIR")
    meta = store.read_json("benchmark", "val", "meta.json")
    # A hand edit of a committed partition: without its manifest (as a partition written before manifests were),
    # since the manifest would refuse the edited file as corrupt.
    store.fs.rm(store.path("benchmark", "val", "manifest.json"))
    store.write_json({**meta, "content_hash": "changed"}, "benchmark", "val", "meta.json")
    try:
        stale = stale_score_partitions(store, load_snapshot().scored_matchers())
        assert {tuple(c) for _, _, c, _ in stale} == {("split_hash",)}
    finally:
        store.write_json(meta, "benchmark", "val", "meta.json")


def test_the_ui_metadata_names_partitions_reasons_and_previews(graph):
    """#15: a check result names its partition and reason; scores, generations and the leaderboard explain and
    preview what they hold."""
    result = graph.results["scores:bm25"]
    (check,) = result.get_asset_check_evaluations()
    assert check.partition == _key(system="bm25", split="val") and check.description.startswith("bm25 / val: ")
    meta = _metadata(result)
    assert re.fullmatch(r"F1 \d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\]", meta["f1_with_ci"]), meta["f1_with_ci"]
    assert "**null F1**" in meta["glossary"] and "| similarity | match |" in meta["preview"]
    assert meta["dagster/row_count"] > 0 and "similarity" in {c.name for c in meta["dagster/column_schema"].columns}
    generations = _metadata(graph.results["generations"])
    assert generations["dagster/row_count"] > 0 and "reference" in generations["preview"]
    (parse, _) = graph.results["generations"].get_asset_check_evaluations()
    assert parse.description.startswith("tiny-random / val: ")
    board = _metadata(graph.results["leaderboard"])
    assert {"headline_val", "per_source", "per_category", "failure_modes", "failure_examples", "zero_recall_articles",
            "glossary", "report"} <= set(board)
    assert "[" in board["headline_val"] and board["report"].endswith("leaderboard.md")
