"""Speed and memory setup of the SFT step, shared by train_adapter and benchmarks/train_throughput.py.

What makes an 8B QLoRA step fit at 16k tokens (ENVIRONMENT.md, GPU figures):
* no fp32 upcast of norms/embeddings (peft's prepare_model_for_kbit_training does it): activations stay bf16 and
  SDPA keeps its flash kernel;
* trl 1.16's fused LM head (always on in SFTTrainer): log-probs in tiles, only at supervised positions, so the
  (16k x 152k) logits are never materialised. This is the fused linear cross-entropy; Liger's own is refused by
  trl because it would replace the same forward;
* Liger kernels for RMSNorm, RoPE and SwiGLU (fewer saved activations, fewer launches), when installed on a GPU;
* non-reentrant gradient checkpointing, switched on by the trainer in train mode; selective checkpointing keeps
  the attention outputs of a configured number of layers (each skips its attention recompute for 128 MiB);
* LoRA layers whose B projection, scaling and add run as one addmm, and whose last projection per block lets the
  recompute stop before its base matmul (fused_lora_forward).

H100, Qwen3-8B shape, 16k tokens, one process per setup (benchmarks/results/train_throughput_h100.txt): plain PEFT
QLoRA 4,571 tok/s and 46.8 GiB; this step 7,797 tok/s and 13.2 GiB; attention outputs kept in 20 of 36 layers (the
qwen3-8b config) 8,063 tok/s and 15.7 GiB; in all layers 8,290 tok/s and 17.7 GiB, or 8,008 tok/s and 13.4 GiB with
the checkpointed inputs offloaded to host memory.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import types
from typing import TYPE_CHECKING, Literal

from bioreview_assets.ml.runtime_env import cpu_has_native_bf16

if TYPE_CHECKING:  # pydantic stays off the benchmarks' GPU path: the configs are only annotations here
    from bioreview_assets.config.model import TrainingConfig

log = logging.getLogger(__name__)

LIGER_KERNELS = {"rope": True, "rms_norm": True, "swiglu": True, "cross_entropy": False}


class LigerUnavailableError(RuntimeError):
    """`liger: on` was asked for where Liger cannot run."""


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def compute_dtype(training: TrainingConfig):
    """bf16 when the config asks for it on a GPU or on a CPU with native bf16 matmuls, fp32 otherwise.

    On CPUs with avx512_bf16/AMX a LoRA step of SmolLM2-135M at 1,150 tokens measured ~5 s in bf16 against ~25 s
    in fp32 (2 cores); without those instructions bf16 is emulated and slower, so fp32 is kept there.
    """
    import torch

    if not training.bf16:
        return torch.float32
    return torch.bfloat16 if cuda_available() or cpu_has_native_bf16() else torch.float32


def attn_implementation() -> str:
    """flash_attention_2 when flash-attn is installed on a GPU (varlen kernels for packing), else PyTorch SDPA."""
    if cuda_available() and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


def liger_available() -> bool:
    """Liger can run here: the package is installed and a CUDA device is present (its kernels are Triton)."""
    return cuda_available() and importlib.util.find_spec("liger_kernel") is not None


def apply_liger(model, mode: Literal["auto", "on", "off"]) -> list[str]:
    """Patch the model instance with Liger's RMSNorm/RoPE/SwiGLU kernels per `mode`; return the kernels applied."""
    if mode == "off":
        log.info("liger: off (config)")
        return []
    if not liger_available():
        reason = "no CUDA device" if not cuda_available() else "liger-kernel is not installed"
        if mode == "on":
            raise LigerUnavailableError(f"training.liger is 'on' but Liger cannot run here: {reason}")
        log.info("liger: auto -> not used (%s)", reason)
        return []
    from liger_kernel.transformers.monkey_patch import (
        MODEL_TYPE_TO_APPLY_LIGER_FN,
        _apply_liger_kernel_to_instance,
    )

    model_type = model.config.model_type
    if model_type not in MODEL_TYPE_TO_APPLY_LIGER_FN:
        if mode == "on":
            raise LigerUnavailableError(f"training.liger is 'on' but Liger has no kernels for {model_type!r}")
        log.info("liger: auto -> not used (no kernels for model type %r)", model_type)
        return []
    # trl's fused LM head replaces the loss; Liger's fused linear cross-entropy would patch the same forward.
    _apply_liger_kernel_to_instance(model=model, fused_linear_cross_entropy=False, **LIGER_KERNELS)
    applied = [name for name, on in LIGER_KERNELS.items() if on]
    log.info("liger: %s -> applied %s to %s", mode, applied, model_type)
    return applied


