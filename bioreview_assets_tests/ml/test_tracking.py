"""Tracking without a server: MLflow run per adapter (SQLite file), scores against it, probes and sweeps as runs."""

from __future__ import annotations

import importlib.util
import sys

import pytest

from bioreview_assets.ml.tracking import (
    TRACKING_FILE,
    Tracker,
    TrackingUnavailable,
    mlflow_client,
    mlflow_tracking_uri,
    run_params,
    run_tags,
    track_probe,
)
from bioreview_assets.services.score_tracking import score_metric_prefix, track_scores
from bioreview_assets.config.model import BaseModelSource, ModelConfig
from bioreview_assets.config.project import TrackingConfig
from bioreview_assets.store.records import ScoreRow
from bioreview_assets_tests.tensorboard import read_scalars
from bioreview_assets_tests.ml.test_training import CORPUS_HASH, PROMPT_HASH, corpus, tiny_cfg

HAS_MLFLOW = importlib.util.find_spec("mlflow") is not None
needs_mlflow = pytest.mark.skipif(not HAS_MLFLOW, reason="MLFLOW TRACKING NOT TESTED: mlflow is not installed "
                                  "(the dev extra and the locks `make venv` installs include it; elsewhere pip install 'bioreview-assets[mlflow]')")
IDENTITY = {"model": "tiny-random", "config_hash": "c0", "corpus_hash": "k0", "prompt_hash": "p0"}


def _metrics(f1: float) -> dict:
    return {"f1_micro": f1, "recall_micro": 0.5, "precision_micro": 0.4, "recall_major": 0.3, "null_f1": 0.1,
            "count_oracle_f1": 0.8, "n_articles": 30, "n_gt": 300, "n_tool": 280, "n_matched": 120,
            "matcher_id": f"id-{f1}", "ci": {"f1_micro_ours": [f1 - 0.1, f1 + 0.1], "recall_micro": [0.4, 0.6],
                                             "precision_micro": [0.3, 0.5]},
            "coverage": {"n_articles_in_output": 30, "n_articles_missing_from_output": 0,
                         "n_unknown_prediction_ids": 0}}


def _row(f1: float, matcher: str = "minilm") -> ScoreRow:
    return ScoreRow.from_metrics(_metrics(f1), system="tiny-random", split="val", matcher=matcher, split_hash="s0",
                                 gt_filter="1")


def test_score_metric_names():
    prefix = lambda policy, matcher: score_metric_prefix("val", policy, matcher, default_policy="dedup-cap20",
                                                        default_matcher="minilm")
    assert prefix("dedup-cap20", "minilm") == "val"  # the headline figures: val/f1, val/null_f1, ...
    assert prefix("raw", "minilm") == "val/raw" and prefix("dedup-cap20", "minilm-strict") == "val/minilm-strict"
    figures = _row(0.42).tracked()
    assert figures["f1"] == 0.42 and figures["null_f1"] == 0.1 and figures["count_oracle_f1"] == 0.8
    assert (figures["f1_ci_lo"], figures["f1_ci_hi"]) == pytest.approx((0.32, 0.52))


def test_sweep_variants_and_probes_are_told_apart_by_tags():
    base = BaseModelSource(kind="tiny_random")
    assert run_tags(ModelConfig(name="qwen3-8b@lr1e-4", base=base), IDENTITY)["bioreview.sweep_variant"] == "lr1e-4"
    probe = run_tags(ModelConfig(name="tiny-random@step3", base=base, probe_of="tiny-random", probe_step=3), IDENTITY)
    assert probe["bioreview.kind"] == "probe" and probe["bioreview.probe_step"] == "3"
    assert run_tags(ModelConfig(name="tiny-random", base=base), IDENTITY)["bioreview.kind"] == "adapter"
    assert run_params(tiny_cfg())["training.learning_rate"] == "0.001"


def test_default_store_is_a_sqlite_file_at_a_local_root_only(monkeypatch, tmp_path):
    monkeypatch.setenv("BIOREVIEW_STORAGE", str(tmp_path / "root"))
    assert mlflow_tracking_uri(TrackingConfig(mlflow=True)) == f"sqlite:///{tmp_path / 'root' / 'mlflow.db'}"
    monkeypatch.setenv("BIOREVIEW_STORAGE", "s3://bucket/bioreview")
    with pytest.raises(TrackingUnavailable, match="mlflow_tracking_uri"):
        mlflow_tracking_uri(TrackingConfig(mlflow=True))
    assert mlflow_tracking_uri(TrackingConfig(mlflow=True, mlflow_tracking_uri="http://mlflow:5000")).startswith("http")


def test_missing_mlflow_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow -> ImportError
    monkeypatch.setitem(sys.modules, "mlflow.tracking", None)
    mlflow_client.cache_clear()
    with pytest.raises(TrackingUnavailable, match=r"bioreview-assets\[mlflow\]"):
        mlflow_client("sqlite:///nowhere.db")
    mlflow_client.cache_clear()


def test_tensorboard_only_needs_no_mlflow(tmp_path):
    tracker = Tracker.start(tmp_path, tiny_cfg(), IDENTITY, resumed=False, tracking=TrackingConfig())
    assert tracker.mlflow is None and tracker.links()["tensorboard_dir"] == str(tmp_path / "tensorboard")
    assert [type(c).__name__ for c in tracker.callbacks()] == ["TensorBoardCallback"]


