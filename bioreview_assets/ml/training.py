"""QLoRA / LoRA supervised fine-tuning of one model on its SFT corpus (PIPELINE.md §2, W5, W9, W18, W20).

`train_adapter` is what the adapter asset calls. Layout under `output_dir`:

    checkpoints/run.json                 identity (config/corpus/prompt hash) + library versions of this run
    checkpoints/checkpoint-N/            HF Trainer checkpoint (adapter, optimizer, scheduler, RNG, state)
    checkpoints/checkpoint-N/bioreview_checkpoint.json   written last: marks the checkpoint complete
    adapter/                             final LoRA adapter + tokenizer
    tensorboard/, tracking.json          TensorBoard event files and the MLflow run (ml/tracking.py)
    adapter_meta.json                    what the UI shows and downstream assets check (written last)
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bioreview_assets.ml.kernels import speed_kernels
from bioreview_assets.ml.lora_targets import check_lora_coverage, is_language_module, peft_target_modules
from bioreview_assets.ml.runtime_env import check_versions, gpu_name, library_versions
from bioreview_assets.progress import ProgressReporter
from bioreview_assets.ml.training_features import (
    Features,
    FeatureStats,
    featurize_rows,
    fixed_subset,
)
from bioreview_assets.ml.training_speed import (
    apply_liger,
    attn_implementation,
    check_no_upcast,
    compute_dtype,
    cuda_available,
    fused_lora_forward,
    keep_nf4_training_layout_on_cpu,
    prepare_for_kbit_free,
    selective_checkpointing_callback,
    selective_checkpointing_layers,
    use_activation_offloading,
)
if TYPE_CHECKING:  # pydantic stays off the benchmarks' GPU path: the configs are only annotations here
    from bioreview_assets.settings import ModelConfig, TrackingConfig, TrainingConfig

log = logging.getLogger(__name__)

Progress = Callable[[dict], None]
CHECKPOINT_MARKER = "bioreview_checkpoint.json"
RUN_FILE = "run.json"
_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")


@dataclass
class TrainingRun:
    """A finished training: the trainer (its model is the in-memory adapter) and the metadata written to disk."""

    trainer: Any
    meta: dict


@dataclass
class ResumePoint:
    path: Path | None
    step: int
    version_differences: dict
    discarded: list[str]


# ---------------------------------------------------------------------------------------------------- public API


def train_adapter(
    cfg: ModelConfig,
    train_rows: list[dict],
    val_rows: list[dict],
    output_dir: Path,
    *,
    prompt_hash: str,
    corpus_hash: str,
    allow_version_mismatch: bool = False,
    progress: Progress | None = None,
    tracking: TrackingConfig | None = None,
) -> TrainingRun:
    """Train (or resume) the LoRA adapter of `cfg` on the corpus rows.

    Returns the metadata written to adapter_meta.json (`.meta`) and the trainer (tests compare the in-memory adapter
    with the reloaded one).
    """
    import torch

    from bioreview_assets.ml.models import load_tokenizer, resolve_base_model
    from bioreview_assets.ml.tracking import Tracker

    started = time.time()
    output_dir = Path(output_dir)
    checkpoints = output_dir / "checkpoints"
    _check_prompt_hash(train_rows + val_rows, prompt_hash)
    identity = run_identity(cfg, prompt_hash=prompt_hash, corpus_hash=corpus_hash)
    versions = library_versions()

    tokenizer = load_tokenizer(cfg)
    max_length = cfg.training.max_length
    thinking = cfg.prompt.enable_thinking  # the same template switch as at inference (W5)
    train_features, train_stats = featurize_rows(tokenizer, train_rows, max_length, enable_thinking=thinking)
    if not train_features:
        raise ValueError(f"no training row fits max_length={max_length} ({train_stats.dropped_over_length} dropped)")
    eval_features, eval_stats = featurize_rows(
        tokenizer, fixed_subset(val_rows, cfg.training.eval_subset), max_length, enable_thinking=thinking
    )

    resume = prepare_checkpoints(checkpoints, identity, versions, allow_version_mismatch=allow_version_mismatch)
    # An older adapter_meta.json must not vouch for an adapter this run is about to replace.
    (output_dir / "adapter_meta.json").unlink(missing_ok=True)
    tracker = Tracker.start(output_dir, cfg, identity, resumed=resume.path is not None, tracking=tracking)
    model = load_training_model(cfg, resolve_base_model(cfg))
    liger = apply_liger(model, cfg.training.liger)
    monitor = as_callback(TrainingMonitor, progress)
    trainer = build_trainer(
        model,
        tokenizer,
        cfg.training,
        train_features,
        eval_features,
        checkpoints,
        # The reporting callbacks come last: they write what the monitor adds to each log (tokens/s, GPU memory).
        callbacks=[as_callback(CheckpointMarker, identity, versions), monitor, *tracker.callbacks()],
    )
    if cuda_available():
        torch.cuda.reset_peak_memory_stats()
    with fused_lora_forward(trainer.model):
        train_or_restore(trainer, resume.path)
        if eval_features and not _evaluated_at(trainer.state.log_history, trainer.state.global_step):
            trainer.evaluate()  # the final adapter gets a val loss even when the last step was not a save step

    save_adapter(trainer.model, tokenizer, output_dir / "adapter")
    meta = adapter_meta(
        cfg=cfg,
        trainer=trainer,
        identity=identity,
        versions=versions,
        resume=resume,
        train_stats=train_stats,
        eval_stats=eval_stats,
        monitor=monitor,
        liger=liger,
        output_dir=output_dir,
        wall_time_s=time.time() - started,
    )
    # The adapter's content identity: what generation logs and the Dagster data version are keyed by.
    from bioreview_assets.store.content_identity import folder_hash  # lazy: the store needs polars (not on GPU boxes)

    meta["weights_hash"] = folder_hash(output_dir / "adapter")
    meta["tracking"] = tracker.links()
    tracker.finish(trainer, {k: meta[k] for k in ("final_train_loss", "final_val_loss", "tokens_per_s",
                                                  "peak_gpu_memory_gib", "train_time_s", "wall_time_s")})
    write_json_atomic(output_dir / "adapter_meta.json", meta)
    return TrainingRun(trainer=trainer, meta=meta)


def train_or_restore(trainer, checkpoint: Path | None) -> None:
    """Train from scratch or from `checkpoint`; a checkpoint of a finished run is only restored.

    transformers 5.24 trains one step past max_steps when resumed from the last step's checkpoint (it checks the
    limit only after a step), so a run that crashed after its final checkpoint gets its weights back instead.
    """
    if checkpoint is None or not _is_finished(checkpoint):
        trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
        return
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file
    from transformers import TrainerState

    set_peft_model_state_dict(trainer.model, load_file(str(checkpoint / "adapter_model.safetensors")))
    trainer.state = TrainerState.load_from_json(str(checkpoint / "trainer_state.json"))
    log.info("checkpoint %s is the run's last step: restored, nothing left to train", checkpoint)


def _is_finished(checkpoint: Path) -> bool:
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    return state["global_step"] >= state["max_steps"] > 0


def load_training_model(cfg: ModelConfig, base_path: Path):
    """The base model for training: NF4 + double quantisation (quantization: nf4) or plain weights, no upcast."""
    from transformers import AutoModelForCausalLM

    dtype = compute_dtype(cfg.training)
    kwargs: dict[str, Any] = {"dtype": dtype, "attn_implementation": attn_implementation()}
    if cfg.training.quantization == "nf4":
        kwargs["quantization_config"] = nf4_config(dtype, cfg.training.quantization_skip_modules)
    device_map = {"": 0} if cuda_available() else {"": "cpu"}
    try:
        model = AutoModelForCausalLM.from_pretrained(str(base_path), device_map=device_map, **kwargs)
    except ValueError as err:
        if "scaled_dot_product_attention" not in str(err):
            raise
        # Gemma-2's soft-capped attention has no SDPA path in transformers: eager attention (memory grows with the
        # square of the sequence; flash-attn, when installed on the GPU, is picked above instead).
        log.warning("%s has no SDPA attention: training with eager attention", base_path)
        kwargs["attn_implementation"] = "eager"
        model = AutoModelForCausalLM.from_pretrained(str(base_path), device_map=device_map, **kwargs)
    prepare_for_kbit_free(model)
    if cfg.training.quantization == "nf4":
        keep_nf4_training_layout_on_cpu(model)
    check_no_upcast(model, dtype)
    speed_kernels(model.config, "cuda" if cuda_available() else "cpu")  # warns once when a fast kernel is missing
    log.info(
        "loaded %s (%s, %s, attention=%s)",
        base_path,
        cfg.training.quantization,
        dtype,
        model.config._attn_implementation,
    )
    return model


def nf4_config(dtype, skip_modules: list[str] | None = None):
    """bitsandbytes 4-bit NF4 with double quantisation (QLoRA), computing in `dtype`; skip_modules stay unquantised."""
    from transformers import BitsAndBytesConfig

    extra = {"llm_int8_skip_modules": ["lm_head", *skip_modules]} if skip_modules else {}
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=dtype,
        **extra,
    )


def lora_config(training: TrainingConfig):
    """The peft LoRA config of a model's training settings."""
    from peft import LoraConfig

    return LoraConfig(
        r=training.lora.r,
        lora_alpha=training.lora.alpha,
        lora_dropout=training.lora.dropout,
        target_modules=peft_target_modules(training.lora),
        bias="none",
        task_type="CAUSAL_LM",
    )


