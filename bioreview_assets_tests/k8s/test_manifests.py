"""What Kubernetes would receive, checked offline: step Jobs, the chart's objects for our values, no secret values."""

import json
import os
import re
import subprocess
import sys
from unittest import mock

import dagster as dg
import kubernetes_validate
import pytest
import yaml
from dagster_k8s.executor import _K8S_EXECUTOR_CONFIG_SCHEMA, k8s_job_executor

from bioreview_assets.orchestration import k8s_execution
from bioreview_assets.config import loader
from bioreview_assets.orchestration.k8s_execution import GPU_POOL, K8S_CONFIG_TAG, executor_config, gpu_op_tags
from bioreview_assets.config.loader import REPO_ROOT
from bioreview_assets_tests.k8s import render
from bioreview_assets.config.loader import load_snapshot

K8S_VERSION = "1.33"
EXAMPLE = render.K8S_DIR / "examples" / "generations-job.yaml"
GPU_STEPS = {"adapter": "training", "merged_model": "training", "generations": "generation", "scores": "embedding"}
FAKE_SECRETS = {  # set in the environment while rendering: none of these values may reach a manifest
    "OPENAI_API_KEY": "sk-fake-openai-7c1e0b55",
    "HF_TOKEN": "hf_fake_token_93d2aa10",
    "AWS_ACCESS_KEY_ID": "AKIAFAKE0000EXAMPLE1",
    "AWS_SECRET_ACCESS_KEY": "fake/secret+access+key/5f0c2e",
    "DAGSTER_PG_PASSWORD": "fake-pg-password-1b6e",
}


def _container(job: dict) -> dict:
    (container,) = job["spec"]["template"]["spec"]["containers"]
    return container


def _validate(obj: dict) -> None:
    assert kubernetes_validate.validate(obj, K8S_VERSION, strict=True) == K8S_VERSION


@pytest.fixture(scope="module")
def generations_job() -> dict:
    return render.to_dict(render.step_job("generations", gpu_op_tags(load_snapshot(), "generation")))


