"""A fine-tuned model's scores logged against its adapter's MLflow run (tracking.mlflow on): `val/f1` for the headline
(default policy and matcher), `val/raw/minilm/f1` for the others; the run is the one ml/tracking.py opened for the
training."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bioreview_assets.ml.tracking import MlflowRun, log_metrics
from bioreview_assets.store.records import AdapterMeta, ScoreRow

if TYPE_CHECKING:
    from bioreview_assets.config.project import TrackingConfig


def score_metric_prefix(split: str, policy: str, matcher: str, *, default_policy: str, default_matcher: str) -> str:
    """Metric prefix of one score row: `val` for the headline (default policy and matcher), else `val/raw/minilm`."""
    parts = [split] + ([policy] if policy != default_policy else []) + ([matcher] if matcher != default_matcher else [])
    return "/".join(parts)


def track_scores(tracking: TrackingConfig, adapter_meta: AdapterMeta | None, rows: list[ScoreRow], *, policy: str,
                 default_policy: str, default_matcher: str) -> dict | None:
    """Log a system's score rows (one split, every matcher) against its adapter's MLflow run; None without one."""
    run_info = adapter_meta.mlflow_run if adapter_meta is not None else None
    if not tracking.mlflow or not run_info:
        return None
    run = MlflowRun(**run_info)
    logged: dict[str, float] = {}
    for row in rows:
        prefix = score_metric_prefix(row.split, policy, row.matcher, default_policy=default_policy,
                                     default_matcher=default_matcher)
        logged.update({f"{prefix}/{key}": value for key, value in row.tracked().items()})
    log_metrics(run, logged, int(adapter_meta.global_step or 0))
    client = run.client()
    for row in rows:
        client.set_tag(run.run_id, f"bioreview.matcher.{row.matcher}", str(row.matcher_id))
    return {"run_id": run.run_id, "metrics": len(logged)}
