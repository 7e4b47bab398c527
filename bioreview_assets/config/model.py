"""Pydantic models of one model's config (configs/models/*.yaml): base weights, prompt, training, generation."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from bioreview_assets.core.hashing import stable_hash
from bioreview_assets.core.prompts import SYSTEM_PROMPTS
from bioreview_assets.core.quantization import EIGHT_BIT_MATMULS
from bioreview_assets.core.sampling import DEFAULT_SAMPLING


class Strict(BaseModel):
    """A config section that rejects unknown keys (a typo is an error, not a silently ignored setting)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class BaseModelSource(Strict):
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


class LoraConfigSpec(Strict):
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


class TrainingConfig(Strict):
    """SFT hyper-parameters (reference values, docs/reference.md: reference pipeline §2.7)."""

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
    # GPU memory/speed trade-offs (ml/training/activation_memory.py): keep the attention outputs of this many checkpointed layers
    # (0 = full recomputation; "all" = every layer) and offload checkpointed layer inputs to host memory (and, with
    # selective checkpointing, the kept attention outputs: ml/training/kept_offload.py).
    selective_checkpointing_layers: Annotated[int, Field(ge=0)] | Literal["all"] = 0
    activation_offloading: bool = False
    # The frozen input-embedding table (1.16 GiB for Qwen3-8B) in pinned host memory: its lookup is a gather of the
    # row's tokens, copied to the GPU once per step (GPU only; ml/training/activation_memory.HostEmbedding).
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


class GenerationConfig(Strict):
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


class PromptConfig(Strict):
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


class ModelConfig(Strict):
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