def test_generation_step_job_requests_an_a100_with_shm_cache_and_gpu_image(generations_job):
    _validate(generations_job)
    container, pod = _container(generations_job), generations_job["spec"]["template"]["spec"]
    k8s = load_snapshot().k8s
    assert container["image"] == k8s_execution.image(k8s, "gpu") != k8s_execution.image(k8s, "cpu")  # not the job image
    assert container["resources"] == {
        "requests": {"cpu": "8", "memory": "48Gi", "nvidia.com/gpu": "1"},
        "limits": {"cpu": "12", "memory": "64Gi", "nvidia.com/gpu": "1"},
    }
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert pod["serviceAccountName"] == "bioreview-steps"  # the executor's, over the chart's defaults
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert volumes["dshm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "16Gi"} and mounts["dshm"] == "/dev/shm"
    assert volumes["model-cache"]["persistentVolumeClaim"]["claimName"] == "bioreview-model-cache"
    assert mounts["model-cache"] == "/models"
    assert mounts["benchmark"] == "/data/benchmark"  # inherited from the code location (includeConfigInLaunchedRuns)
    env = {e["name"]: e for e in container["env"]}
    assert env["HF_HOME"]["value"] == "/models/hf" and env["BIOREVIEW_ENV"]["value"] == "k8s"
    assert env["OPENAI_API_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "bioreview-api-keys", "key": "openai-api-key", "optional": True}
    env_from = [next(iter(ref.values()))["name"] for ref in container["envFrom"]]
    assert {"bioreview-env", "bioreview-object-store"} <= set(env_from)
    assert generations_job["metadata"]["namespace"] == render.NAMESPACE
    assert generations_job["spec"]["backoffLimit"] == 0  # retries are Dagster's (GPU_RETRY), not the Job's
    assert "NCCL_NVLS_ENABLE" not in env  # one GPU: no NCCL, the pod is what it was before multi-GPU steps


@pytest.mark.parametrize("kind", ["training", "generation", "embedding"])
def test_every_gpu_step_kind_gets_one_gpu_and_a_valid_job(kind):
    job = render.to_dict(render.step_job(f"probe_{kind}", gpu_op_tags(load_snapshot(), kind)))
    _validate(job)
    resources = _container(job)["resources"]
    assert resources["limits"]["nvidia.com/gpu"] == resources["requests"]["nvidia.com/gpu"] == "1"
    assert job["spec"]["template"]["spec"]["tolerations"]
    assert job["spec"]["template"]["metadata"]["labels"]["bioreview/step-kind"] == kind


def test_cpu_step_gets_the_cpu_image_and_shape_and_no_gpu():
    job = render.to_dict(render.step_job("benchmark_split", {}))
    _validate(job)
    container, pod = _container(job), job["spec"]["template"]["spec"]
    assert container["image"] == k8s_execution.image(load_snapshot().k8s, "cpu")
    assert container["resources"] == load_snapshot().k8s.executor.cpu_step.model_dump()
    assert "nodeSelector" not in pod and "tolerations" not in pod


def test_per_step_config_is_merged_last():
    job = render.to_dict(render.step_job("adapter", gpu_op_tags(load_snapshot(), "training")))
    _validate(job)
    annotations = job["spec"]["template"]["metadata"]["annotations"]
    assert annotations["cluster-autoscaler.kubernetes.io/safe-to-evict"] == "false"
    assert _container(job)["resources"]["limits"]["memory"] == "96Gi"  # the op tag, not the CPU default


def test_executor_config_is_valid_for_k8s_job_executor():
    from dagster._config import process_config, resolve_to_config_type

    config_type = resolve_to_config_type(_K8S_EXECUTOR_CONFIG_SCHEMA)
    result = process_config(config_type, executor_config(load_snapshot().k8s))
    assert result.success, result.errors
    assert k8s_execution.k8s_executor(load_snapshot().k8s).name == "bioreview_k8s"


def test_image_tags_can_be_pinned_at_deploy_time(monkeypatch):
    monkeypatch.setenv("BIOREVIEW_GPU_IMAGE", "reg.example/gpu:sha-123")
    tags = gpu_op_tags(load_snapshot(), "training")
    assert tags[K8S_CONFIG_TAG]["container_config"]["image"] == "reg.example/gpu:sha-123"


def test_local_env_never_imports_the_kubernetes_client():
    code = ("import sys; from bioreview_assets.config.loader import load_snapshot; "
            "from bioreview_assets.orchestration.k8s_execution import gpu_op_tags; "
            "gpu_op_tags(load_snapshot(), 'generation'); "
            "assert not {'kubernetes', 'dagster_k8s'} & set(sys.modules), sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=render.REPO_ROOT)


def test_unknown_step_kind_is_a_clear_error():
    with pytest.raises(KeyError, match="gpu.steps.inference"):
        gpu_op_tags(load_snapshot(), "inference")


# --- a 4-GPU config: N GPUs, shared memory and NCCL settings in the pod -------------------------------------------

@pytest.fixture
def four_gpu_configs(tmp_path):
    """configs/ where qwen3-8b generates (and trains, where training.gpus exists) on 4 GPUs, and a CPU-only tiny
    model asks for 8, which must not size production pods. The definitions built while it is set use it."""
    import shutil

    from bioreview_assets.config.model import TrainingConfig

    configs = tmp_path / "configs"
    shutil.copytree(REPO_ROOT / "configs", configs)
    for name, sections in {"qwen3-8b": ("generation", "training"), "tiny-random": ("generation",)}.items():
        path = configs / "models" / f"{name}.yaml"
        data = yaml.safe_load(path.read_text())
        for section in sections:
            if section == "training" and "gpus" not in TrainingConfig.model_fields:
                continue  # the training half adds the field; until then test_four_gpu_adapter_pod patches it in
            data.setdefault(section, {})["gpus"] = 4 if name == "qwen3-8b" else 8
        path.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BIOREVIEW_CONFIG_DIR", str(configs))
        yield patch


def _gpu_asset_tags() -> dict[str, dict]:
    """The op tags of the GPU assets as the definitions build them from the configs loaded now."""
    from bioreview_assets.definitions import build_assets

    return {key.to_user_string(): dict(asset.op.tags) for asset in build_assets(load_snapshot()) for key in asset.keys
            if key.to_user_string() in ("adapter", "merged_model", "generations")}


def _pod(job: dict) -> tuple[dict, dict, dict]:
    container = _container(job)
    return (container["resources"], {e["name"]: e.get("value") for e in container["env"]},
            {v["name"]: v for v in job["spec"]["template"]["spec"]["volumes"]})


def _assert_multi_gpu_pod(job: dict, gpus: int, shm: str) -> None:
    _validate(job)
    resources, env, volumes = _pod(job)
    assert resources["limits"]["nvidia.com/gpu"] == resources["requests"]["nvidia.com/gpu"] == str(gpus)
    assert volumes["dshm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": shm}
    assert {"name": "dshm", "mountPath": "/dev/shm"} in _container(job)["volumeMounts"]
    assert env["NCCL_NVLS_ENABLE"] == "0" and env["TORCH_SYMM_MEM_DISABLE_MULTICAST"] == "1"
    assert env["HF_HOME"] == "/models/hf"  # the one-GPU env is kept, the NCCL settings are added to it


def test_four_gpu_generation_pod_asks_for_four_gpus_shm_and_no_nvls(four_gpu_configs):
    assert k8s_execution.pod_gpus(load_snapshot(), "generation") == 4  # not 8: the tiny model is gpu: false
    tags = _gpu_asset_tags()
    job = render.to_dict(render.step_job("generations", tags["generations"]))
    _assert_multi_gpu_pod(job, 4, "16Gi")
    carried = tags["generations"][K8S_CONFIG_TAG]  # what the asset carries is what the config says
    expected = gpu_op_tags(load_snapshot(), "generation")[K8S_CONFIG_TAG]
    assert (json.loads(carried) if isinstance(carried, str) else carried) == expected


def test_four_gpu_adapter_pod_and_a_one_gpu_merge(four_gpu_configs):
    from bioreview_assets.config.model import TrainingConfig

    if "gpus" not in TrainingConfig.model_fields:  # before the training half is merged: qwen3-8b asks for 4 anyway
        real = k8s_execution.gpus_for_step
        four_gpu_configs.setattr(k8s_execution, "gpus_for_step", lambda model, kind: 4 if (
            kind == "training" and model.name == "qwen3-8b") else real(model, kind))
    assert k8s_execution.pod_gpus(load_snapshot(), "training") == 4
    tags = _gpu_asset_tags()
    adapter_job = render.to_dict(render.step_job("adapter", tags["adapter"]))
    _assert_multi_gpu_pod(adapter_job, 4, "32Gi")
    annotations = adapter_job["spec"]["template"]["metadata"]["annotations"]
    assert annotations["cluster-autoscaler.kubernetes.io/safe-to-evict"] == "false"  # per-step config still merged
    merged_job = render.to_dict(render.step_job("merged_model", tags["merged_model"]))
    _validate(merged_job)
    resources, env, _ = _pod(merged_job)
    assert resources["limits"]["nvidia.com/gpu"] == "1" and "NCCL_NVLS_ENABLE" not in env  # a merge is one process


def test_one_gpu_configs_give_the_pods_they_gave_before(generations_job):
    """The shipped configs ask for one GPU everywhere: the example Job (unchanged file) is still what is rendered."""
    snapshot = load_snapshot()
    assert k8s_execution.pod_gpus(snapshot, "training") == k8s_execution.pod_gpus(snapshot, "generation") == 1
    assert yaml.safe_load(EXAMPLE.read_text()) == generations_job
    assert gpu_op_tags(snapshot, "training") == gpu_op_tags(snapshot, "training", gpus=1)


def test_gpu_counts_of_training_and_generation_pods_have_one_source():
    from bioreview_assets.config.k8s import K8sConfig

    data = yaml.safe_load((loader.configs_dir() / "k8s.yaml").read_text())
    data["gpu"]["steps"]["generation"]["gpus"] = 2
    with pytest.raises(ValueError, match="comes from the model configs \\(generation.gpus"):
        K8sConfig.model_validate(data)


# --- the real dagster_k8s step handler agrees with the builder ------------------------------------------------

@dg.op(name="generations", tags=gpu_op_tags(load_snapshot(), "generation"), pool=GPU_POOL)
def _generations_op():
    return 1


@dg.job(executor_def=k8s_job_executor)
def gpu_probe_job():
    _generations_op()


@pytest.fixture
def kubeconfig(tmp_path):
    """A kubeconfig naming a cluster nobody talks to: the step handler only needs one to start."""
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "offline",
        "clusters": [{"name": "offline", "cluster": {"server": "https://127.0.0.1:9"}}],
        "users": [{"name": "offline", "user": {}}],
        "contexts": [{"name": "offline", "context": {"cluster": "offline", "user": "offline"}}],
    }))
    return str(path)


