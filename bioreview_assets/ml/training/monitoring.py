"""Training callbacks: step timing, tokens/s, GPU memory, progress events and the step/ETA line."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from bioreview_assets.core.progress import ProgressReporter

log = logging.getLogger(__name__)

Progress = Callable[[dict], None]


def as_callback(cls, *args):
    """An instance of `cls` that is also a transformers TrainerCallback (imported lazily, not at module import)."""
    from transformers import TrainerCallback

    return type(cls.__name__, (cls, TrainerCallback), {})(*args)


class TrainingMonitor:
    """Times training steps (eval excluded), reads trl's token count, forwards progress dicts, prints step/ETA.

    Every rank times its own steps (per-rank tokens/s); only the one that `reports` (rank 0) logs and forwards.
    """

    def __init__(self, progress: Progress | None, reports: bool = True):
        self.progress = progress
        self.reports = reports
        self.train_seconds = 0.0
        self.steps = 0
        self.tokens = 0
        self._step_started: float | None = None
        self._reporter: ProgressReporter | None = None
        self._last_loss: float | None = None
        self._logged = (0, 0.0)  # tokens and train seconds at the previous train log

    def on_train_begin(self, args, state, control, **kwargs):
        if self.reports:
            self._reporter = ProgressReporter("training", state.max_steps, "optimizer steps",
                                              start=state.global_step)

    @property
    def tokens_per_s(self) -> float | None:
        return round(self.tokens / self.train_seconds, 1) if self.train_seconds and self.tokens else None

    def on_step_begin(self, args, state, control, **kwargs):
        self._step_started = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if self._step_started is not None:
            _synchronize()  # CUDA is asynchronous: count the step's kernels in the step's time
            self.train_seconds += time.perf_counter() - self._step_started
            self.steps += 1
            self._step_started = None
        if self._reporter is not None:
            self._reporter.update(state.global_step, f"loss {self._last_loss:.3f}" if self._last_loss else "",
                                  force=state.global_step >= state.max_steps)

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs if logs is not None else {}
        if "num_tokens" in logs and "loss" in logs:
            self.tokens = int(logs["num_tokens"])  # trl counts non-padding tokens seen by this process
            # Added to the trainer's own log dict (the reporting callbacks after this one write it to TensorBoard);
            # the trainer's log_history holds a copy taken before the callbacks, so the checkpoints stay unchanged.
            logs.update(self._interval_figures())
        if "loss" in logs:
            self._last_loss = float(logs["loss"])
        if not self.reports:
            return
        event = {"step": state.global_step, "max_steps": state.max_steps}
        if "loss" in logs:
            event.update(loss=logs["loss"], learning_rate=logs.get("learning_rate"), tokens_per_s=self.tokens_per_s)
        elif "eval_loss" in logs:
            event.update(eval_loss=logs["eval_loss"])
        else:
            return
        log.info("train progress %s", event)
        if self.progress is not None:
            self.progress(event)

    def _interval_figures(self) -> dict[str, float]:
        """Tokens/s over the steps since the previous log, and CUDA memory now and at peak (GiB)."""
        figures: dict[str, float] = {}
        tokens, seconds = self.tokens - self._logged[0], self.train_seconds - self._logged[1]
        if tokens > 0 and seconds > 0:
            figures["tokens_per_s"] = round(tokens / seconds, 1)
        self._logged = (self.tokens, self.train_seconds)
        import torch

        if torch.cuda.is_available():
            figures["gpu_memory_gib"] = round(torch.cuda.memory_allocated() / 2**30, 3)
            figures["gpu_peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
        return figures


def _synchronize() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def has_callback(trainer, name: str) -> bool:
    return any(type(callback).__name__ == name for callback in trainer.callback_handler.callbacks)