def effective_optim(training: TrainingConfig) -> str:
    """The optimizer the trainer uses: bitsandbytes' 8-bit/paged optimizers need CUDA, so CPU runs use adamw_torch."""
    if not cuda_available() and any(tag in training.optim for tag in ("8bit", "bnb", "paged")):
        log.info("optim %s needs CUDA: using adamw_torch on CPU", training.optim)
        return "adamw_torch"
    return training.optim


def sft_config(training: TrainingConfig, checkpoints: Path, *, has_eval: bool, **overrides):
    """trl SFTConfig for pre-tokenised rows (input_ids + our labels), checkpoints every save_steps."""
    from trl import SFTConfig

    cuda = cuda_available()
    settings = {
        "output_dir": str(checkpoints),
        "max_length": training.max_length,
        "packing": training.packing,
        "packing_strategy": "bfd",  # padding-free: position_ids restart per row, so packed rows never attend to each other
        "num_train_epochs": training.epochs,
        "max_steps": training.max_steps,
        "per_device_train_batch_size": training.per_device_batch_size,
        "per_device_eval_batch_size": training.per_device_batch_size,
        "gradient_accumulation_steps": training.gradient_accumulation_steps,
        "learning_rate": training.learning_rate,
        "lr_scheduler_type": training.lr_scheduler,
        "warmup_steps": training.warmup_ratio,  # transformers 5: a float < 1 is a ratio of the total steps
        "weight_decay": training.weight_decay,
        "max_grad_norm": training.max_grad_norm,
        "optim": effective_optim(training),
        "bf16": training.bf16 and cuda,
        "seed": training.seed,
        "logging_steps": training.logging_steps,
        "save_strategy": "steps",
        "save_steps": training.save_steps,
        "save_total_limit": training.save_total_limit,
        "eval_strategy": "steps" if has_eval else "no",
        "eval_steps": training.save_steps,  # a val loss for every checkpoint (W18)
        "gradient_checkpointing": training.gradient_checkpointing,
        "gradient_checkpointing_kwargs": {"use_reentrant": False},
        "use_cpu": not cuda,
        "report_to": "none",
        "disable_tqdm": True,
        "dataloader_pin_memory": cuda,
        "completion_only_loss": None,  # our labels already carry the completion mask
        "assistant_only_loss": False,
    }
    return SFTConfig(**{**settings, **overrides})