def test_k8s_step_handler_creates_the_same_job_as_the_builder(kubeconfig):
    """K8sStepHandler.launch_step with a mocked Kubernetes API: the Job it posts equals render.step_job's."""
    from dagster._config import process_config, resolve_to_config_type
    from dagster._core.definitions.reconstruct import reconstructable
    from dagster._core.execution.api import create_execution_plan
    from dagster._core.execution.context.system import PlanData, PlanOrchestrationContext
    from dagster._core.execution.context_creation_job import create_context_free_log_manager
    from dagster._core.execution.retries import RetryMode
    from dagster._core.executor.init import InitExecutorContext
    from dagster._core.executor.step_delegating.step_handler.base import StepHandlerContext
    from dagster._core.instance_for_test import instance_for_test
    from dagster._core.test_utils import create_run_for_test
    from dagster._grpc.types import ExecuteStepArgs

    values = render.helm_values()
    launcher = {**render.run_launcher_config(values), "load_incluster_config": False, "kubeconfig_file": kubeconfig}
    overrides = {"run_launcher": {"module": "dagster_k8s", "class": "K8sRunLauncher", "config": launcher}}
    recon = reconstructable(gpu_probe_job)
    origin = recon.get_python_origin()
    origin = origin._replace(repository_origin=origin.repository_origin._replace(
        container_context=render.code_location_container_context(values)))
    with instance_for_test(overrides=overrides) as instance:
        config = process_config(resolve_to_config_type(_K8S_EXECUTOR_CONFIG_SCHEMA),
                                executor_config(load_snapshot().k8s))
        assert config.success, config.errors
        executor = k8s_job_executor.executor_creation_fn(InitExecutorContext(
            job=recon, executor_def=k8s_job_executor, executor_config=config.value, instance=instance))
        handler = executor._step_handler  # noqa: SLF001
        handler._api_client.batch_api = batch_api = mock.MagicMock()  # noqa: SLF001
        run = create_run_for_test(instance, job_name="gpu_probe_job", job_code_origin=origin)
        plan = create_execution_plan(recon)
        plan_context = PlanOrchestrationContext(
            plan_data=PlanData(job=recon, dagster_run=run, instance=instance, execution_plan=plan,
                               raise_on_error=True, retry_mode=RetryMode.DISABLED),
            log_manager=create_context_free_log_manager(instance, run), executor=executor, output_capture=None)
        args = ExecuteStepArgs(origin, run.run_id, ["generations"])
        list(handler.launch_step(StepHandlerContext(instance, plan_context, plan.steps, args)))

    ((_, _, kwargs),) = [c for c in batch_api.method_calls if c[0] == "create_namespaced_job"]
    assert kwargs["namespace"] == render.NAMESPACE
    posted = render.to_dict(kwargs["body"])
    expected = render.to_dict(render.step_job("generations", gpu_op_tags(load_snapshot(), "generation"), values=values,
                                              run_id=run.run_id, job_name="gpu_probe_job",
                                              code_location=None))  # a test run has no code server origin
    _validate(posted)
    # The handler also passes the serialized step (compressed) in env; everything else must be identical.
    posted_env = _container(posted)["env"]
    assert any(e["name"] == "DAGSTER_COMPRESSED_EXECUTE_STEP_ARGS" for e in posted_env)
    _container(posted)["env"] = [e for e in posted_env if e["name"] != "DAGSTER_COMPRESSED_EXECUTE_STEP_ARGS"]
    posted["metadata"]["namespace"] = render.NAMESPACE  # the handler passes the namespace beside the body
    assert posted == expected


