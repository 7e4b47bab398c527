"""Experiment tracking without a server: TensorBoard event files beside the checkpoints, an optional MLflow store.

Layout under an adapter's folder (next to checkpoints/ and adapter/, see ml/training/recipe.py):

    tensorboard/     event files of transformers' own TensorBoardCallback (train/*, eval/*): one TensorBoard run
    tracking.json    the MLflow run of this adapter (tracking.mlflow on); a fresh start begins a new run

`tensorboard --logdir <root>/adapter` (`make tensorboard`) shows every adapter, sweep variant and checkpoint probe
side by side; with MLflow on, all of them are runs of one experiment and the scores asset logs against them.
"""

from __future__ import annotations

import functools
import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bioreview_assets.config.model import ModelConfig
from bioreview_assets.config.project import TrackingConfig
from bioreview_assets.store.records import AdapterMeta

log = logging.getLogger(__name__)

TENSORBOARD_DIR = "tensorboard"
TRACKING_FILE = "tracking.json"
MLFLOW_DB = "mlflow.db"


class TrackingUnavailable(RuntimeError):
    """Tracking is switched on but cannot work here (package missing, no usable store)."""


def tensorboard_command(logdir: str) -> str:
    """The command that shows every run under `logdir` (the storage root's adapter folder)."""
    return f"tensorboard --logdir {logdir} --host 127.0.0.1"


# ---------------------------------------------------------------------------------------------------- TensorBoard


def tensorboard_callback(logdir: Path):
    """transformers' TensorBoardCallback writing into `logdir`."""
    from transformers.integrations import TensorBoardCallback

    callback = TensorBoardCallback()
    # transformers 5 has no TrainingArguments.logging_dir: the callback reads TENSORBOARD_LOGGING_DIR, a process-wide
    # variable. Setting the attribute keeps two trainings of one process (tests, a sweep) in their own folders.
    callback.logging_dir = str(logdir)
    return callback


def write_log_history(logdir: Path, log_history: list[dict]) -> None:
    """Write trainer log entries as the TensorBoardCallback names them (train/loss, eval/loss, ...) at their step."""
    from torch.utils.tensorboard import SummaryWriter
    from transformers.integrations.integration_utils import rewrite_logs

    writer = SummaryWriter(log_dir=str(logdir))
    try:
        for entry in log_history:
            step = entry.get("step")
            for key, value in rewrite_logs({k: v for k, v in entry.items() if k != "step"}).items():
                if isinstance(value, (int, float)) and step is not None:
                    writer.add_scalar(key, value, step)
    finally:
        writer.close()


# --------------------------------------------------------------------------------------------------------- MLflow


@dataclass(frozen=True)
class MlflowRun:
    """Where one adapter's MLflow run lives."""

    tracking_uri: str
    experiment_id: str
    run_id: str

    def client(self):
        return mlflow_client(self.tracking_uri)


@functools.lru_cache(maxsize=None)
def mlflow_client(tracking_uri: str):
    """An MlflowClient bound to `tracking_uri` (explicit: the fluent mlflow API keeps process-wide state).

    Cached: a new client opens and checks the SQLite schema again, about a second per log call on a busy CPU.
    """
    try:
        from mlflow.tracking import MlflowClient
    except ImportError as err:
        raise TrackingUnavailable(
            "tracking.mlflow is on in configs/project.yaml but mlflow is not installed: "
            "`pip install 'bioreview-assets[mlflow]'` (mlflow-skinny), or switch tracking.mlflow off"
        ) from err
    return MlflowClient(tracking_uri=tracking_uri)


def mlflow_tracking_uri(tracking: TrackingConfig) -> str:
    """The configured tracking URI, else a SQLite file at the local storage root (no server either way)."""
    if tracking.mlflow_tracking_uri:
        return tracking.mlflow_tracking_uri
    from bioreview_assets.config.env import storage_root

    root = storage_root()
    if "://" in root and not root.startswith("file://"):
        # Each pod has its own local disk: a SQLite file there would split one experiment into one file per pod.
        raise TrackingUnavailable(
            f"tracking.mlflow is on and BIOREVIEW_STORAGE={root} is not a local folder: set "
            "tracking.mlflow_tracking_uri in configs/project.yaml (a shared SQLite file, a database or a server)"
        )
    folder = Path(root.removeprefix("file://")).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / MLFLOW_DB}"


