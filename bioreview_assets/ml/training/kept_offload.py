"""Selective checkpointing whose kept attention outputs wait for the backward in pinned host memory.

Why: keeping each layer's attention output skips the attention forward in the recompute (about 5% of an 8B step at
16k tokens), but holds one hidden-state-sized tensor per layer on the GPU until the backward reaches it (128 MiB a
layer, 4.5 GiB for Qwen3-8B). With `activation_offloading: true` those tensors go to pinned host memory right after
the attention op (a side stream copies them while the forward goes on) and come back one layer ahead of their use in
the backward, as trl's offloading does for the checkpointed layer inputs, into memory of the compute stream.

How: torch's checkpoint takes any pair of context managers as `context_fn`; these are two small TorchDispatchModes
of our own (not torch's private SAC classes): the forward one runs every op and hands the attention ops' outputs to
a mover; the recompute one returns what the mover gives back for those ops and runs every other op again. The saved
outputs are never changed in place (attention outputs feed the output projection), so no version check is made.

Measured on an H200 (benchmarks/results/train_nf4fp8_h200.txt, Qwen3-8B shape, nf4-fp8, 16k tokens): every layer
keeping its attention output at 8.05 GiB allocated instead of 12.28, 1.065x the tokens/s of keeping none; with the
copies back landing in the compute stream's memory (session 11) 10,466 tok/s at 8.05 allocated and 10.09 reserved.

Movers: HostOffloader on CUDA (streams, pinned memory, prefetch of the previous layer's entry when one is fetched);
KeepOnDevice elsewhere (the tensors stay where they are: the same protocol, for CPU tests).
"""

from __future__ import annotations

import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map_only, tree_unflatten

MIN_OFFLOAD_BYTES = 1 << 20  # smaller outputs (log-sum-exp of a short row, RNG seeds) stay on the GPU


class AttentionOps:
    """Which ops' outputs are kept: trl's aten attention kernels (flash, efficient, cuDNN, CPU flash) and
    flash-attn's own ops, as trl's SAC policy picks them; the answer is cached per op."""

    def __init__(self, ops: set | None = None):
        if ops is None:
            from trl.models.selective_activation_checkpointing import _aten_attention_ops

            ops = set(_aten_attention_ops())
        self.ops = set(ops)
        self._answers: dict = {}

    def __contains__(self, func) -> bool:
        answer = self._answers.get(func)
        if answer is None:
            answer = self._answers[func] = func in self.ops or "flash_attn" in str(func)
        return answer


class KeepOnDevice:
    """A mover that keeps every output where it is (CPUs, tests): what torch's own SAC does."""

    def offload(self, outputs):
        return outputs

    def fetch(self, entry):
        return entry


class _HostEntry:
    """One op's outputs: the large tensors as pinned host copies, the rest as they were."""

    def __init__(self, leaves: list, spec, host_positions: list[int], stored: torch.cuda.Event | None, previous):
        self.leaves, self.spec, self.host_positions = leaves, spec, host_positions
        self.stored = stored  # recorded on the copy stream after the device-to-host copies (None: nothing copied)
        self.previous = previous  # weakref to the entry offloaded just before this one (the layer below)
        self.arrived: torch.cuda.Event | None = None  # set once the copies back are enqueued


class HostOffloader:
    """Copies kept tensors to pinned host memory on one side stream and back on another, ahead of their use."""

    def __init__(self, device: torch.device | str | None = None, min_bytes: int = MIN_OFFLOAD_BYTES):
        # The rank's own GPU, named with its index: the backward's recompute runs on autograd's device thread.
        self.device = torch.device(device) if device is not None else torch.device("cuda", torch.cuda.current_device())
        self.min_bytes = min_bytes
        self.to_host = torch.cuda.Stream(self.device)
        self.to_device = torch.cuda.Stream(self.device)
        self._last = None
        self.offloaded_bytes = 0  # over the offloader's life, for logs and tests

    def offload(self, outputs) -> _HostEntry:
        leaves, spec = tree_flatten(outputs)
        positions = [i for i, x in enumerate(leaves)
                     if isinstance(x, torch.Tensor) and x.is_cuda and x.numel() * x.element_size() >= self.min_bytes]
        if positions:
            self.to_host.wait_stream(torch.cuda.current_stream(self.device))  # the op has written its outputs
            with torch.cuda.stream(self.to_host):
                for i in positions:
                    tensor = leaves[i]
                    host = torch.empty_like(tensor, device="cpu", pin_memory=True)  # same strides
                    host.copy_(tensor, non_blocking=True)
                    tensor.record_stream(self.to_host)  # its memory is not reused before the copy has read it
                    self.offloaded_bytes += tensor.numel() * tensor.element_size()
                    leaves[i] = host
        entry = _HostEntry(leaves, spec, positions, self.to_host.record_event() if positions else None, self._last)
        self._last = weakref.ref(entry)
        return entry

    def _prefetch(self, entry: _HostEntry) -> None:
        if entry.arrived is not None or not entry.host_positions:
            return
        # The copies back land in blocks of the compute stream's pool, where they are used and freed: blocks of a
        # side stream's pool would be reserved beside it (1 GiB more reserved at 16k tokens on an H200). The copy
        # stream first waits for the compute stream, which may still be reading those blocks' previous tensors.
        compute = torch.cuda.current_stream(self.device)
        targets = [torch.empty_like(entry.leaves[i], device=self.device) for i in entry.host_positions]
        self.to_device.wait_stream(compute)
        self.to_device.wait_event(entry.stored)
        with torch.cuda.stream(self.to_device):
            for i, target in zip(entry.host_positions, targets):
                target.copy_(entry.leaves[i], non_blocking=True)
                target.record_stream(self.to_device)  # not reused before the copy has written it, even if dropped
                entry.leaves[i] = target
        entry.arrived = self.to_device.record_event()

    def fetch(self, entry: _HostEntry):
        self._prefetch(entry)
        if entry.host_positions:
            torch.cuda.current_stream(self.device).wait_event(entry.arrived)
        outputs = tree_unflatten(entry.leaves, entry.spec)
        entry.leaves = None
        previous = entry.previous() if entry.previous is not None else None
        if previous is not None and previous.leaves is not None:
            self._prefetch(previous)  # the backward needs the layer below next
        return outputs


class _KeptOpsMode(TorchDispatchMode):
    """A dispatch mode of one checkpointed region: the ops to keep, the mover and the region's kept entries."""

    def __init__(self, ops, mover, kept: list):
        super().__init__()
        self.ops, self.mover, self.kept = ops, mover, kept


class _KeepOutputs(_KeptOpsMode):
    """Forward: runs every op; hands the kept ops' outputs to the mover, in order."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func in self.ops:  # a tensor, or a tuple / list of them with ints and None (tree_map walks any of those)
            self.kept.append(self.mover.offload(tree_map_only(torch.Tensor, torch.Tensor.detach, out)))
        return out


class _ReuseOutputs(_KeptOpsMode):
    """Recompute: the kept ops return what the mover gives back (in forward order); every other op runs again."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in self.ops:
            if not self.kept:
                raise RuntimeError(f"{func} ran in the recompute but was not kept in the forward (or a second "
                                   "backward reached this checkpointed region)")
            return self.mover.fetch(self.kept.pop(0))
        return func(*args, **(kwargs or {}))


def keep_outputs_context(ops, mover):
    """A checkpoint `context_fn`: each call (one per checkpointed region) gets its own list of kept entries."""

    def context_fn():
        kept: list = []
        return _KeepOutputs(ops, mover, kept), _ReuseOutputs(ops, mover, kept)

    return context_fn
