"""Pydantic models for every YAML file under configs/, and the one loader that reads them."""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from bioreview_assets import env
from bioreview_assets.core.baselines import BASELINES
from bioreview_assets.core.gt_filter import CorpusConfig
from bioreview_assets.core.matcher_spec import MatcherSpec
from bioreview_assets.core.postprocess import PostprocessPolicy
from bioreview_assets.core.prompts import SYSTEM_PROMPTS
from bioreview_assets.core.quantization import EIGHT_BIT_MATMULS
from bioreview_assets.core.sampling import DEFAULT_SAMPLING
from bioreview_assets.core.schema import SPLITS

REPO_ROOT = env.REPO_ROOT


class ConfigError(ValueError):
    """A config file that does not make sense: names the file, the key and what is allowed (the CLI prints it
    without a traceback)."""


def configs_dir() -> Path:
    """Folder holding the YAML configs (BIOREVIEW_CONFIG_DIR overrides the repo's configs/)."""
    return env.config_dir()


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class BaseModelSource(_Strict):
    """Where a model's base weights come from. Missing weights are an error, never a substitute."""

    kind: Literal["tiny_random", "gguf_package", "hub", "api"]  # api: served elsewhere (openai backend), no weights
    hub_id: str | None = None
    revision: str | None = None
    path: str | None = None  # local folder with HF weights (takes precedence over the hub cache)
    package: str | None = None  # python package shipping a GGUF file (gguf_package)
    gguf_file: str | None = None
    seed: int = 0  # tiny_random only
    # tiny_random only: which architecture and chat template the tiny model copies (ml/models.py TINY_FAMILIES)
    family: Literal["qwen3", "qwen3_5", "qwen2", "deepseek_r1", "gemma2", "gemma4"] = "qwen3"

    @model_validator(mode="after")
    def _check(self) -> "BaseModelSource":
        if self.kind == "hub" and not (self.hub_id or self.path):
            raise ValueError("base.kind=hub needs hub_id or path")
        if self.kind == "gguf_package" and not (self.package and self.gguf_file):
            raise ValueError("base.kind=gguf_package needs package and gguf_file")
        return self


class LoraConfigSpec(_Strict):
    r: int = Field(default=16, ge=1)
    alpha: int = Field(default=32, ge=1)
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    # Leaf names of the projections to wrap; every name must match at least one module of the model.
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )
    # language_model: wrap only the text decoder of a vision-language checkpoint (Gemma-4's vision tower has
    # q_proj/.../down_proj too); every decoder projection named in target_modules must then be wrapped.
    scope: Literal["all", "language_model"] = "all"