def _experiment_id(client, name: str, tracking_uri: str) -> str:
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    artifacts = None
    if tracking_uri.startswith("sqlite:///"):
        # MLflow's default artifact root is ./mlruns of whatever the working directory is: keep it beside the DB.
        artifacts = str(Path(tracking_uri.removeprefix("sqlite:///")).parent / "mlflow-artifacts")
    return client.create_experiment(name, artifact_location=artifacts)


def run_tags(cfg: ModelConfig, identity: dict) -> dict[str, str]:
    """Tags that tell adapters, sweep variants and checkpoint probes apart within the one experiment."""
    tags = {f"bioreview.{key}": str(value) for key, value in identity.items()}
    if cfg.probe_of:
        tags.update({"bioreview.kind": "probe", "bioreview.probe_of": cfg.probe_of,
                     "bioreview.probe_step": str(cfg.probe_step)})
    elif "@" in cfg.name:
        base, variant = cfg.name.split("@", 1)
        tags.update({"bioreview.kind": "sweep", "bioreview.sweep_base": base, "bioreview.sweep_variant": variant})
    else:
        tags["bioreview.kind"] = "adapter"
    return tags


def run_params(cfg: ModelConfig) -> dict[str, str]:
    """The training config, flattened to dotted keys (what researchers compare across sweep variants)."""
    flat: dict[str, str] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else key, inner)
        else:
            flat[prefix] = json.dumps(value) if isinstance(value, list) else str(value)

    walk("", {"base": cfg.base.model_dump(mode="json", exclude_none=True), "corpus": cfg.corpus,
              "prompt": cfg.prompt.model_dump(mode="json"), "training": cfg.training.model_dump(mode="json")})
    return flat


def open_mlflow_run(tracking: TrackingConfig, cfg: ModelConfig, identity: dict, *, previous: dict | None = None,
                    parent_run_id: str | None = None) -> MlflowRun:
    """Continue `previous` (same store, run still there) or create this adapter's run with its tags and params."""
    from mlflow.entities import Param, RunTag

    uri = mlflow_tracking_uri(tracking)
    client = mlflow_client(uri)
    if previous and previous.get("tracking_uri") == uri:
        try:
            client.update_run(previous["run_id"], status="RUNNING")
            return MlflowRun(uri, previous["experiment_id"], previous["run_id"])
        except Exception as err:  # deleted or unknown run: start a new one rather than lose the training's curves
            log.warning("MLflow run %s cannot be continued (%s): starting a new run", previous.get("run_id"), err)
    experiment_id = _experiment_id(client, tracking.experiment, uri)
    tags = run_tags(cfg, identity)
    if parent_run_id:
        tags["mlflow.parentRunId"] = parent_run_id  # the UI nests a probe under the run of the adapter it probes
    run = client.create_run(experiment_id, run_name=cfg.name, tags=tags)
    client.log_batch(run.info.run_id, params=[Param(k, v) for k, v in run_params(cfg).items()],
                     tags=[RunTag(k, v) for k, v in tags.items()])
    return MlflowRun(uri, experiment_id, run.info.run_id)