def build_trainer(
    model,
    tokenizer,
    training: TrainingConfig,
    train_features: list[Features],
    eval_features: list[Features],
    checkpoints: Path,
    *,
    callbacks: list | None = None,
    sft_overrides: dict | None = None,
):
    """SFTTrainer over pre-tokenised rows with our labels, wrapping the model in LoRA."""
    sac_layers = selective_checkpointing_layers(training)
    callbacks = list(callbacks or [])
    if sac_layers != 0:
        callbacks.append(selective_checkpointing_callback(sac_layers))
    activation_offloading = use_activation_offloading(training)
    overrides = {"activation_offloading": activation_offloading, **(sft_overrides or {})}
    from datasets import Dataset
    from transformers.trainer_callback import PrinterCallback

    train_ds = Dataset.from_list([f.as_row() for f in train_features])
    eval_ds = Dataset.from_list([f.as_row() for f in eval_features]) if eval_features else None
    trainer = _trainer_class()(
        model=model,
        args=sft_config(training, checkpoints, has_eval=eval_ds is not None, **overrides),
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        processing_class=tokenizer,
        peft_config=lora_config(training),
        callbacks=callbacks,
    )
    # With tqdm off the trainer prints every log dict to stdout; progress goes through logging and `progress`.
    trainer.remove_callback(PrinterCallback)
    check_lora_coverage(trainer.model, training.lora)  # before any step: a wrong target list fails in seconds
    return trainer