class TrainingConfig(_Strict):
    """SFT hyper-parameters (reference values, PIPELINE.md §2.7)."""

    # fp8: e4m3 base with FP8 matmuls (ml/training/fp8.py), GPUs of compute capability 8.9+ only (not A100s).
    # nf4-fp8: the base stored in NF4 as under nf4 (half fp8's bytes), multiplied in FP8 as under fp8 (8.9+ only).
    # nf4-int8: the base stored in NF4, multiplied in INT8 with int32 accumulation (ml/training/int8.py): no FP8
    # needed, so A100s (8.0+) too.
    quantization: Literal["nf4", "fp8", "nf4-fp8", "nf4-int8", "none"] = "nf4"
    # Modules kept unquantised under nf4: transformers reads each entry as a regex from the start of the module name
    # (up to a dot) or as a suffix, e.g. ".*linear_attn" keeps the Gated DeltaNet projections of Qwen3.5 in bf16.
    quantization_skip_modules: list[str] = Field(default_factory=list)
    max_length: int = Field(default=16384, ge=1)
    lora: LoraConfigSpec = Field(default_factory=LoraConfigSpec)
    epochs: float = Field(default=3, gt=0)
    max_steps: int = Field(default=-1, ge=-1)  # -1: epochs decide
    per_device_batch_size: int = Field(default=1, ge=1)
    gradient_accumulation_steps: int = Field(default=8, ge=1)
    learning_rate: float = Field(default=2.0e-4, gt=0)
    lr_scheduler: str = "cosine"
    warmup_ratio: float = Field(default=0.03, ge=0.0, lt=1.0)
    weight_decay: float = Field(default=0.01, ge=0.0)
    max_grad_norm: float = Field(default=1.0, gt=0)
    optim: str = "adamw_8bit"  # on CPU the trainer uses adamw_torch (8-bit Adam needs CUDA)
    bf16: bool = True
    seed: int = 42
    logging_steps: int = Field(default=10, ge=1)
    save_steps: int = Field(default=100, ge=1)
    save_total_limit: int = Field(default=4, ge=1)
    eval_subset: int = Field(default=64, ge=0)  # fixed val rows for a cheap loss per checkpoint (W18)
    # The blocking check train_loss_fell: the mean train loss over the last quarter of the logged steps must end
    # below this fraction of its mean over the first quarter, or the adapter is not used (a flat loss is a run that
    # learned nothing, e.g. a learning rate far too high). 0.995: tiny-random's 6 CI steps fall to 0.99 of the start.
    loss_fall_fraction: float = Field(default=0.995, gt=0.0, le=1.0)
    gradient_checkpointing: bool = True
    liger: Literal["auto", "on", "off"] = "auto"
    packing: bool = False
    # GPU memory/speed trade-offs (ml/training/speed.py): keep the attention outputs of this many checkpointed layers
    # (0 = full recomputation; "all" = every layer) and offload checkpointed layer inputs to host memory (and, with
    # selective checkpointing, the kept attention outputs: ml/training/kept_offload.py).
    selective_checkpointing_layers: Annotated[int, Field(ge=0)] | Literal["all"] = 0
    activation_offloading: bool = False
    # The frozen input-embedding table (1.16 GiB for Qwen3-8B) in pinned host memory: its lookup is a gather of the
    # row's tokens, copied to the GPU once per step (GPU only; ml/training/speed.HostEmbedding).
    input_embeddings_on_host: bool = False
    # Data-parallel training of the one adapter on this many GPUs of one pod (torchrun, ml/training/launch.py); on a
    # machine without CUDA the ranks are CPU processes (gloo), as the tests run them. The effective batch stays
    # per_device_batch_size x gradient_accumulation_steps: each of the N ranks accumulates 1/N of the steps.
    gpus: Annotated[int, Field(ge=1)] = 1
    # ddp: a full (4-bit) base on every rank, LoRA gradients all-reduced. fsdp: the base sharded across the ranks
    # (FSDP2; under nf4 the 4-bit weights are stored in the compute dtype, the peft/accelerate FSDP-QLoRA recipe),
    # for models that do not fit one GPU. Only meaningful with gpus > 1.
    strategy: Literal["ddp", "fsdp"] = "ddp"
    # Resume a checkpoint written by another number of ranks (its data order and RNG streams were another N's,
    # so the result differs from an uninterrupted run); off: such a resume is refused.
    allow_world_size_change: bool = False

    @model_validator(mode="after")
    def _check_parallelism(self) -> "TrainingConfig":
        if self.gradient_accumulation_steps % self.gpus:
            raise ValueError(
                f"training.gradient_accumulation_steps={self.gradient_accumulation_steps} is not divisible by "
                f"training.gpus={self.gpus}: each rank accumulates gradient_accumulation_steps / gpus micro-batches "
                f"so that the effective batch stays per_device_batch_size x gradient_accumulation_steps"
            )
        if self.strategy == "fsdp" and self.gpus == 1:
            raise ValueError("training.strategy=fsdp shards the base model across ranks: it needs training.gpus > 1 "
                             "(one GPU trains without a strategy)")
        if self.strategy == "fsdp" and self.quantization in EIGHT_BIT_MATMULS:
            raise ValueError(f"training.quantization={self.quantization} keeps the frozen base in buffers that FSDP "
                             "does not shard: use strategy ddp, or quantization nf4 with fsdp")
        if self.strategy == "fsdp" and (self.selective_checkpointing_layers != 0 or self.activation_offloading):
            raise ValueError("training.strategy=fsdp checkpoints whole decoder layers through FSDP: "
                             "selective_checkpointing_layers and activation_offloading work with ddp only")
        return self