def check_no_upcast(model, dtype) -> None:
    """Fail if norms were upcast away from the compute dtype (that knocks SDPA off its flash path at 16k)."""
    upcast = [
        name
        for name, param in model.named_parameters()
        if "norm" in name and param.dtype != dtype and param.dtype.is_floating_point
    ]
    if upcast:
        raise RuntimeError(f"{len(upcast)} norm weights are not {dtype} (e.g. {upcast[0]}): something upcast them")


def keep_nf4_training_layout_on_cpu(model) -> None:
    """Stop bitsandbytes' CPU backend from repacking NF4 weights for its bf16 inference kernel.

    bitsandbytes 0.50 on CPUs with AVX512-BF16 repacks a Linear4bit's weight on its first eval-mode forward, and
    unpacks it again in state_dict() without restoring the double-quantised absmax. After the first eval + checkpoint
    the in-memory base then differs from a fresh load (1e-3 on the logits), so a reloaded adapter or a resumed run
    would not compute what the trained one did. GPUs never take this path.
    """
    if cuda_available():
        return
    import bitsandbytes as bnb

    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            module.support_avx512bf16_for_cpu = False


def prepare_for_kbit_free(model) -> None:
    """What peft's prepare_model_for_kbit_training does that we need, without its fp32 upcast.

    Freeze the base weights (LoRA adds the trainable ones) and turn the KV cache off (useless in training and
    incompatible with checkpointing). Input-embedding grads for checkpointing are enabled by the trainer, and
    checkpointing itself is switched on by the trainer when train() starts.
    """
    for param in model.parameters():
        param.requires_grad_(False)
    model.config.use_cache = False


# ------------------------------------------------------------------------------------------ fused LoRA forward


@contextlib.contextmanager
def fused_lora_forward(model, *, lora_first_in_last_projection: bool = True):
    """Within the block, vanilla LoRA layers compute base(x) + s * B(A(x)) without peft's extra passes.

    peft's forward clones the base output (bnb layers), materialises B(A(x)), multiplies it by s and adds it: four
    passes over a (tokens x out_features) tensor per layer: 0.11 s of a 2.31 s 8B step at 16k tokens (H100). Here
    the B projection, the scaling and the add are one addmm.

    The last LoRA projection of each checkpointed block (down_proj in Llama/Qwen MLPs) instead computes its LoRA
    branch before its base matmul: the base matmul saves nothing for backward (the frozen NF4 weight is all its
    backward needs), so the checkpoint's recompute stops before it (torch's early stop) and the block's largest
    forward matmul is not run a second time (another 0.07 s; +1.2 GiB peak, still under 16 GiB).

    The layers get peft's forward back when the block exits, so an in-memory model afterwards computes exactly what
    a reloaded adapter does. Layers with dropout > 0, DoRA, bias, several or disabled adapters run peft's forward.
    """
    from peft.tuners.lora import LoraLayer
    from transformers.modeling_layers import GradientCheckpointingLayer

    lora_layers = [m for m in model.modules() if isinstance(m, LoraLayer) and "forward" not in vars(m)]
    last_in_block = set()
    if lora_first_in_last_projection:
        for block in (m for m in model.modules() if isinstance(m, GradientCheckpointingLayer)):
            inside = [m for m in block.modules() if isinstance(m, LoraLayer)]
            if inside:
                last_in_block.add(id(inside[-1]))
    for module in lora_layers:
        forward = _lora_first_forward if id(module) in last_in_block else _fused_forward
        module.forward = types.MethodType(forward, module)
    try:
        yield len(lora_layers)
    finally:
        for module in lora_layers:
            del module.forward