def log_metrics(run: MlflowRun, metrics: dict[str, float], step: int) -> None:
    """Numeric metrics in one batch at `step` (non-numeric values are skipped)."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    batch = [Metric(key, float(value), now, int(step)) for key, value in metrics.items()
             if isinstance(value, (int, float)) and not isinstance(value, bool)]
    if batch:
        run.client().log_batch(run.run_id, metrics=batch)


def log_history_to_mlflow(run: MlflowRun, log_history: list[dict]) -> None:
    """Trainer log entries under the TensorBoard names, so both UIs show the same curves."""
    from transformers.integrations.integration_utils import rewrite_logs

    for entry in log_history:
        if "step" in entry:
            log_metrics(run, rewrite_logs({k: v for k, v in entry.items() if k != "step"}), entry["step"])


class MlflowLogCallback:
    """Logs every trainer log dict to this adapter's MLflow run (train/*, eval/* as TensorBoard names them).

    Not transformers' MLflowCallback: that one configures itself through process-wide environment variables and the
    fluent API and ends a run of its own, while this run must outlive the training (the scores log against it).
    """

    def __init__(self, run: MlflowRun):
        self.run = run
        self.failed = False

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs and not self.failed:
            from transformers.integrations.integration_utils import rewrite_logs

            try:
                log_metrics(self.run, rewrite_logs(logs), state.global_step)
            except Exception as err:  # a tracking store that goes away must not cost the training
                self.failed = True
                log.warning("MLflow logging stopped at step %d (%s); TensorBoard keeps the curves",
                            state.global_step, err)


# ---------------------------------------------------------------------------------------------- one adapter's run


@dataclass
class Tracker:
    """The tracking of one adapter: its TensorBoard folder and, with MLflow on, its MLflow run."""

    tensorboard_dir: Path
    mlflow: MlflowRun | None = None

    @classmethod
    def start(cls, output_dir: Path, cfg: ModelConfig, identity: dict, *, resumed: bool,
              tracking: TrackingConfig | None = None) -> "Tracker":
        """Tracking for a training into `output_dir`; a run that starts from step 0 drops the curves of older ones.

        Rank 0 only: under torchrun every rank trains, but only rank 0 owns the run, so recipe.py starts a Tracker
        on rank 0 alone (the callbacks check is_world_process_zero too).
        """
        output_dir = Path(output_dir)
        tensorboard = output_dir / TENSORBOARD_DIR
        record = output_dir / TRACKING_FILE
        if not resumed:
            # The curves must describe the adapter that ends up in this folder, not a killed or replaced run.
            shutil.rmtree(tensorboard, ignore_errors=True)
            record.unlink(missing_ok=True)
        tensorboard.mkdir(parents=True, exist_ok=True)
        tracker = cls(tensorboard)
        if tracking is not None and tracking.mlflow:
            previous = json.loads(record.read_text()).get("mlflow") if record.exists() else None
            tracker.mlflow = open_mlflow_run(tracking, cfg, identity, previous=previous)
            record.write_text(json.dumps(tracker.links(), indent=2))
        return tracker

    def callbacks(self) -> list:
        """Trainer callbacks, to be placed after the ones that add to the logs (TrainingMonitor: tokens/s, memory)."""
        from transformers import TrainerCallback

        callbacks = [tensorboard_callback(self.tensorboard_dir)]
        if self.mlflow is not None:
            # A TrainerCallback made at call time, as training/monitoring.as_callback does (this module sits below
            # training/ and imports none of it).
            callbacks.append(type(MlflowLogCallback.__name__, (MlflowLogCallback, TrainerCallback), {})(self.mlflow))
        return callbacks

    def links(self) -> dict:
        """What adapter_meta.json records: where the curves are."""
        return {"tensorboard_dir": str(self.tensorboard_dir), "mlflow": asdict(self.mlflow) if self.mlflow else None}

    def finish(self, trainer, summary: dict) -> None:
        """Close the event files (the final evaluate reopens one) and end the MLflow run with the summary figures."""
        from transformers.integrations import TensorBoardCallback

        for callback in trainer.callback_handler.callbacks:
            if isinstance(callback, TensorBoardCallback) and callback.tb_writer is not None:
                callback.tb_writer.close()
                callback.tb_writer = None
        if self.mlflow is not None:
            try:
                log_metrics(self.mlflow, {f"summary/{k}": v for k, v in summary.items()}, trainer.state.global_step)
                self.mlflow.client().set_terminated(self.mlflow.run_id)
            except Exception as err:  # the adapter is trained and saved: a tracking hiccup must not fail it now
                log.warning("MLflow run %s not finished cleanly: %s", self.mlflow.run_id, err)


def track_probe(tracking: TrackingConfig | None, output_dir: Path, cfg: ModelConfig, parent_meta: AdapterMeta,
                log_history: list[dict]) -> dict:
    """A checkpoint probe as a run of its own: the parent's log up to the probed step, nested under its MLflow run."""
    tensorboard = Path(output_dir) / TENSORBOARD_DIR
    shutil.rmtree(tensorboard, ignore_errors=True)
    write_log_history(tensorboard, log_history)
    links = {"tensorboard_dir": str(tensorboard), "mlflow": None}
    if tracking is not None and tracking.mlflow:
        identity = {k: parent_meta.identity[k] for k in ("config_hash", "corpus_hash", "prompt_hash")}
        parent = parent_meta.mlflow_run or {}
        run = open_mlflow_run(tracking, cfg, {"model": cfg.name, **identity}, parent_run_id=parent.get("run_id"))
        log_history_to_mlflow(run, log_history)
        run.client().set_terminated(run.run_id)
        links["mlflow"] = asdict(run)
    (Path(output_dir) / TRACKING_FILE).write_text(json.dumps(links, indent=2))
    return links