def _trainer_class():
    """SFTTrainer whose resume keeps the LoRA weights in the dtype they were trained in."""
    from trl import SFTTrainer

    class ResumeSafeSFTTrainer(SFTTrainer):
        def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
            # peft's load_adapter upcasts the bf16 LoRA weights of a QLoRA run to fp32: the resumed run would train
            # (and save) in another precision than an uninterrupted one. The optimizer is built after this call.
            dtypes = {name: p.dtype for name, p in self.model.named_parameters() if p.requires_grad}
            super()._load_from_checkpoint(resume_from_checkpoint, model)
            for name, param in self.model.named_parameters():
                if name in dtypes and param.dtype != dtypes[name]:
                    param.data = param.data.to(dtypes[name])

    return ResumeSafeSFTTrainer


def load_adapter_model(cfg: ModelConfig, adapter_dir: Path, *, quantized: bool | None = None):
    """Base model (NF4 when the config trained NF4, unless `quantized` says otherwise) + the saved adapter, eval mode."""
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from bioreview_assets.ml.lora_targets import load_adapter_checked
    from bioreview_assets.ml.models import resolve_base_model

    base_path = resolve_base_model(cfg)
    if quantized is None:
        quantized = cfg.training.quantization == "nf4"
    if quantized:
        base = load_training_model(cfg, base_path)
    else:
        device_map = {"": 0} if cuda_available() else {"": "cpu"}
        base = AutoModelForCausalLM.from_pretrained(
            str(base_path), dtype=compute_dtype(cfg.training), device_map=device_map
        )
    model = load_adapter_checked(base, adapter_dir)
    # Run the adapter in the dtype it was trained and saved in (trl trains QLoRA adapters in bf16; peft would load
    # them as fp32), so the reloaded model computes exactly what the trained one did.
    saved_dtype = next(iter(load_file(str(Path(adapter_dir) / "adapter_model.safetensors")).values())).dtype
    for name, param in model.named_parameters():
        if "lora_" in name:
            param.data = param.data.to(saved_dtype)
    return model.eval()