def _vanilla_adapter(module, kwargs) -> str | None:
    """The single active plain-LoRA adapter of `module`, or None when peft's own forward must run."""
    import torch

    if len(module.active_adapters) != 1 or module.disable_adapters or module.merged:
        return None
    name = module.active_adapters[0]
    if (
        kwargs.get("adapter_names") is not None
        or name not in module.lora_A
        or name in getattr(module, "lora_variant", {})
        or module.lora_B[name].bias is not None
        or not isinstance(module.lora_dropout[name], torch.nn.Identity)
    ):
        return None
    return name


def _lora_hidden(module, name: str, x, autocast: bool):
    """A(x), flattened to (tokens, r), in the adapter's dtype unless autocast decides (as peft)."""
    import torch

    lora_a = module.lora_A[name].weight
    hidden = torch.nn.functional.linear(x if autocast else x.to(lora_a.dtype), lora_a)
    return hidden.reshape(-1, hidden.shape[-1])


def _fused_forward(self, x, *args, **kwargs):
    import torch

    name = _vanilla_adapter(self, kwargs)
    if name is None:
        return type(self).forward(self, x, *args, **kwargs)
    kwargs.pop("alora_offsets", None)  # peft's variant-only argument: never for the base layer
    autocast = torch.is_autocast_enabled()
    result = self.base_layer(x, *args, **kwargs)
    hidden = _lora_hidden(self, name, x, autocast)
    weight_b = self.lora_B[name].weight
    flat = result.reshape(-1, result.shape[-1])
    if not autocast:  # as peft: the LoRA matmuls run in the adapter's dtype, the sum in the base output's
        hidden, weight_b = hidden.to(flat.dtype), weight_b.to(flat.dtype)
    return torch.addmm(flat, hidden, weight_b.t(), alpha=self.scaling[name]).view(result.shape)


def _lora_first_forward(self, x, *args, **kwargs):
    import torch

    name = _vanilla_adapter(self, kwargs)
    if name is None:
        return type(self).forward(self, x, *args, **kwargs)
    kwargs.pop("alora_offsets", None)
    autocast = torch.is_autocast_enabled()
    hidden = _lora_hidden(self, name, x, autocast)
    lora = torch.nn.functional.linear(hidden, self.lora_B[name].weight * self.scaling[name])
    result = self.base_layer(x, *args, **kwargs)  # saves no activation: the recompute can stop before it
    return result + lora.view(*result.shape[:-1], -1).to(result.dtype)


# ------------------------------------------------------------------------------- checkpointing and offloading


def selective_checkpointing_layers(training: TrainingConfig) -> int | None:
    """How many checkpointed layers keep their attention outputs: 0 = none, None = all (GPU only).

    Measured on an H100 (8B, 16k tokens): each layer that keeps its attention output skips the recompute of its
    attention forward (~3.8 ms) for one 128 MiB tensor held until the backward reaches it.
    """
    if not (training.gradient_checkpointing and cuda_available()):
        return 0
    layers = training.selective_checkpointing_layers
    return None if layers == "all" else layers


def use_activation_offloading(training: TrainingConfig) -> bool:
    """trl's activation offloading of the checkpointed layer inputs to pinned host memory (GPU only); with selective
    checkpointing the kept attention outputs go there too (kept_offload.py)."""
    return training.activation_offloading and cuda_available()