# --- the lead's real GPU assets ---------------------------------------------------------------------------------

def _shipped_definitions() -> dg.Definitions:
    """The definitions built from the configs loaded now (the shipped ones: no fixture here points elsewhere), not the
    module's `defs`, which holds whatever config was set when some earlier test first imported it."""
    from bioreview_assets.definitions import build_definitions

    return build_definitions(load_snapshot())


def _asset_tags(name: str) -> dict:
    defs = _shipped_definitions()
    keys = {key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys()}
    if name not in keys:
        pytest.skip(f"asset {name!r} is not in bioreview_assets.definitions yet (its stage has not landed)")
    return dict(defs.get_assets_def(name).op.tags)


@pytest.mark.parametrize("asset_name", sorted(GPU_STEPS))
def test_gpu_asset_carries_the_gpu_op_tags_pool_and_retry(asset_name, monkeypatch):
    from bioreview_assets.orchestration.gpu_tags import gpu_asset_kwargs

    defs = _shipped_definitions()
    tags = _asset_tags(asset_name)
    if asset_name == "scores":  # the shipped matchers embed on CPU: scores gets no GPU pod (next test)
        assert K8S_CONFIG_TAG not in tags and defs.get_assets_def(asset_name).op.pool is None
        tags = {K8S_CONFIG_TAG: gpu_op_tags(load_snapshot(), GPU_STEPS[asset_name])[K8S_CONFIG_TAG]}
        assets_def = None
    expected = gpu_op_tags(load_snapshot(), GPU_STEPS[asset_name])[K8S_CONFIG_TAG]
    actual = tags[K8S_CONFIG_TAG]
    assert (json.loads(actual) if isinstance(actual, str) else actual) == expected
    if asset_name != "scores":
        assets_def = defs.get_assets_def(asset_name)
        assert assets_def.op.pool == GPU_POOL
        # Locally a failure is a bug, surfaced at once; on Kubernetes (preempted pods) the step is retried.
        assert assets_def.op.retry_policy is None
    monkeypatch.setenv("BIOREVIEW_ENV", "k8s")
    assert gpu_asset_kwargs(load_snapshot(), GPU_STEPS[asset_name])["retry_policy"] == k8s_execution.GPU_RETRY
    job = render.to_dict(render.step_job(asset_name, tags))
    _validate(job)
    assert _container(job)["resources"]["limits"]["nvidia.com/gpu"] == "1"


