"""Kubernetes execution settings from configs/k8s.yaml: GPU op tags, the GPU pool and retry policy, the k8s executor."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import dagster as dg

from bioreview_assets.config import env
from bioreview_assets.config.k8s import K8sConfig

if TYPE_CHECKING:
    from bioreview_assets.config.model import ModelConfig
    from bioreview_assets.config.snapshot import ConfigSnapshot

# Only dagster and the config models at module level: the asset modules import this in the local env too, where the op tags are
# inert metadata; dagster_k8s (and through it the kubernetes client) is imported only when the k8s executor is built.

K8S_CONFIG_TAG = "dagster-k8s/config"
GPU_POOL = "gpu"  # Dagster concurrency pool: caps simultaneous GPU steps across all runs (limit set on the instance)
StepKind = Literal["training", "generation", "embedding"]

# A preempted or evicted GPU pod fails its Job; the executor's step health check then applies this policy and
# launches a new Job after a pause that lets the node pool recover. Generation resumes per article and training
# from its last checkpoint, so a retry repeats little work.
GPU_RETRY = dg.RetryPolicy(max_retries=3, delay=120, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)


def image(k8s: K8sConfig, kind: Literal["cpu", "gpu"]) -> str:
    """Image for CPU or GPU steps; BIOREVIEW_CPU_IMAGE / BIOREVIEW_GPU_IMAGE pin a tag at deploy time."""
    return env.image_override(kind) or getattr(k8s.images, kind)


def gpus_for_step(model: "ModelConfig", step_kind: StepKind) -> int:
    """GPUs one step of this model uses: training.gpus for its adapter, generation.gpus for its generations."""
    if step_kind == "training":
        return model.training.gpus
    if step_kind == "generation":
        return model.generation.gpus
    return 1


def pod_gpus(snapshot: "ConfigSnapshot", step_kind: StepKind) -> int:
    """GPUs of the pod of a step kind: the most that any GPU model of the project asks for.

    Op tags belong to an asset, not to a partition (dagster-k8s reads the step's op tags, never the run's), so one
    pod shape serves every model; a model that needs fewer GPUs uses only its own count of them. Models marked
    gpu: false (tiny CPU models) and API models do not size production pods, nor do untrained models the training pod.
    """
    step = snapshot.k8s.gpu.steps.get(step_kind)
    if step is not None and step.gpus is not None:
        return step.gpus
    counts = [gpus_for_step(model, step_kind) for model in snapshot.models.values()
              if model.gpu and model.base.kind != "api" and (step_kind != "training" or model.finetune)]
    return max(counts, default=1)


def gpu_op_tags(snapshot: "ConfigSnapshot", step_kind: StepKind, gpus: int | None = None) -> dict[str, Any]:
    """Op tags that put a step on a GPU pod: GPU image, N GPUs, node selector, tolerations, shm, model cache.

    gpus: the pod's GPU count; None takes pod_gpus(snapshot, step_kind) (what the model configs ask for).
    """
    gpu = snapshot.k8s.gpu
    if step_kind not in gpu.steps:
        raise KeyError(f"configs/k8s.yaml has no gpu.steps.{step_kind} (known: {sorted(gpu.steps)})")
    step = gpu.steps[step_kind]
    count = pod_gpus(snapshot, step_kind) if gpus is None else gpus
    if count < 1:
        raise ValueError(f"a GPU step needs at least one GPU, got {count}")
    gpu_count = {"nvidia.com/gpu": str(count)}
    env = [{"name": name, "value": value} for name, value in gpu.env.items()]
    if count > 1:
        env += [{"name": name, "value": value} for name, value in gpu.multi_gpu_env.items()]
    env += [
        # optional: a Secret without that key leaves the variable unset instead of blocking the pod.
        {"name": name, "value_from": {"secret_key_ref": {"name": ref.secret, "key": ref.key, "optional": True}}}
        for name, ref in gpu.secret_env.items()
    ]
    k8s = {
        "container_config": {
            "image": image(snapshot.k8s, "gpu"),
            "resources": {"requests": {**step.requests, **gpu_count}, "limits": {**step.limits, **gpu_count}},
            "env": env,
            "volume_mounts": [
                {"name": "dshm", "mount_path": "/dev/shm"},
                {"name": "model-cache", "mount_path": gpu.model_cache.mount_path},
            ],
        },
        "pod_spec_config": {
            "node_selector": step.node_selector or gpu.node_selector,
            "tolerations": gpu.tolerations,
            "volumes": [
                # The container runtime's 64 MiB default /dev/shm crashes vLLM, multi-worker DataLoaders and NCCL's
                # shared-memory transport between the ranks of one pod.
                {"name": "dshm", "empty_dir": {"medium": "Memory", "size_limit": step.shm}},
                {"name": "model-cache", "persistent_volume_claim": {"claim_name": gpu.model_cache.claim_name}},
            ],
        },
        "pod_template_spec_metadata": {"labels": {"bioreview/step-kind": step_kind}},
    }
    return {K8S_CONFIG_TAG: k8s}


def executor_config(config: K8sConfig) -> dict[str, Any]:
    """Config of dagster_k8s.k8s_job_executor: image, pull policy, service account, env sources, CPU step shape."""
    spec = config.executor
    return {
        "job_image": image(config, "cpu"),
        "image_pull_policy": config.images.pull_policy,
        "service_account_name": spec.service_account_name,
        "env_config_maps": spec.env_config_maps,
        "env_secrets": spec.env_secrets,
        "max_concurrent": spec.max_concurrent,
        "step_k8s_config": {"container_config": {"resources": spec.cpu_step.model_dump()}},
        "per_step_k8s_config": spec.per_step,
    }


def k8s_executor(config: K8sConfig) -> dg.ExecutorDefinition:
    """dagster_k8s.k8s_job_executor configured from configs/k8s.yaml (one Kubernetes Job per step)."""
    from dagster_k8s import k8s_job_executor  # imported here: the local env never needs the kubernetes client

    return k8s_job_executor.configured(executor_config(config), name="bioreview_k8s")
