"""The typed records of the stored artefacts other modules read back: one class per file, its only writer and reader.

* `AdapterMeta`  adapter/<model>/adapter_meta.json: provenance, data, losses and speed of a trained adapter
  (written by ml/training at the end of a training or a checkpoint probe; read by serving, publishing, tracking,
  the adapter asset and the benchmarks).
* `MergeMeta`    merged_model/<model>/merge_meta.json: what a merged model was merged from.
* `ScoreRow`     one row of scores/<system>/<split>/scores.parquet per matcher (the DuckDB `scores` view): the
  figures of one system x split x matcher (written by the scores asset and `bioreview score`; read by MLflow
  tracking, the model card and the report tables).

`to_json()` gives the keys in the order the files have always had them, so a record written back is the same file.
Standard library only: ml/ writes these on GPU boxes without polars or pydantic.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from bioreview_assets.store.atomic import write_json_atomic, write_text_atomic


def _known(cls, data: dict) -> tuple[dict, dict]:
    """(the keys of `data` that are fields of `cls`, the rest)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in data.items() if k in names}, {k: v for k, v in data.items() if k not in names}


@dataclass(frozen=True)
class AdapterMeta:
    """adapter_meta.json: what a finished training (or a checkpoint probe) vouches for, in the file's key order.

    The identity (model, config, corpus and prompt hash) is required; every other figure may be missing from an
    adapter written by an older version (None then). `extra` keeps keys this record does not know, written back last.
    """

    FILE: ClassVar[str] = "adapter_meta.json"

    model: str
    config_hash: str
    corpus_hash: str
    prompt_hash: str
    base_model: str | None = None
    library_versions: dict[str, str | None] | None = None
    gpu: str | None = None
    device: str | None = None
    quantization: str | None = None
    compute_dtype: str | None = None
    attn_implementation: str | None = None
    liger_kernels: list[str] | None = None
    fused_lm_head: str | None = None
    gradient_checkpointing: bool | None = None
    selective_checkpointing_layers: int | None = None
    activation_offloading: bool | None = None
    fused_lora_forward: bool | None = None
    packing: bool | None = None
    optim: str | None = None
    trainable_params: int | None = None
    total_params: int | None = None
    lora_modules: dict[str, dict] | None = None  # layer type -> {"layers", "wrapped": {module: class}, ...}
    lora_target_modules: Any = None
    speed_kernels: dict | None = None
    train_rows: int | None = None
    train_rows_dropped_over_length: int | None = None
    val_subset_rows: int | None = None
    val_rows_dropped_over_length: int | None = None
    masked_token_fraction: float | None = None
    train_tokens_total: int | None = None
    supervised_tokens_total: int | None = None
    global_step: int | None = None
    max_steps: int | None = None
    resumed_from_step: int | None = None
    resume_version_differences: Any = None
    discarded_checkpoints: Any = None
    loss_history: dict[str, list] | None = None  # {"train": [[step, loss], ...], "val": [...]}
    final_train_loss: float | None = None
    final_val_loss: float | None = None
    world_size: int | None = None
    strategy: str | None = None
    fsdp_sharded_params: dict[str, int] | None = None
    gradient_accumulation_per_rank: int | None = None
    effective_batch: int | None = None
    tokens_per_s: float | None = None
    tokens_per_s_per_rank: list[float | None] | None = None
    peak_gpu_memory_gib_per_rank: list[float | None] | None = None
    steps_this_run: int | None = None
    train_time_s: float | None = None
    peak_gpu_memory_gib: float | None = None
    wall_time_s: float | None = None
    adapter_dir: str | None = None
    checkpoints_dir: str | None = None
    weights_hash: str | None = None  # the adapter folder's content hash (None: trained before hashes were recorded)
    tracking: dict | None = None  # {"tensorboard_dir", "mlflow": {run_id, tracking_uri, ...} | None}
    probe_of: str | None = None  # a checkpoint probe: the model it was copied from (the key only exists then)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def identity(self) -> dict[str, str]:
        return {"model": self.model, "config_hash": self.config_hash, "corpus_hash": self.corpus_hash,
                "prompt_hash": self.prompt_hash}

    @property
    def mlflow_run(self) -> dict | None:
        """The adapter's MLflow run (run_id, tracking_uri, experiment) when it was tracked there."""
        return (self.tracking or {}).get("mlflow")

    @property
    def train_losses(self) -> list:
        return (self.loss_history or {}).get("train") or []

    @property
    def val_losses(self) -> list:
        return (self.loss_history or {}).get("val") or []

    def to_json(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        if out["probe_of"] is None:
            del out["probe_of"]
        return {**out, **self.extra}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AdapterMeta:
        known, extra = _known(cls, data)
        known.pop("extra", None)
        return cls(**known, extra=extra)

    def replace(self, **changes: Any) -> AdapterMeta:
        return dataclasses.replace(self, **changes)

    @classmethod
    def path(cls, folder: Path) -> Path:
        return Path(folder) / cls.FILE

    @classmethod
    def read(cls, folder: Path) -> AdapterMeta:
        """The record of an adapter folder on this machine (a training's output_dir, or store.fetch_dir's copy)."""
        return cls.from_json(json.loads(cls.path(folder).read_text()))

    @classmethod
    def exists_in(cls, store, model: str) -> bool:
        from bioreview_assets.store.layout import adapter_dir  # lazy: layout reads articles with pydantic

        return store.exists(*adapter_dir(model), cls.FILE)

    @classmethod
    def load(cls, store, model: str) -> AdapterMeta:
        """The record of adapter[model] in the artefact store."""
        from bioreview_assets.store.layout import adapter_dir

        return cls.from_json(store.read_json(*adapter_dir(model), cls.FILE))

    def write(self, folder: Path) -> None:
        """Into `folder` (temp file + rename: readers never see half of it); JSON with indent 2, as always."""
        write_json_atomic(self.path(folder), self.to_json())

    @classmethod
    def remove(cls, folder: Path) -> None:
        cls.path(folder).unlink(missing_ok=True)


@dataclass(frozen=True)
class MergeMeta:
    """merge_meta.json: the merged weights' content hash and the adapter (and base) they were merged from."""

    FILE: ClassVar[str] = "merge_meta.json"

    base_model: str | None = None
    adapter_dir: str | None = None
    adapter_weights_hash: str | None = None  # the adapter these weights were merged from
    weights_hash: str | None = None  # the merged folder's content (generations are keyed by it)
    dtype: str | None = None
    trained_on_quantization: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {**{f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"},
                **self.extra}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MergeMeta:
        known, extra = _known(cls, data)
        known.pop("extra", None)
        return cls(**known, extra=extra)

    @classmethod
    def read(cls, folder: Path) -> MergeMeta:
        return cls.from_json(json.loads((Path(folder) / cls.FILE).read_text()))

    def write(self, folder: Path) -> None:
        """JSON with indent 2 (no temp file: merge.py writes it into the temp folder it then renames into place)."""
        (Path(folder) / self.FILE).write_text(json.dumps(self.to_json(), indent=2))


def _interval(ci: dict, key: str) -> tuple[float | None, float | None]:
    lo, hi = ci.get(key) or (None, None)
    return lo, hi


@dataclass(frozen=True)
class ScoreRow:
    """One matcher's score of one system x split: a row of scores.parquet, the DuckDB `scores` view, the card."""

    FILE: ClassVar[str] = "scores.parquet"
    # The figures logged to a tracked adapter's MLflow run, under `<split>[/<policy>][/<matcher>]/<name>`.
    TRACKED: ClassVar[tuple[str, ...]] = ("f1", "recall", "precision", "recall_major", "null_f1", "count_oracle_f1",
                                          "n_articles", "n_gt", "n_tool", "n_matched")
    INTERVALS: ClassVar[tuple[str, ...]] = ("f1", "recall", "precision")

    system: str
    split: str
    matcher: str
    matcher_id: str
    split_hash: str
    gt_filter: str | None = None
    f1: float | None = None
    recall: float | None = None
    precision: float | None = None
    recall_major: float | None = None
    f1_category_macro: float | None = None
    soft_f1: float | None = None
    null_f1: float | None = None
    count_oracle_f1: float | None = None
    recall_ci_lo: float | None = None
    recall_ci_hi: float | None = None
    precision_ci_lo: float | None = None
    precision_ci_hi: float | None = None
    f1_ci_lo: float | None = None
    f1_ci_hi: float | None = None
    n_articles: int = 0
    n_gt: int = 0
    n_tool: int = 0
    n_matched: int = 0
    concerns_per_article: float = 0.0
    articles_in_output: int | None = None
    articles_missing_from_output: int | None = None
    unknown_prediction_ids: int | None = None
    scored_at: str | None = None  # UTC, whole seconds (ISO 8601)

    @classmethod
    def from_metrics(cls, metrics: dict, *, system: str, split: str, matcher: str, split_hash: str,
                     gt_filter: str | None, scored_at: str | None = None) -> ScoreRow:
        """The row of core.scoring's metrics dict (one matcher's score); `scored_at` defaults to now."""
        ci = metrics.get("ci") or {}
        recall_lo, recall_hi = _interval(ci, "recall_micro")
        precision_lo, precision_hi = _interval(ci, "precision_micro")
        f1_lo, f1_hi = _interval(ci, "f1_micro_ours")
        coverage = metrics["coverage"]
        return cls(
            system=system, split=split, matcher=matcher, matcher_id=metrics["matcher_id"], split_hash=split_hash,
            gt_filter=gt_filter,
            f1=metrics["f1_micro"], recall=metrics["recall_micro"], precision=metrics["precision_micro"],
            recall_major=metrics["recall_major"], f1_category_macro=metrics.get("f1_category_macro"),
            soft_f1=metrics.get("soft_f1"),
            null_f1=metrics["null_f1"], count_oracle_f1=metrics["count_oracle_f1"],
            recall_ci_lo=recall_lo, recall_ci_hi=recall_hi, precision_ci_lo=precision_lo,
            precision_ci_hi=precision_hi, f1_ci_lo=f1_lo, f1_ci_hi=f1_hi,
            n_articles=metrics["n_articles"], n_gt=metrics["n_gt"], n_tool=metrics["n_tool"],
            n_matched=metrics["n_matched"], concerns_per_article=metrics["n_tool"] / max(metrics["n_articles"], 1),
            articles_in_output=coverage["n_articles_in_output"],
            articles_missing_from_output=coverage["n_articles_missing_from_output"],
            unknown_prediction_ids=coverage["n_unknown_prediction_ids"],
            scored_at=scored_at or dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        )

    def interval(self, name: str) -> tuple[float, float] | None:
        """The 95% CI of f1, recall or precision; None when either bound is missing."""
        lo, hi = getattr(self, f"{name}_ci_lo"), getattr(self, f"{name}_ci_hi")
        return None if lo is None or hi is None else (lo, hi)

    def tracked(self) -> dict[str, float]:
        """The figures a tracked run logs: the headline numbers, then the CI bounds of F1, recall and precision."""
        out = {name: getattr(self, name) for name in self.TRACKED if getattr(self, name) is not None}
        for name in self.INTERVALS:
            if (bounds := self.interval(name)) is not None:
                out[f"{name}_ci_lo"], out[f"{name}_ci_hi"] = bounds
        return out

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, row: dict[str, Any]) -> ScoreRow:
        """A stored row (parquet's `to_dicts()`); columns this record does not know are left out."""
        return cls(**_known(cls, row)[0])

    @classmethod
    def read(cls, store, system: str, split: str) -> list[ScoreRow]:
        """The rows of scores[system x split], one per matcher."""
        from bioreview_assets.store.layout import scores_dir

        return [cls.from_json(row) for row in store.read_parquet(*scores_dir(system, split), cls.FILE).to_dicts()]

    @classmethod
    def polars_schema(cls) -> dict[str, Any]:
        """Column -> polars type, from the field annotations: a figure that is None in every row (F1 of a split
        without reference concerns) is still a Float64 column, not a column of nulls."""
        import polars as pl  # lazy: the record itself is read on GPU boxes without polars

        types = {"str": pl.String, "float": pl.Float64, "int": pl.Int64}
        return {f.name: types[str(f.type).removesuffix(" | None")] for f in dataclasses.fields(cls)}

    @classmethod
    def conform(cls, frame):
        """A stored scores frame with this record's columns cast to their types (older files wrote an all-None
        figure as a column of nulls); other columns are left as they are."""
        schema = cls.polars_schema()
        return frame.cast({name: kind for name, kind in schema.items() if name in frame.columns})

    @classmethod
    def write(cls, store, rows: list[ScoreRow], *parts: str) -> str:
        """scores.parquet of one partition (parts: its folder, or the staging folder of store.partition)."""
        import polars as pl  # lazy: the record itself is read on GPU boxes without polars

        frame = pl.DataFrame([row.to_json() for row in rows], schema=cls.polars_schema())
        return store.write_parquet(frame, *parts, cls.FILE)

    def write_json(self, path: Path, **beside: Any) -> None:
        """This row as a JSON file (indent 2), with more keys after it (`bioreview score --out`)."""
        write_text_atomic(Path(path), json.dumps({**self.to_json(), **beside}, indent=2, default=str))
