"""Pydantic models of configs/project.yaml and the files it names besides models: ensembles, sweeps, probes, gate."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from bioreview_assets.config.model import Strict
from bioreview_assets.core.baselines import BASELINES
from bioreview_assets.core.postprocess import PostprocessPolicy
from bioreview_assets.core.schema import SPLITS


class EnsembleConfig(Strict):
    name: str
    members: list[str] = Field(min_length=1)  # system names, in priority order
    strategy: Literal["union", "vote"] = "union"
    threshold: float = Field(default=0.8, ge=-1.0, le=1.0)  # a cosine similarity
    min_votes: int = Field(default=2, ge=1)
    cap: int | None = Field(default=20, ge=1)
    selection: Literal["first", "severity_first", "category_diverse"] = "first"
    matcher: str | None = None  # embedder used for cross-model matching (defaults to the project matcher)
    # The count baseline `<ensemble>~single-at-count` takes this system's concerns, cut per article to the
    # ensemble's concern count. Default: the first (highest-priority) member.
    count_baseline: str | None = None

    def count_baseline_source(self) -> str:
        return self.count_baseline or self.members[0]


class ProbeConfig(Strict):
    """Checkpoint probes: model partitions `<model>@step<N>` scored on a val subset from checkpoint N (W18)."""

    model: str
    steps: list[Annotated[int, Field(ge=1)]] = Field(min_length=1)
    max_articles: int = Field(default=16, ge=1)


class SweepConfig(Strict):
    base: str
    variants: dict[str, dict[str, Any]]  # tag -> dotted-key overrides


class MatcherValidationConfig(Strict):
    """matcher_validation[matcher]: labelled "same concern?" pairs and the bar the matcher must reach on them."""

    # The pairs the sample generator implies (bioreview_assets/sample/data/matcher_pairs.jsonl.gz).
    sample_pairs: bool = True
    # People's labels: JSONL or CSV files (text_a, text_b, label, annotator), relative to the repository or absolute.
    labelled_pairs: list[str] = Field(default_factory=list)
    # The check `matcher_agrees_with_labels` fails when F1 of "same concern" at the matcher's threshold is below this.
    min_f1: float = Field(default=0.8, ge=0.0, le=1.0)


class GateConfig(Strict):
    """The success gate (F1 >= 0.58 OR recall >= 0.45; the reference's report script used AND: docs/reference.md,
    reference pipeline §7.2)."""

    f1_min: float = Field(default=0.58, ge=0.0, le=1.0)
    recall_min: float = Field(default=0.45, ge=0.0, le=1.0)
    rule: Literal["any", "all"] = "any"
    split: str = "val"


class TrackingConfig(Strict):
    """Experiment tracking without a server: TensorBoard event files always, MLflow when switched on."""

    mlflow: bool = False  # needs the `mlflow` extra (mlflow-skinny)
    # Default: a SQLite file beside the artefacts (<local storage root>/mlflow.db); MLflow 3 refuses plain ./mlruns.
    mlflow_tracking_uri: str | None = None
    experiment: str = "bioreview"  # one experiment: every adapter, sweep variant and checkpoint probe is a run


class ProjectConfig(Strict):
    """Which models, systems, matchers and splits the graph is built for (configs/project.yaml)."""

    models: list[str]
    postprocess: list[PostprocessPolicy]
    default_postprocess: str
    ensembles: list[str] = Field(default_factory=list)
    baselines: list[str] = Field(default_factory=lambda: ["bm25"])
    sweeps: list[str] = Field(default_factory=list)
    probes: list[ProbeConfig] = Field(default_factory=list)
    matchers: list[str]
    default_matcher: str
    eval_splits: list[str] = Field(default_factory=lambda: ["val", "test"])
    corpus_splits: list[str] = Field(default_factory=lambda: ["train", "val"])
    max_bad_row_fraction: float = Field(default=0.02, ge=0.0, le=1.0)
    truncation_warn_rate: float = Field(default=0.6, ge=0.0, le=1.0)
    parse_failure_max_rate: float = Field(default=0.5, ge=0.0, le=1.0)
    bootstrap_n: int = Field(default=1000, ge=0)
    gate: GateConfig = Field(default_factory=GateConfig)
    demo_models: list[str] = Field(default_factory=list)
    # Dev knob: generate and score only the first N articles of each eval split, for EVERY system (models, BM25,
    # ensembles), so rows stay comparable; the leaderboard shows how many articles each row covers. None = all.
    eval_max_articles: int | None = Field(default=None, ge=1)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    matcher_validation: MatcherValidationConfig = Field(default_factory=MatcherValidationConfig)

    @model_validator(mode="after")
    def _check_names(self) -> "ProjectConfig":
        """Every name the project refers to inside itself exists (names of other files: check_configs)."""
        policies = [policy.name for policy in self.postprocess]
        _require_known("default_postprocess", [self.default_postprocess], policies)
        _require_known("default_matcher", [self.default_matcher], self.matchers)
        _require_known("baselines", self.baselines, BASELINES)
        _require_known("eval_splits", self.eval_splits, SPLITS)
        _require_known("corpus_splits", self.corpus_splits, SPLITS)
        _require_known("gate.split", [self.gate.split], self.eval_splits)
        _require_known("demo_models", self.demo_models, self.models)
        _require_known("probes.model", [probe.model for probe in self.probes], self.models)
        for key, names in (("models", self.models), ("postprocess", policies), ("ensembles", self.ensembles),
                           ("baselines", self.baselines), ("matchers", self.matchers)):
            if len(set(names)) != len(names):
                raise ValueError(f"{key}: names {sorted({n for n in names if names.count(n) > 1})} appear twice")
        return self


def _require_known(key: str, names: list[str], allowed) -> None:
    unknown = [name for name in names if name not in allowed]
    if unknown:
        raise ValueError(f"{key}: unknown {', '.join(map(repr, unknown))}; allowed: {sorted(allowed)}")