def test_embedding_steps_get_a_gpu_pod_only_when_a_scored_matcher_asks_for_cuda(tmp_path, monkeypatch):
    import shutil

    from bioreview_assets.orchestration.gpu_tags import embedding_asset_kwargs

    assert embedding_asset_kwargs(load_snapshot()) == {}  # shipped configs: MiniLM on CPU
    configs = tmp_path / "configs"
    shutil.copytree(REPO_ROOT / "configs", configs)
    minilm = configs / "matchers" / "minilm.yaml"
    minilm.write_text(minilm.read_text().replace("kind: sentence_transformers", "kind: sentence_transformers\n  device: cuda"))
    monkeypatch.setenv("BIOREVIEW_CONFIG_DIR", str(configs))
    kwargs = embedding_asset_kwargs(load_snapshot())
    assert kwargs["pool"] == GPU_POOL
    assert kwargs["op_tags"] == gpu_op_tags(load_snapshot(), "embedding")
    node_selector = kwargs["op_tags"][K8S_CONFIG_TAG]["pod_spec_config"]["node_selector"]
    assert node_selector == {"nvidia.com/gpu.present": "true"}  # any GPU, not an A100


# --- Helm values, cluster objects, secrets, the example --------------------------------------------------------

def test_helm_values_wire_k8s_env_postgres_launcher_monitoring_and_gpu_pool():
    values = render.helm_values()
    dep = render.user_deployment(values)
    assert {"name": "BIOREVIEW_ENV", "value": "k8s"} in dep["env"]
    assert dep["dagsterApiGrpcArgs"] == ["-m", "bioreview_assets.definitions"]
    assert values["postgresql"]["enabled"] is True and values["generatePostgresqlPasswordSecret"] is False
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert values["dagsterDaemon"]["runMonitoring"]["enabled"] is True
    assert values["dagsterDaemon"]["runCoordinator"]["type"] == "QueuedRunCoordinator"
    assert values["concurrency"]["enabled"] and values["concurrency"]["pools"]["defaultLimit"] >= 1
    assert dep["image"]["repository"] + ":" + dep["image"]["tag"] == k8s_execution.image(load_snapshot().k8s, "cpu")
    env = {e["name"]: e["value"] for e in dep["env"]}
    assert env["BIOREVIEW_GPU_IMAGE"] == k8s_execution.image(load_snapshot().k8s, "gpu")