# Training fields that change how many processes compute the adapter, not what it is (ModelConfig.config_hash).
EXECUTION_FIELDS = ("gpus", "strategy", "allow_world_size_change")
# Training fields that judge the adapter after it is trained, not what it is (ModelConfig.config_hash).
CHECK_FIELDS = ("loss_fall_fraction",)


class GenerationConfig(_Strict):
    backend: Literal["transformers", "vllm", "openai"] = "transformers"
    # "auto": the longest target of the model's train corpus, in the model's own tokens, plus a margin
    # (generation_limits.py) - long enough for any answer the model was taught, short enough to cap a rambling base.
    # Sampling: the defaults are core/sampling.py's (what a backend decodes with when no config is given).
    max_new_tokens: Annotated[int, Field(ge=1)] | Literal["auto"] = DEFAULT_SAMPLING.max_new_tokens
    temperature: float = Field(default=DEFAULT_SAMPLING.temperature, ge=0.0)
    top_p: float = Field(default=DEFAULT_SAMPLING.top_p, gt=0.0, le=1.0)
    repetition_penalty: float = Field(default=DEFAULT_SAMPLING.repetition_penalty, gt=0.0)
    seed: int = DEFAULT_SAMPLING.seed
    batch_size: int = Field(default=8, ge=1)
    use_merged: bool = True
    # Set only on checkpoint probes (their val subset). A subset for every system is project.eval_max_articles.
    max_articles: int | None = Field(default=None, ge=1)
    # openai backend
    api_base: str | None = None
    api_model: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = Field(default=4, ge=1)
    # GPUs of one pod for one partition. data: one engine per GPU, each on a shard of the articles (transformers and
    # vLLM; ml/generation/sharding.py); tensor: one vLLM engine split over the GPUs (vLLM's tensor_parallel_size),
    # for a model that does not fit one GPU. On Kubernetes the generations pod asks for the most any model needs.
    gpus: Annotated[int, Field(ge=1)] = 1
    parallelism: Literal["data", "tensor"] = "data"
    # transformers backend on CUDA: eager decode steps (the default), or compiled ones (torch.compile + CUDA graphs,
    # attention by ml/generation/decode_kernel.py): 0.40 against 0.72 s/article at batch 128 on an H200 after about
    # a minute of compilation, so worth it from the second batch. Its greedy outputs are not token-identical to
    # eager ones, though no further from them than eager outputs at another batch size are, with the same F1
    # (benchmarks/results/greedy_agreement_h200.txt); since outputs change, the generations' key names it.
    decode: Literal["eager", "compiled"] = "eager"

    @model_validator(mode="after")
    def _check_decode(self) -> "GenerationConfig":
        if self.decode == "compiled" and self.backend != "transformers":
            raise ValueError(f"generation.decode: compiled is the transformers backend's compiled decode steps; the "
                             f"{self.backend} backend decodes its own way: remove generation.decode")
        return self

    @model_validator(mode="after")
    def _check_parallelism(self) -> "GenerationConfig":
        if self.backend == "openai" and self.gpus > 1:
            raise ValueError("generation.gpus > 1 needs a local backend (transformers or vllm): the openai backend "
                             "uses no GPU of its own; raise generation.concurrency instead")
        if self.parallelism == "tensor" and self.backend != "vllm":
            raise ValueError(f"generation.parallelism=tensor splits one model over GPUs through vLLM; the "
                             f"{self.backend} backend shards articles instead (parallelism: data)")
        if self.parallelism == "tensor" and self.gpus == 1:
            raise ValueError("generation.parallelism=tensor needs generation.gpus > 1 (one GPU holds the whole model)")
        return self