def loss_curve_png(history: dict[str, list], model: str = "") -> bytes:
    """PNG of the train/val loss curves (history = {"train": [[step, loss]...], "val": [[step, loss]...]}), titled
    with the model it belongs to."""
    import matplotlib

    matplotlib.use("Agg")  # no display on pods or in tests
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 3.5), dpi=100)
    axes = figure.add_subplot()
    labels = {"train": "train loss (per logging step)", "val": "val loss (fixed val subset)"}
    for key, style in (("train", "-"), ("val", "o-")):
        points = history.get(key) or []
        if points:
            steps, losses = zip(*points)
            axes.plot(steps, losses, style, label=labels[key], markersize=4)
    axes.set_title(f"{model}: SFT loss" if model else "SFT loss")
    axes.set_xlabel("optimizer step")
    axes.set_ylabel("loss")
    axes.grid(alpha=0.3)
    if any(history.get(key) for key in ("train", "val")):
        axes.legend()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight")
    return buffer.getvalue()


# ------------------------------------------------------------------------------------------ identity and resume


def run_identity(cfg: ModelConfig, *, prompt_hash: str, corpus_hash: str) -> dict[str, str]:
    """What makes two trainings the same run: config, corpus and prompt."""
    return {"model": cfg.name, "config_hash": cfg.config_hash(), "corpus_hash": corpus_hash, "prompt_hash": prompt_hash}


def prepare_checkpoints(
    checkpoints: Path, identity: dict, versions: dict, *, allow_version_mismatch: bool
) -> ResumePoint:
    """Pick the newest complete checkpoint of this run (after the version guard); clear stale and partial ones."""
    discarded: list[str] = []
    run_file = checkpoints / RUN_FILE
    if run_file.exists() and json.loads(run_file.read_text())["identity"] != identity:
        # Checkpoints of another config/corpus/prompt cannot be resumed into this run: start over, loudly.
        old = json.loads(run_file.read_text())["identity"]
        log.warning("discarding checkpoints in %s: they belong to %s, this run is %s", checkpoints, old, identity)
        discarded = [p.name for p in _checkpoint_dirs(checkpoints)]
        shutil.rmtree(checkpoints)
    checkpoints.mkdir(parents=True, exist_ok=True)
    if not run_file.exists():
        write_json_atomic(run_file, {"identity": identity, "versions": versions, "created": time.time()})

    complete = [p for p in _checkpoint_dirs(checkpoints) if (p / CHECKPOINT_MARKER).exists()]
    newest = max(complete, key=_step_of, default=None)
    for partial in _checkpoint_dirs(checkpoints):
        if not (partial / CHECKPOINT_MARKER).exists():
            log.warning("removing incomplete checkpoint %s (interrupted while saving)", partial)
            discarded.append(partial.name)
            shutil.rmtree(partial)
    if newest is None:
        return ResumePoint(path=None, step=0, version_differences={}, discarded=discarded)
    recorded = json.loads((newest / CHECKPOINT_MARKER).read_text())
    diffs = check_versions(recorded["versions"], allow_mismatch=allow_version_mismatch, where=str(newest))
    if diffs:
        log.warning("resuming from %s despite version differences %s (allowed)", newest, diffs)
    log.info("resuming from %s", newest)
    return ResumePoint(path=newest, step=_step_of(newest), version_differences=diffs, discarded=discarded)


def _checkpoint_dirs(folder: Path) -> list[Path]:
    if not folder.exists():
        return []
    return sorted((p for p in folder.iterdir() if p.is_dir() and _CHECKPOINT_RE.match(p.name)), key=_step_of)


def _step_of(path: Path) -> int:
    return int(_CHECKPOINT_RE.match(path.name).group(1))


def _check_prompt_hash(rows: list[dict], prompt_hash: str) -> None:
    """Every row must come from the prompt builder whose hash the caller passes (W5)."""
    other = {row.get("prompt_hash") for row in rows} - {prompt_hash}
    if other:
        raise ValueError(f"corpus rows carry prompt hashes {sorted(map(str, other))}, expected {prompt_hash}")


def _has_callback(trainer, name: str) -> bool:
    return any(type(callback).__name__ == name for callback in trainer.callback_handler.callbacks)