def selective_checkpointing_callback(n_layers: int | None = None, *, offload_kept: bool = False):
    """A TrainerCallback that switches checkpointed layers (the first n_layers; None = all) to trl's SAC policy.

    The policy saves the attention op's outputs and recomputes everything else: the backward then skips the
    attention forward (about 6% of an 8B step at 16k) for one hidden-state-sized tensor per layer. trl's own switch
    (gradient_checkpointing_kwargs={"selective": True}) wraps gradient_checkpointing_enable, which transformers
    5.24's Trainer no longer calls (it calls activation_checkpointing_enable), so it is set on the layers instead.
    offload_kept (activation_offloading on a GPU): the kept outputs wait for the backward in pinned host memory
    (kept_offload.py) instead of on the GPU.
    """
    from functools import partial

    from torch.utils.checkpoint import checkpoint, create_selective_checkpoint_contexts
    from transformers import TrainerCallback
    from trl.models.selective_activation_checkpointing import (
        _aten_attention_ops,
        _build_policy_fn,
    )

    if offload_kept:
        from bioreview_assets.ml.training.kept_offload import AttentionOps, HostOffloader, keep_outputs_context

        offloader = HostOffloader()
        context_fn = keep_outputs_context(AttentionOps(), offloader)
    else:
        context_fn = partial(create_selective_checkpoint_contexts, _build_policy_fn(_aten_attention_ops()))

    class SelectiveCheckpointing(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kwargs):
            layers = [m for m in model.modules() if getattr(m, "gradient_checkpointing", False)]
            if not layers:
                raise RuntimeError("selective checkpointing asked for, but no layer has checkpointing on")
            chosen = layers if n_layers is None else layers[:n_layers]
            for layer in chosen:
                layer._gradient_checkpointing_func = partial(checkpoint, use_reentrant=False, context_fn=context_fn)
            log.info("selective activation checkpointing on %d of %d layers (attention outputs kept%s)",
                     len(chosen), len(layers), " in pinned host memory" if offload_kept else "")

    return SelectiveCheckpointing()


# ------------------------------------------------------------------------------------------- host embeddings


class HostEmbedding:
    """A frozen input-embedding table kept in pinned host memory; forward gathers the rows and copies them over.

    A training step reads 16k of its 152k rows (128 MiB at hidden 4096): one gather on the CPU and one copy over
    PCIe (~5 ms) instead of 1.16 GiB held on the GPU. The table is a plain attribute, not a parameter, so the
    trainer's model.to(device) leaves it where it is; it is frozen, so nothing is lost from the optimizer or the
    adapter. The gather writes into one reused pinned buffer; the previous copy's event is waited for first.
    """

    def __init__(self, embedding, device):
        import torch

        self.pinned = torch.cuda.is_available()  # pinned memory needs a CUDA device (tests run the lookup on CPU)
        table = embedding.weight.detach().to("cpu")
        self.table = table.pin_memory() if self.pinned else table
        self.device = torch.device(device)
        self._buffer = None
        self._copied = None

    def module(self):
        """An nn.Module that computes the lookup (what set_input_embeddings receives)."""
        import torch

        host = self

        class _HostEmbeddingModule(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.num_embeddings, self.embedding_dim = host.table.shape

            def forward(self, input_ids):
                return host.lookup(input_ids)

            def extra_repr(self):
                return f"{self.num_embeddings}, {self.embedding_dim}, in pinned host memory"

        return _HostEmbeddingModule()

    def lookup(self, input_ids):
        import torch

        ids = input_ids.reshape(-1).to("cpu")
        rows = len(ids)
        if self._buffer is None or self._buffer.shape[0] < rows:
            self._buffer = torch.empty((rows, self.table.shape[1]), dtype=self.table.dtype, pin_memory=self.pinned)
        elif self._copied is not None:
            self._copied.synchronize()  # the last copy out of this buffer has finished
        out = self._buffer[:rows]
        torch.index_select(self.table, 0, ids, out=out)
        on_device = out.to(self.device, non_blocking=True)
        if self.device.type == "cuda":
            self._copied = torch.cuda.Event()
            self._copied.record()
        return on_device.view(*input_ids.shape, -1)


def move_input_embeddings_to_host(model) -> int:
    """Replace the model's frozen input embeddings by a HostEmbedding lookup; return the bytes freed on the GPU."""
    import torch

    embedding = model.get_input_embeddings()
    if not isinstance(embedding, torch.nn.Embedding) or embedding.weight.requires_grad:
        raise TypeError(f"input_embeddings_on_host needs a frozen nn.Embedding, got {type(embedding).__name__}")
    if model.get_output_embeddings() is not None and model.get_output_embeddings().weight is embedding.weight:
        raise ValueError("input_embeddings_on_host: the input embeddings are tied to lm_head, which needs them on the GPU")
    freed = embedding.weight.numel() * embedding.weight.element_size()
    host = HostEmbedding(embedding, embedding.weight.device)
    model.set_input_embeddings(host.module())
    del embedding
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    log.info("input embeddings in pinned host memory: %.2f GiB freed on the GPU", freed / 2**30)
    return freed