class PromptConfig(_Strict):
    version: str = "v2"
    token_budget: int = Field(default=15000, gt=0)  # whole user turn, counted with the model's own tokenizer
    enable_thinking: bool = False

    @field_validator("version")
    @classmethod
    def _known_version(cls, version: str) -> str:
        if version not in SYSTEM_PROMPTS:
            raise ValueError(f"unknown prompt version {version!r}; allowed: {sorted(SYSTEM_PROMPTS)}")
        return version


# ModelConfig fields that do not determine the adapter (ModelConfig.config_hash): generation settings (the
# generations' own key, ml/generation/serving.py, holds them), where pods run, and labels.
GENERATION_AND_REPORTING_FIELDS = ("description", "generation", "gpu", "base_system", "probe_of", "probe_step")


class ModelConfig(_Strict):
    """One fine-tunable model: base weights, corpus, prompt, training and generation settings."""

    name: str
    description: str = ""
    base: BaseModelSource
    corpus: str = "all_nonfig"
    prompt: PromptConfig = Field(default_factory=PromptConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    generation: GenerationConfig = Field(default_factory=GenerationConfig)
    gpu: bool = True  # production pods for this model need a GPU
    finetune: bool = True  # false: generate with the base weights (a "base model" system for the beats-base check)
    base_system: str | None = None  # the system of the same model without fine-tuning, for the beats-base check
    probe_of: str | None = None  # set on `<model>@step<N>`: generate from checkpoint N of that model's adapter
    probe_step: int | None = None

    @model_validator(mode="after")
    def _api_models_are_not_trained(self) -> "ModelConfig":
        if self.base.kind == "api" and (self.finetune or self.generation.backend != "openai"):
            raise ValueError("base.kind=api needs finetune: false and generation.backend: openai")
        return self

    @model_validator(mode="after")
    def _compiled_decode_needs_a_gpu(self) -> "ModelConfig":
        if self.generation.decode == "compiled" and not self.gpu:
            raise ValueError(f"model {self.name!r}: generation.decode: compiled needs CUDA, but gpu: false runs it "
                             f"on CPUs: set generation.decode: eager (or gpu: true)")
        return self

    def config_hash(self) -> str:
        """What determines the adapter: the base, corpus, prompt and training fields, except how many ranks compute
        it (EXECUTION_FIELDS) and the bar its checks hold it to (CHECK_FIELDS).

        It names the training run whose checkpoints a resume may continue (a run of another hash discards them), so
        what only shapes generation, pods or reports (GENERATION_AND_REPORTING_FIELDS) is left out: editing
        generation.batch_size mid-training must not throw away its checkpoints. A run on N GPUs trains the same
        effective batch in the same data order as one GPU, so its checkpoints keep their identity and a resume with
        another N is refused by the checkpoint guard (not silently restarted).
        """
        data = self.model_dump(mode="json", exclude=set(GENERATION_AND_REPORTING_FIELDS))
        for field in EXECUTION_FIELDS + CHECK_FIELDS:
            data["training"].pop(field)
        return stable_hash(data)

    def gpus_needed(self, asset: str) -> int:
        """GPUs the step materialising `asset` for this model uses (0 for a model that runs without a GPU).

        `adapter` trains on training.gpus ranks, `generations` runs generation.gpus shards; merged_model uses one.
        """
        if not self.gpu:
            return 0
        return {"adapter": self.training.gpus, "generations": self.generation.gpus}.get(asset, 1)


class EnsembleConfig(_Strict):
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


class ProbeConfig(_Strict):
    """Checkpoint probes: model partitions `<model>@step<N>` scored on a val subset from checkpoint N (W18)."""

    model: str
    steps: list[Annotated[int, Field(ge=1)]] = Field(min_length=1)
    max_articles: int = Field(default=16, ge=1)


class SweepConfig(_Strict):
    base: str
    variants: dict[str, dict[str, Any]]  # tag -> dotted-key overrides


class MatcherValidationConfig(_Strict):
    """matcher_validation[matcher]: labelled "same concern?" pairs and the bar the matcher must reach on them."""

    # The pairs the sample generator implies (bioreview_assets/sample/data/matcher_pairs.jsonl.gz).
    sample_pairs: bool = True
    # People's labels: JSONL or CSV files (text_a, text_b, label, annotator), relative to the repository or absolute.
    labelled_pairs: list[str] = Field(default_factory=list)
    # The check `matcher_agrees_with_labels` fails when F1 of "same concern" at the matcher's threshold is below this.
    min_f1: float = Field(default=0.8, ge=0.0, le=1.0)


class GateConfig(_Strict):
    """The success gate (reference README: F1 >= 0.58 OR recall >= 0.45; its report script used AND)."""

    f1_min: float = Field(default=0.58, ge=0.0, le=1.0)
    recall_min: float = Field(default=0.45, ge=0.0, le=1.0)
    rule: Literal["any", "all"] = "any"
    split: str = "val"


class TrackingConfig(_Strict):
    """Experiment tracking without a server: TensorBoard event files always, MLflow when switched on."""

    mlflow: bool = False  # needs the `mlflow` extra (mlflow-skinny)
    # Default: a SQLite file beside the artefacts (<local storage root>/mlflow.db); MLflow 3 refuses plain ./mlruns.
    mlflow_tracking_uri: str | None = None
    experiment: str = "bioreview"  # one experiment: every adapter, sweep variant and checkpoint probe is a run


class ProjectConfig(_Strict):
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


def stable_hash(payload: Any) -> str:
    """Short sha256 of a JSON-serialisable payload (sorted keys), used as a content/config hash."""
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise FileNotFoundError(f"config file {path} does not exist")
    with path.open() as handle:
        data = yaml.safe_load(handle) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping at top level")
    return data


def validated(model: type[BaseModel], data: dict[str, Any], path: Path) -> Any:
    """`data` as `model`, or a ConfigError naming the file, each wrong key, what it holds and what is allowed."""
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise ConfigError(f"invalid config {path}: " + "; ".join(_describe(e) for e in err.errors())) from None


def _describe(error: dict) -> str:
    # pydantic's messages say what is allowed ("Input should be greater than or equal to 1", "Input should be
    # 'nf4' or 'fp8'"); a union of int and "auto" gives one error per branch: the key and value once.
    key = ".".join(str(part) for part in error["loc"] if not str(part).startswith(("function-after", "literal[")))
    key = key.replace(".constrained-int", "").replace(".int", "")
    message = error["msg"].removeprefix("Value error, ")
    shown = "" if error["type"] in ("missing", "value_error") else f" (got {error.get('input')!r})"
    return f"{key or '<file>'}: {message}{shown}"


def _load_named(folder: str, name: str, model: type[BaseModel]) -> Any:
    path = configs_dir() / folder / f"{name}.yaml"
    data = _read_yaml(path)
    return validated(model, {"name": name, **data} if "name" in model.model_fields else data, path)


def _apply_dotted(data: dict[str, Any], dotted: dict[str, Any]) -> dict[str, Any]:
    out = json.loads(json.dumps(data))
    for key, value in dotted.items():
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    # The reference's sweep manager kept alpha = 2r when r was overridden; we keep that rule explicit.
    if "training.lora.r" in dotted and "training.lora.alpha" not in dotted:
        out["training"]["lora"]["alpha"] = 2 * dotted["training.lora.r"]
    return out


@functools.lru_cache(maxsize=None)
def load_project() -> ProjectConfig:
    """The project config (configs/project.yaml)."""
    path = configs_dir() / "project.yaml"
    return validated(ProjectConfig, _read_yaml(path), path)


@functools.lru_cache(maxsize=None)
def load_model(name: str) -> ModelConfig:
    """A model config; `base@tag` names a sweep variant (dotted overrides over the base model config)."""
    if "@" in name:
        base, tag = name.split("@", 1)
        for probe in load_project().probes:
            if probe.model == base and tag in {f"step{n}" for n in probe.steps}:
                path = configs_dir() / "models" / f"{base}.yaml"
                data = _read_yaml(path)
                data.setdefault("generation", {})["max_articles"] = probe.max_articles
                return validated(ModelConfig, {**data, "name": name, "probe_of": base,
                                               "probe_step": int(tag.removeprefix("step"))}, path)
        for sweep_name in load_project().sweeps:
            sweep = _load_named("sweeps", sweep_name, SweepConfig)
            if sweep.base == base and tag in sweep.variants:
                data = _read_yaml(configs_dir() / "models" / f"{base}.yaml")
                # The overrides are the sweep file's: a bad value is reported there.
                return validated(ModelConfig, {**_apply_dotted(data, sweep.variants[tag]), "name": name},
                                 configs_dir() / "sweeps" / f"{sweep_name}.yaml")
        raise KeyError(f"no sweep variant or checkpoint probe {name!r} in configs/ for base model {base!r}")
    return _load_named("models", name, ModelConfig)


@functools.lru_cache(maxsize=None)
def load_corpus(name: str) -> CorpusConfig:
    return _load_named("corpora", name, CorpusConfig)


@functools.lru_cache(maxsize=None)
def load_matcher(name: str) -> MatcherSpec:
    return _load_named("matchers", name, MatcherSpec)


@functools.lru_cache(maxsize=None)
def load_ensemble(name: str) -> EnsembleConfig:
    return _load_named("ensembles", name, EnsembleConfig)


def postprocess_policy(name: str) -> PostprocessPolicy:
    """The post-processing policy `name` of configs/project.yaml."""
    for policy in load_project().postprocess:
        if policy.name == name:
            return policy
    raise KeyError(f"no post-processing policy {name!r} in configs/project.yaml")


def eval_article_limit(model: str | None = None) -> int | None:
    """How many leading articles of an eval split are generated and scored (None = all).

    The project's eval_max_articles for every system; a checkpoint probe (`model@stepN`) uses its own smaller val
    subset on top of that. Baselines and ensembles pass no model.
    """
    limits = [load_project().eval_max_articles]
    if model is not None:
        limits.append(load_model(model).generation.max_articles)
    given = [n for n in limits if n]
    return min(given) if given else None


def all_matcher_names() -> list[str]:
    """Every matcher config in configs/matchers/ (the project's scored matchers first, in their order)."""
    scored = load_project().matchers
    return scored + sorted(p.stem for p in (configs_dir() / "matchers").glob("*.yaml") if p.stem not in scored)


def all_model_names() -> list[str]:
    """Models plus the sweep variants (`base@tag`) and checkpoint probes (`base@stepN`) they expand into."""
    project = load_project()
    names = list(project.models)
    for sweep_name in project.sweeps:
        sweep = _load_named("sweeps", sweep_name, SweepConfig)
        names += [f"{sweep.base}@{tag}" for tag in sweep.variants]
    names += [f"{probe.model}@step{step}" for probe in project.probes for step in probe.steps]
    return names


# Loaders cached in modules above this one (config/k8s.py's load_k8s_config): this module never imports them.
_CACHED_ELSEWHERE: list = []


def cached_loader(fn):
    """A config loader kept outside this module, cached like the ones here and forgotten by clear_caches()."""
    cached = functools.lru_cache(maxsize=None)(fn)
    _CACHED_ELSEWHERE.append(cached)
    return cached


def read_config(model: type[BaseModel], path: Path) -> Any:
    """The YAML file at `path` as `model` (ConfigError naming the file and the key when it does not validate)."""
    return validated(model, _read_yaml(path), path)


def clear_caches() -> None:
    """Forget loaded configs (tests switch BIOREVIEW_CONFIG_DIR)."""
    for fn in (load_project, load_model, load_corpus, load_matcher, load_ensemble, *_CACHED_ELSEWHERE):
        fn.cache_clear()