def _evaluated_at(log_history: list[dict], step: int) -> bool:
    return any("eval_loss" in entry and entry.get("step") == step for entry in log_history)


# ------------------------------------------------------------------------------------------------- callbacks


def as_callback(cls, *args):
    """An instance of `cls` that is also a transformers TrainerCallback (imported lazily, not at module import)."""
    from transformers import TrainerCallback

    return type(cls.__name__, (cls, TrainerCallback), {})(*args)


class CheckpointMarker:
    """Writes bioreview_checkpoint.json into each checkpoint once the trainer has saved all of it."""

    def __init__(self, identity: dict, versions: dict):
        self.identity = identity
        self.versions = versions

    def on_save(self, args, state, control, **kwargs):
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        marker = {"identity": self.identity, "versions": self.versions, "step": state.global_step, "gpu": gpu_name()}
        write_json_atomic(folder / CHECKPOINT_MARKER, marker)
        return control


class TrainingMonitor:
    """Times training steps (eval excluded), reads trl's token count, forwards progress dicts, prints step/ETA."""

    def __init__(self, progress: Progress | None):
        self.progress = progress
        self.train_seconds = 0.0
        self.steps = 0
        self.tokens = 0
        self._step_started: float | None = None
        self._reporter: ProgressReporter | None = None
        self._last_loss: float | None = None
        self._logged = (0, 0.0)  # tokens and train seconds at the previous train log

    def on_train_begin(self, args, state, control, **kwargs):
        self._reporter = ProgressReporter("training", state.max_steps, "optimizer steps", start=state.global_step)

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


# -------------------------------------------------------------------------------------------- saving and meta


def save_adapter(model, tokenizer, target: Path) -> None:
    """Save the LoRA adapter and tokenizer into `target` atomically (temp folder + rename)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".adapter-", dir=target.parent))
    model.save_pretrained(str(tmp))
    tokenizer.save_pretrained(str(tmp))
    replace_dir(tmp, target)


def replace_dir(tmp: Path, target: Path) -> None:
    """Move a finished folder into place, replacing an older one (removed only once the new one is in place)."""
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old)
    else:
        os.replace(tmp, target)


def write_json_atomic(path: Path, payload: Any) -> None:
    """JSON written to a temp file and renamed: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    with os.fdopen(fd, "w") as handle:
        json.dump(payload, handle, indent=2, default=str)
    os.replace(tmp, path)


def loss_history(log_history: list[dict]) -> dict[str, list]:
    """Train and val loss per step from the trainer's log (restored from the checkpoint on resume)."""
    return {
        "train": [[e["step"], e["loss"]] for e in log_history if "loss" in e and "step" in e],
        "val": [[e["step"], e["eval_loss"]] for e in log_history if "eval_loss" in e and "step" in e],
    }


def lora_module_report(model) -> dict[str, dict]:
    """LoRA-wrapped modules per decoder-layer type (W20: hybrid models may leave some layer types unwrapped).

    Layers are the text decoder's; anything wrapped in a vision/audio tower is reported under "vision_or_audio"
    (empty by construction with scope: language_model), anything else outside the layers under "outside_layers".
    """
    from peft.tuners.lora import LoraLayer

    config = model.get_base_model().config if hasattr(model, "get_base_model") else model.config
    config = config.get_text_config()
    layer_types = getattr(config, "layer_types", None)
    layer_kinds: dict[int, str] = {}
    for name, module in model.named_modules():
        found = re.search(r"\.layers\.(\d+)$", name)
        if found and is_language_module(name):
            index = int(found.group(1))
            layer_kinds[index] = layer_types[index] if layer_types else type(module).__name__
    report: dict[str, dict] = {
        kind: {"layers": sum(k == kind for k in layer_kinds.values()), "wrapped": {}, "trainable_params": 0}
        for kind in sorted(set(layer_kinds.values()))
    }
    for name, module in model.named_modules():
        if not isinstance(module, LoraLayer):
            continue
        found = re.search(r"\.layers\.(\d+)\.(.+)$", name)
        if not is_language_module(name):
            kind, local = "vision_or_audio", name.removeprefix("base_model.model.")
        elif found:
            kind, local = layer_kinds[int(found.group(1))], found.group(2)
        else:
            kind, local = "outside_layers", name.removeprefix("base_model.model.")
        entry = report.setdefault(kind, {"layers": 0, "wrapped": {}, "trainable_params": 0})
        entry["wrapped"][local] = type(module.get_base_layer()).__name__
        entry["trainable_params"] += sum(p.numel() for p in module.parameters() if p.requires_grad)
    for kind, entry in report.items():
        if not entry["wrapped"]:
            log.warning("LoRA wrapped no module in %d %s layers (targets did not match there)", entry["layers"], kind)
    return report


