"""Pydantic models of configs/k8s.yaml: images, the k8s executor, GPU steps (orchestration/k8s_execution.py turns
them into op tags and the executor; config/loader.py reads the file)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Resources(_Strict):
    requests: dict[str, str]
    limits: dict[str, str]


class Images(_Strict):
    cpu: str
    gpu: str
    pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"


class ExecutorSpec(_Strict):
    service_account_name: str
    env_config_maps: list[str] = Field(default_factory=list)
    env_secrets: list[str] = Field(default_factory=list)
    max_concurrent: int = 16
    cpu_step: Resources
    per_step: dict[str, dict[str, Any]] = Field(default_factory=dict)


class SecretRef(_Strict):
    secret: str
    key: str


class ModelCache(_Strict):
    claim_name: str
    mount_path: str = "/models"


# Step kinds whose pod's GPU count the model configs decide (training.gpus, generation.gpus: k8s_execution.pod_gpus).
GPUS_FROM_MODEL_CONFIGS = ("training", "generation")


class GpuStep(_Strict):
    # Only for kinds no model config sizes (embedding); training and generation pods take theirs from the models.
    gpus: int | None = Field(default=None, ge=1)
    requests: dict[str, str]
    limits: dict[str, str]
    shm: str
    node_selector: dict[str, str] | None = None  # replaces the default GPU node selector for this kind of step

    @model_validator(mode="after")
    def _complete(self) -> "GpuStep":
        # Op tags deep-merge onto the executor's CPU step shape: a missing key would silently keep the CPU value.
        for name, values in (("requests", self.requests), ("limits", self.limits)):
            if not {"cpu", "memory"} <= set(values):
                raise ValueError(f"a GPU step's {name} needs both cpu and memory, got {sorted(values)}")
        return self


class GpuSpec(_Strict):
    node_selector: dict[str, str]
    tolerations: list[dict[str, str]]
    model_cache: ModelCache
    env: dict[str, str] = Field(default_factory=dict)
    # Added to env in pods of more than one GPU, where ranks talk through NCCL (one-GPU pods stay as they were).
    multi_gpu_env: dict[str, str] = Field(default_factory=dict)
    secret_env: dict[str, SecretRef] = Field(default_factory=dict)
    steps: dict[str, GpuStep]

    @model_validator(mode="after")
    def _gpu_counts_have_one_source(self) -> "GpuSpec":
        for kind in GPUS_FROM_MODEL_CONFIGS:
            if kind in self.steps and self.steps[kind].gpus is not None:
                section = "training" if kind == "training" else "generation"
                raise ValueError(f"gpu.steps.{kind}.gpus is set, but the GPU count of {kind} pods comes from the "
                                 f"model configs ({section}.gpus in configs/models/): remove it here")
        return self


class K8sConfig(_Strict):
    """configs/k8s.yaml."""

    images: Images
    executor: ExecutorSpec
    gpu: GpuSpec

