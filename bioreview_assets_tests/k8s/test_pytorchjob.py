"""k8s/examples/pytorchjob-adapter.yaml (several nodes through the Kubeflow training operator) agrees with the
project's pod settings. kubernetes-validate has no schema for the operator's CRD, so each replica's pod template is
validated as a core PodTemplate and the PyTorchJob fields are asserted here."""

from __future__ import annotations

import kubernetes_validate
import pytest
import yaml

from bioreview_assets.orchestration import k8s_execution
from bioreview_assets_tests.k8s import render
from bioreview_assets.config.loader import load_snapshot

EXAMPLE = render.K8S_DIR / "examples" / "pytorchjob-adapter.yaml"
K8S_VERSION = "1.33"


@pytest.fixture(scope="module")
def job() -> dict:
    return yaml.safe_load(EXAMPLE.read_text())


def _replicas(job: dict) -> dict[str, dict]:
    return job["spec"]["pytorchReplicaSpecs"]


def test_the_crd_itself_cannot_be_schema_validated_offline(job) -> None:
    """Why this file checks fields by hand: the offline validator knows core kinds only."""
    assert (job["apiVersion"], job["kind"]) == ("kubeflow.org/v1", "PyTorchJob")
    with pytest.raises(kubernetes_validate.SchemaNotFoundError):
        kubernetes_validate.validate(job, K8S_VERSION, strict=True)


@pytest.mark.parametrize("replica", ["Master", "Worker"])
def test_each_replica_is_a_valid_pod_of_the_training_step_shape(job, replica) -> None:
    spec = _replicas(job)[replica]
    template = spec["template"]
    pod_template = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": f"adapter-{replica.lower()}"},
                    "template": template}
    assert kubernetes_validate.validate(pod_template, K8S_VERSION, strict=True) == K8S_VERSION
    config = load_snapshot().k8s
    step, gpu = config.gpu.steps["training"], config.gpu
    (container,) = template["spec"]["containers"]
    assert container["name"] == "pytorch"  # the container the operator injects its rendezvous variables into
    assert container["image"] == k8s_execution.image(load_snapshot().k8s, "gpu")
    gpus = job["spec"]["nprocPerNode"]
    assert container["resources"] == {"requests": {**step.requests, "nvidia.com/gpu": gpus},
                                      "limits": {**step.limits, "nvidia.com/gpu": gpus}}
    volumes = {v["name"]: v for v in template["spec"]["volumes"]}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert volumes["dshm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": step.shm} and mounts["dshm"] == "/dev/shm"
    assert volumes["model-cache"]["persistentVolumeClaim"]["claimName"] == gpu.model_cache.claim_name
    assert mounts["model-cache"] == gpu.model_cache.mount_path
    env = {e["name"]: e for e in container["env"]}
    for name, value in {**gpu.env, **gpu.multi_gpu_env}.items():  # NCCL_NVLS_ENABLE=0 among them
        assert env[name]["value"] == value, name
    assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == gpu.secret_env["HF_TOKEN"].secret
    assert env["BIOREVIEW_ENV"]["value"] == "k8s"
    sources = [next(iter(ref.values()))["name"] for ref in container["envFrom"]]
    assert sources == [*config.executor.env_config_maps, *config.executor.env_secrets]
    assert template["spec"]["nodeSelector"] == gpu.node_selector
    assert template["spec"]["tolerations"] == gpu.tolerations
    assert template["spec"]["serviceAccountName"] == config.executor.service_account_name
    assert spec["restartPolicy"] == "Never"
    # The same command on every node: torchrun takes nnodes, node rank and the master from the operator's PET_*.
    assert container["command"] == ["torchrun"]
    assert container["args"][:2] == ["-m", "bioreview_assets.ml.training.worker"]
    assert container["args"][2].startswith(gpu.model_cache.mount_path + "/")  # the spec lies on the shared volume


def test_the_job_is_one_master_and_workers_with_no_operator_retries(job) -> None:
    replicas = _replicas(job)
    assert set(replicas) == {"Master", "Worker"} and replicas["Master"]["replicas"] == 1
    nodes = 1 + replicas["Worker"]["replicas"]
    world = nodes * int(job["spec"]["nprocPerNode"])
    assert (nodes, world) == (2, 8)
    assert job["spec"]["runPolicy"]["backoffLimit"] == 0  # Dagster retries, the training resumes from a checkpoint
    # The example trains qwen3-8b: its effective batch survives 8 ranks (accumulation steps divide evenly).
    from bioreview_assets.config import loader

    training = loader.load_model(job["metadata"]["labels"]["bioreview/model"]).training
    assert training.gradient_accumulation_steps % world == 0
    assert replicas["Master"]["template"] == replicas["Worker"]["template"]  # the nodes differ only in their rank
