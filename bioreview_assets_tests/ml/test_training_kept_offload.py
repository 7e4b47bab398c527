"""Selective checkpointing with the kept attention outputs handed to a mover (ml/training/kept_offload.py), on CPU."""

import pytest
import torch
from torch.utils.checkpoint import checkpoint

from bioreview_assets.ml.training.kept_offload import AttentionOps, KeepOnDevice, _ReuseOutputs, keep_outputs_context

CPU_ATTENTION = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu.default


class CountingMover(KeepOnDevice):
    """Keeps copies (as a host round trip would) and counts what went through it."""

    def __init__(self):
        self.offloaded = self.fetched = 0

    def offload(self, outputs):
        self.offloaded += 1
        assert isinstance(outputs, tuple)  # the attention kernels return (output, log-sum-exp, ...)
        return tuple(x.clone() if isinstance(x, torch.Tensor) else x for x in outputs)

    def fetch(self, entry):
        self.fetched += 1
        return entry


def layer(x, weight):
    """A pre-norm attention block in miniature: projection, causal SDPA, projection, residual."""
    batch, length, width = x.shape
    q, k, v = (x @ weight).view(batch, length, 3, 2, width // 2).permute(2, 0, 3, 1, 4)
    attended = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
    return x + torch.tanh(attended.transpose(1, 2).reshape(batch, length, width) @ weight[:, :width])


def run(layers, context_fn=None):
    torch.manual_seed(0)
    x = torch.randn(2, 32, 16, requires_grad=True)
    weights = [torch.randn(16, 48, requires_grad=True) for _ in range(layers)]
    h = x
    for w in weights:
        h = checkpoint(layer, h, w, use_reentrant=False, context_fn=context_fn) if context_fn else layer(h, w)
    h.square().sum().backward()
    return [x.grad] + [w.grad for w in weights]


def test_kept_attention_outputs_come_from_the_mover_and_gradients_are_unchanged():
    reference = run(3)
    mover = CountingMover()
    grads = run(3, keep_outputs_context(AttentionOps({CPU_ATTENTION}), mover))
    assert mover.offloaded == mover.fetched == 3  # one attention op per layer: kept once, reused in its recompute
    for ours, theirs in zip(grads, reference):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=0)


def test_with_no_op_to_keep_everything_is_recomputed_as_plain_checkpointing_does():
    mover = CountingMover()
    grads = run(2, keep_outputs_context(AttentionOps(set()), mover))
    assert mover.offloaded == mover.fetched == 0
    for ours, theirs in zip(grads, run(2)):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=0)


def test_ops_returning_lists_are_kept_too():
    def split_layer(x, weight):
        first, second = torch.split(x @ weight, [8, 8], dim=-1)  # aten.split_with_sizes returns Tensor[]
        return torch.tanh(first) * second

    class ListMover(KeepOnDevice):
        kinds: list = []

        def offload(self, outputs):
            self.kinds.append(type(outputs))
            return [x.clone() for x in outputs]

    torch.manual_seed(0)
    x = torch.randn(4, 16, requires_grad=True)
    weight = torch.randn(16, 16, requires_grad=True)
    split_layer(x, weight).sum().backward()
    reference = (x.grad.clone(), weight.grad.clone())
    x.grad = weight.grad = None
    mover = ListMover()
    context_fn = keep_outputs_context(AttentionOps({torch.ops.aten.split_with_sizes.default}), mover)
    checkpoint(split_layer, x, weight, use_reentrant=False, context_fn=context_fn).sum().backward()
    assert mover.kinds == [list]
    torch.testing.assert_close((x.grad, weight.grad), reference, rtol=0, atol=0)


def test_a_recompute_without_a_kept_entry_says_so():
    mode = _ReuseOutputs(AttentionOps({CPU_ATTENTION}), KeepOnDevice(), [])
    q = torch.randn(1, 1, 4, 8)
    with pytest.raises(RuntimeError, match="was not kept in the forward"):
        with mode:
            torch.nn.functional.scaled_dot_product_attention(q, q, q)


def test_attention_ops_match_flash_attn_ops_by_name():
    class FakeOp:
        def __str__(self):
            return "flash_attn._flash_attn_forward"

    ops = AttentionOps({CPU_ATTENTION})
    assert CPU_ATTENTION in ops and FakeOp() in ops and torch.ops.aten.mm.default not in ops
