"""Execution settings of GPU assets: Kubernetes pod config (op_tags), the GPU concurrency pool, retries."""

from __future__ import annotations

from bioreview_assets.config import env
from bioreview_assets.config.snapshot import ConfigSnapshot
from bioreview_assets.orchestration.k8s_execution import GPU_POOL, GPU_RETRY, gpu_op_tags


def gpu_asset_kwargs(snapshot: ConfigSnapshot, step_kind: str, gpus: int | None = None) -> dict:
    """op_tags / pool for a GPU step; retries only on Kubernetes, where a failure is usually a preempted pod.

    gpus: the pod's GPU count, None for what the model configs ask for (k8s_execution.pod_gpus). Locally a failure is
    a bug or a config error: retrying it with back-off would only hide it for minutes.
    """
    kwargs = {"op_tags": gpu_op_tags(snapshot, step_kind, gpus), "pool": GPU_POOL}
    if env.on_kubernetes():
        kwargs["retry_policy"] = GPU_RETRY
    return kwargs


def embedding_asset_kwargs(snapshot: ConfigSnapshot) -> dict:
    """GPU pod settings for the steps that embed texts (scores, ensembles) when a scored matcher's embedder asks for
    CUDA (`device: cuda` in configs/matchers/); none otherwise, so CPU embedders never hold a GPU node."""
    on_gpu = any(m.embedder is not None and m.embedder.device.startswith("cuda") for m in snapshot.scored_matchers())
    return gpu_asset_kwargs(snapshot, "embedding") if on_gpu else {}