def adapter_meta(
    *,
    cfg: ModelConfig,
    trainer,
    identity: dict,
    versions: dict,
    resume: ResumePoint,
    train_stats: FeatureStats,
    eval_stats: FeatureStats,
    monitor: TrainingMonitor,
    liger: list[str],
    output_dir: Path,
    wall_time_s: float,
) -> dict:
    """The adapter's metadata: provenance, what was trained on, how it went."""
    import torch

    model = trainer.model
    history = loss_history(trainer.state.log_history)
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None
    return {
        **identity,
        "base_model": str(getattr(model.get_base_model().config, "_name_or_path", "")),
        "library_versions": versions,
        "gpu": gpu_name(),
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "quantization": cfg.training.quantization,
        "compute_dtype": str(compute_dtype(cfg.training)).removeprefix("torch."),
        "attn_implementation": model.get_base_model().config._attn_implementation,
        "liger_kernels": liger,
        "fused_lm_head": "trl chunked log-probs (no full logits)",
        "gradient_checkpointing": trainer.args.gradient_checkpointing,
        "selective_checkpointing_layers": cfg.training.selective_checkpointing_layers
        if _has_callback(trainer, "SelectiveCheckpointing") else 0,
        "activation_offloading": trainer.args.activation_offloading,
        "fused_lora_forward": True,
        "packing": cfg.training.packing,
        "optim": trainer.args.optim.value if hasattr(trainer.args.optim, "value") else str(trainer.args.optim),
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "total_params": sum(p.numel() for p in model.parameters()),
        "lora_modules": lora_module_report(model),
        "lora_target_modules": peft_target_modules(cfg.training.lora),
        "speed_kernels": speed_kernels(model.get_base_model().config, "cuda" if torch.cuda.is_available() else "cpu"),
        "train_rows": train_stats.kept,
        "train_rows_dropped_over_length": train_stats.dropped_over_length,
        "val_subset_rows": eval_stats.kept,
        "val_rows_dropped_over_length": eval_stats.dropped_over_length,
        "masked_token_fraction": round(train_stats.masked_fraction, 6),
        "train_tokens_total": train_stats.total_tokens,
        "supervised_tokens_total": train_stats.supervised_tokens,
        "global_step": trainer.state.global_step,
        "max_steps": trainer.state.max_steps,
        "resumed_from_step": resume.step if resume.path else None,
        "resume_version_differences": resume.version_differences,
        "discarded_checkpoints": resume.discarded,
        "loss_history": history,
        "final_train_loss": history["train"][-1][1] if history["train"] else None,
        "final_val_loss": history["val"][-1][1] if history["val"] else None,
        "tokens_per_s": monitor.tokens_per_s,
        "steps_this_run": monitor.steps,
        "train_time_s": round(monitor.train_seconds, 2),
        "peak_gpu_memory_gib": round(peak, 3) if peak is not None else None,
        "wall_time_s": round(wall_time_s, 2),
        "adapter_dir": str(output_dir / "adapter"),
        "checkpoints_dir": str(output_dir / "checkpoints"),
    }
