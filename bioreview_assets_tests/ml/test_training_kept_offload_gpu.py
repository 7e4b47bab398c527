"""Kept attention outputs in pinned host memory (HostOffloader) against keeping them on the GPU (CUDA only; the H200
runs it)."""

import pytest
import torch

if not torch.cuda.is_available():
    pytest.skip("HostOffloader needs CUDA streams and pinned memory", allow_module_level=True)

from torch.utils.checkpoint import checkpoint  # noqa: E402

from bioreview_assets.ml.training.kept_offload import (  # noqa: E402
    AttentionOps,
    HostOffloader,
    KeepOnDevice,
    keep_outputs_context,
)

OPS = AttentionOps({getattr(torch.ops.aten, name).default for name in (
    "_scaled_dot_product_flash_attention", "_scaled_dot_product_efficient_attention",
    "_scaled_dot_product_cudnn_attention") if hasattr(torch.ops.aten, name)})
WIDTH, HEADS, LENGTH, LAYERS = 512, 4, 2048, 6


def layer(x, weight):
    batch, length, width = x.shape
    q, k, v = (x @ weight).view(batch, length, 3, HEADS, width // HEADS).permute(2, 0, 3, 1, 4)
    attended = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
    return x + (attended.transpose(1, 2).reshape(batch, length, width) @ weight[:, :width]) * 0.1


def allocated() -> int:
    """Bytes allocated once the GPU is idle and the allocator has released blocks whose last stream use is over."""
    torch.cuda.synchronize()
    torch.empty(1, device="cuda")  # an allocation makes the caching allocator process the finished stream uses
    return torch.cuda.memory_allocated()


def run(mover):
    start = allocated()
    torch.manual_seed(0)
    x = torch.randn(2, LENGTH, WIDTH, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    weights = [(torch.randn(WIDTH, 3 * WIDTH, device="cuda", dtype=torch.bfloat16) * WIDTH ** -0.5).requires_grad_()
               for _ in range(LAYERS)]
    context_fn = keep_outputs_context(OPS, mover)
    h = x
    for w in weights:
        h = checkpoint(layer, h, w, use_reentrant=False, context_fn=context_fn)
    after_forward = allocated() - start
    h.float().square().sum().backward()
    torch.cuda.synchronize()
    return [x.grad] + [w.grad for w in weights], after_forward


def test_host_offloaded_outputs_give_the_same_gradients_and_leave_the_gpu():
    kept, kept_memory = run(KeepOnDevice())
    offloader = HostOffloader()
    offloaded, offloaded_memory = run(offloader)
    for ours, theirs in zip(offloaded, kept):
        assert torch.equal(ours, theirs)  # the same bytes come back: gradients identical
    output_bytes = 2 * HEADS * LENGTH * (WIDTH // HEADS) * 2  # one bf16 attention output a layer
    assert offloader.offloaded_bytes >= LAYERS * output_bytes
    assert offloaded_memory <= kept_memory - 0.9 * LAYERS * output_bytes  # not held on the GPU until the backward
