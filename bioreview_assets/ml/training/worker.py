"""One rank of a multi-GPU training: `python -m bioreview_assets.ml.training.worker <spec.json>`, under torchrun.

Started by ml/training/launch.py, never by hand. Every rank featurises the rows (deterministic, cheap next to the
training), joins the process group and runs recipe.run_training from the launcher's resume point; rank 0 alone
writes. Log records go to stdout as JSON lines the launcher re-logs (rank 0 from INFO, the others from WARNING),
and rank 0's progress events likewise. `main` is wrapped in torch's @record, so an exception lands in the error file
torchrun reads (TORCHELASTIC_ERROR_FILE) and the launcher names this rank and its error.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

from torch.distributed.elastic.multiprocessing.errors import record

import bioreview_assets.ml.training.distributed as distributed
from bioreview_assets.ml.training.launch import EVENT_PREFIX, LOG_PREFIX, RankFault

log = logging.getLogger(__name__)


class RelayHandler(logging.Handler):
    """Log records as JSON lines on stdout, with this rank, for the launcher to re-log under the same logger."""

    def __init__(self, rank: int):
        super().__init__()
        self.rank = rank

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.exc_info:
                message += "\n" + logging.Formatter().formatException(record.exc_info)
            payload = {"rank": self.rank, "name": record.name, "level": record.levelno, "message": message}
            sys.stdout.write(LOG_PREFIX + json.dumps(payload) + "\n")
            sys.stdout.flush()
        except Exception:  # noqa: BLE001 - logging must never kill a training
            self.handleError(record)


def emit_event(event: dict) -> None:
    """A progress event of rank 0 for the launcher's `progress` callable."""
    sys.stdout.write(EVENT_PREFIX + json.dumps(event, default=str) + "\n")
    sys.stdout.flush()


def configure_logging(rank: int) -> None:
    root = logging.getLogger()
    root.handlers[:] = [RelayHandler(rank)]
    root.setLevel(logging.INFO if rank == 0 else logging.WARNING)


def exit_after_step(fault: RankFault):
    """A callback that ends rank `fault.rank` abruptly after an optimizer step (the tests' killed rank)."""
    from transformers import TrainerCallback

    class ExitAfterStep(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if distributed.current().rank == fault.rank and state.global_step == fault.after_step:
                sys.stdout.flush()
                os._exit(fault.exit_code)  # no exception, no cleanup: as a killed process

    return ExitAfterStep()


@record
def main(spec_path: str) -> None:
    from bioreview_assets.ml.models import load_tokenizer
    from bioreview_assets.ml.training.checkpoints import ResumePoint
    from bioreview_assets.ml.training.recipe import featurize, run_training
    from bioreview_assets.ml.training.precision import cuda_available
    from bioreview_assets.config.model import ModelConfig
    from bioreview_assets.config.project import TrackingConfig

    ranks = distributed.current()
    configure_logging(ranks.rank)
    spec = json.loads(Path(spec_path).read_text())
    cfg = ModelConfig.model_validate(spec["config"])
    if ranks.world_size != cfg.training.gpus:
        raise RuntimeError(f"torchrun started {ranks.world_size} ranks for training.gpus={cfg.training.gpus}")
    distributed.init_process_group(cuda_available())
    rows = json.loads(Path(spec["rows"]).read_text())
    tokenizer = load_tokenizer(cfg)
    featurized = featurize(cfg, tokenizer, rows["train"], rows["val"])
    fault = RankFault(**spec["fault"]) if spec.get("fault") else None
    try:
        run_training(
            cfg, tokenizer, featurized, Path(spec["output_dir"]),
            identity=spec["identity"], versions=spec["versions"], resume=ResumePoint.from_json(spec["resume"]),
            progress=emit_event if ranks.is_main else None,
            tracking=TrackingConfig.model_validate(spec["tracking"]) if spec["tracking"] else None,
            started=spec["started"], callbacks=[exit_after_step(fault)] if fault else None,
        )
    finally:
        distributed.destroy_process_group()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m bioreview_assets.ml.training.worker <spec.json> (started by ml/training/launch.py)")
    main(sys.argv[1])