@needs_mlflow
def test_a_fresh_start_opens_a_new_run_and_a_resume_continues_it(tmp_path):
    tracking = TrackingConfig(mlflow=True, mlflow_tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    first = Tracker.start(tmp_path / "out", tiny_cfg(), IDENTITY, resumed=False, tracking=tracking)
    (first.tensorboard_dir / "events.out.tfevents.old").write_text("")
    resumed = Tracker.start(tmp_path / "out", tiny_cfg(), IDENTITY, resumed=True, tracking=tracking)
    assert resumed.mlflow == first.mlflow and (first.tensorboard_dir / "events.out.tfevents.old").exists()
    fresh = Tracker.start(tmp_path / "out", tiny_cfg(), IDENTITY, resumed=False, tracking=tracking)
    assert fresh.mlflow.run_id != first.mlflow.run_id and fresh.mlflow.experiment_id == first.mlflow.experiment_id
    assert not list(first.tensorboard_dir.iterdir())  # the older curves went with the older run
    assert "RUNNING" == mlflow_client(tracking.mlflow_tracking_uri).get_run(fresh.mlflow.run_id).info.status


@needs_mlflow
@pytest.mark.slow
def test_mlflow_run_per_adapter_with_its_scores_and_a_nested_probe(tmp_path):
    from bioreview_assets.ml.training import train_adapter

    tracking = TrackingConfig(mlflow=True, mlflow_tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
                              experiment="bioreview-test")
    train, val = corpus()
    cfg = tiny_cfg(max_steps=4, save_steps=2)
    meta = train_adapter(cfg, train, val, tmp_path / "adapter", prompt_hash=PROMPT_HASH, corpus_hash=CORPUS_HASH,
                         tracking=tracking).meta
    info = meta.mlflow_run
    assert (tmp_path / "adapter" / TRACKING_FILE).exists()
    client = mlflow_client(tracking.mlflow_tracking_uri)
    run = client.get_run(info["run_id"])
    assert run.info.status == "FINISHED" and run.info.run_name == "tiny-random"
    assert client.get_experiment(run.info.experiment_id).name == "bioreview-test"
    assert run.data.tags["bioreview.kind"] == "adapter" and run.data.tags["bioreview.corpus_hash"] == CORPUS_HASH
    assert run.data.params["training.max_steps"] == "4" and run.data.params["training.lora.r"] == "8"
    assert [m.step for m in client.get_metric_history(info["run_id"], "train/loss")] == [1, 2, 3, 4]
    assert [m.step for m in client.get_metric_history(info["run_id"], "eval/loss")] == [2, 4]
    assert run.data.metrics["summary/final_val_loss"] == pytest.approx(meta.final_val_loss)
    assert "train/tokens_per_s" in run.data.metrics and "train/grad_norm" in run.data.metrics

    logged = track_scores(tracking, meta, [_row(0.42, "minilm"), _row(0.3, "minilm-strict")], policy="dedup-cap20",
                          default_policy="dedup-cap20", default_matcher="minilm")
    assert logged["run_id"] == info["run_id"]
    scored = client.get_run(info["run_id"]).data
    assert scored.metrics["val/f1"] == 0.42 and scored.metrics["val/minilm-strict/f1"] == 0.3
    assert scored.metrics["val/f1_ci_lo"] == pytest.approx(0.32) and scored.metrics["val/null_f1"] == 0.1
    assert scored.tags["bioreview.matcher.minilm"] == "id-0.42"
    assert track_scores(TrackingConfig(), meta, [_row(0.42, "minilm")], policy="dedup-cap20",
                        default_policy="dedup-cap20", default_matcher="minilm") is None  # switched off

    probe_cfg = ModelConfig(name="tiny-random@step2", base=cfg.base, training=cfg.training, probe_of="tiny-random",
                            probe_step=2)
    history = [e for e in run_history(tmp_path / "adapter") if e.get("step", 0) <= 2]
    links = track_probe(tracking, tmp_path / "probe", probe_cfg, meta, history)
    probe = client.get_run(links["mlflow"]["run_id"])
    assert probe.info.experiment_id == run.info.experiment_id  # one experiment, separate runs
    assert probe.data.tags["mlflow.parentRunId"] == info["run_id"] and probe.data.tags["bioreview.probe_step"] == "2"
    assert [m.step for m in client.get_metric_history(probe.info.run_id, "eval/loss")] == [2]
    assert [step for step, _ in read_scalars(tmp_path / "probe" / "tensorboard")["train/loss"]] == [1, 2]


def run_history(adapter_root) -> list[dict]:
    import json

    return json.loads((adapter_root / "checkpoints" / "checkpoint-2" / "trainer_state.json").read_text())["log_history"]


def test_a_failing_tracking_store_does_not_stop_the_training(monkeypatch):
    from bioreview_assets.ml import tracking

    calls = []

    def broken(run, metrics, step):
        calls.append(step)
        raise OSError("database is locked")

    monkeypatch.setattr(tracking, "log_metrics", broken)
    callback = tracking.MlflowLogCallback(tracking.MlflowRun("sqlite:///x.db", "1", "r1"))
    state = type("State", (), {"is_world_process_zero": True, "global_step": 3})()
    for _ in range(2):
        callback.on_log(None, state, None, logs={"loss": 1.0})
    assert callback.failed and calls == [3]  # warned once, then left alone