def test_chart_objects_and_cluster_objects_are_valid_kubernetes():
    objects = render.user_code_objects() + render.cluster_objects()
    assert {o["kind"] for o in objects} == {"Deployment", "Service", "ServiceAccount", "ConfigMap",
                                             "PersistentVolumeClaim"}
    for obj in objects:
        _validate(obj)
    names = {o["metadata"]["name"] for o in objects}
    config = load_snapshot().k8s
    # Everything the pods reference by name is created by k8s/bioreview-objects.yaml (secrets: by kubectl).
    assert {config.gpu.model_cache.claim_name, config.executor.service_account_name, "bioreview-benchmark",
            *config.executor.env_config_maps} <= names


def test_no_secret_value_reaches_any_manifest_or_file(monkeypatch):
    for key, value in FAKE_SECRETS.items():
        monkeypatch.setenv(key, value)
    rendered = [render.step_job(op, gpu_op_tags(load_snapshot(), kind)) for op, kind in GPU_STEPS.items()]
    rendered = [render.to_dict(job) for job in rendered] + render.user_code_objects() + render.cluster_objects()
    snapshot = load_snapshot()
    blob = (json.dumps(rendered) + json.dumps(executor_config(snapshot.k8s))
            + json.dumps(gpu_op_tags(snapshot, "generation")))
    files = [render.VALUES_FILE, EXAMPLE, render.K8S_DIR / "examples" / "pytorchjob-adapter.yaml",
             loader.configs_dir() / "k8s.yaml"]
    files += [render.K8S_DIR / name for name in ("bioreview-objects.yaml", "Dockerfile", "Dockerfile.gpu", "README.md")]
    for path in files:
        blob += path.read_text()
    leaked = [key for key, value in FAKE_SECRETS.items() if value in blob]
    assert not leaked, f"secret values of {leaked} reached a manifest"
    # Credentials only ever come by reference: a secret-looking variable never carries a literal value.
    for obj in rendered:
        for container in obj.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
            for env in container.get("env", []):
                if re.search(r"API_KEY|ACCESS_KEY|SECRET|PASSWORD|TOKEN$", env["name"]):
                    assert "valueFrom" in env and "value" not in env, env


def test_example_manifest_matches_the_generations_step(generations_job):
    """k8s/examples/generations-job.yaml is what the closing note shows: regenerate with BIOREVIEW_UPDATE_EXAMPLES=1."""
    text = "# The Job the k8s executor creates for the `generations` step (bioreview_assets_tests/k8s/render.py).\n"
    text += yaml.safe_dump(generations_job, sort_keys=False)
    if os.environ.get("BIOREVIEW_UPDATE_EXAMPLES"):
        EXAMPLE.parent.mkdir(exist_ok=True)
        EXAMPLE.write_text(text)
    assert EXAMPLE.exists(), "run with BIOREVIEW_UPDATE_EXAMPLES=1 to write k8s/examples/generations-job.yaml"
    assert EXAMPLE.read_text() == text, "k8s/examples/generations-job.yaml is stale: BIOREVIEW_UPDATE_EXAMPLES=1"
    _validate(yaml.safe_load(EXAMPLE.read_text()))
