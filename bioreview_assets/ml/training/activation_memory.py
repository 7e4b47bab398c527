"""Activation memory of the training step: selective checkpointing (attention outputs kept in some layers),
activation offloading to pinned host memory, and input embeddings kept in host memory (GPU only)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from bioreview_assets.ml.training.precision import cuda_available

if TYPE_CHECKING:  # pydantic stays off the benchmarks' GPU path: the configs are only annotations here
    from bioreview_assets.config.model import TrainingConfig

log = logging.getLogger(__name__)


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
