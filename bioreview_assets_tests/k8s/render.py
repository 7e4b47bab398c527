"""What Kubernetes would receive, built offline: a step's Job with dagster_k8s's own builders, and the objects the
Dagster Helm chart renders from k8s/values-dagster.yaml for our code location (the parts our values decide)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import kubernetes
import yaml
from dagster_k8s import DagsterK8sJobConfig, construct_dagster_k8s_job
from dagster_k8s.container_context import K8sContainerContext
from dagster_k8s.job import UserDefinedDagsterK8sConfig, get_k8s_job_name, get_user_defined_k8s_config

from bioreview_assets.orchestration.k8s_execution import executor_config
from bioreview_assets.config.loader import REPO_ROOT
from bioreview_assets.config.loader import load_snapshot

K8S_DIR = REPO_ROOT / "k8s"
VALUES_FILE = K8S_DIR / "values-dagster.yaml"
RELEASE, NAMESPACE, CODE_LOCATION = "dagster", "bioreview", "bioreview"
EXAMPLE_RUN_ID = "00000000-0000-4000-8000-000000000000"
STEP_ARGS = ["dagster", "api", "execute_step"]  # what K8sStepHandler passes (the step itself travels in env)


def helm_values(path: Path = VALUES_FILE) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def to_dict(obj: Any) -> dict[str, Any]:
    """A kubernetes client model as the JSON/YAML the API server receives (camelCase, no nulls)."""
    return kubernetes.client.ApiClient().sanitize_for_serialization(obj)


def _names(refs: list[dict[str, str]] | None) -> list[str]:
    return [ref["name"] for ref in refs or [] if ref.get("name")]


def _snake_keys(config: dict[str, Any]) -> dict[str, Any]:
    """runK8sConfig's camelCase top-level keys, as the chart writes them into dagster.yaml (run_k8s_config)."""
    return {"".join("_" + c.lower() if c.isupper() else c for c in key): value for key, value in config.items()}


def user_deployment(values: dict[str, Any]) -> dict[str, Any]:
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    return deployment


def run_launcher_config(values: dict[str, Any]) -> dict[str, Any]:
    """The K8sRunLauncher config the chart writes into the instance's dagster.yaml for our values."""
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    return {
        "job_namespace": NAMESPACE,
        "load_incluster_config": launcher["loadInclusterConfig"],
        "image_pull_policy": launcher["imagePullPolicy"],
        "service_account_name": RELEASE,
        "dagster_home": values.get("dagsterHome", "/opt/dagster/dagster_home"),
        "instance_config_map": f"{RELEASE}-instance",
        "postgres_password_secret": values["global"]["postgresqlSecretName"],
        "env_config_maps": [f"{RELEASE}-pipeline-env", *_names(launcher.get("envConfigMaps"))],
        "env_secrets": _names(launcher.get("envSecrets")),
        "run_k8s_config": _snake_keys(launcher.get("runK8sConfig", {})),
    }


def code_location_container_context(values: dict[str, Any]) -> dict[str, Any]:
    """What the chart hands runs of our code location when includeConfigInLaunchedRuns is on."""
    dep = user_deployment(values)
    assert dep["includeConfigInLaunchedRuns"]["enabled"], "runs must inherit the code location's env and volumes"
    k8s = {
        "image_pull_policy": dep["image"]["pullPolicy"],
        "env_config_maps": [f"{RELEASE}-{dep['name']}-user-env", *_names(dep.get("envConfigMaps"))],
        "env_secrets": _names(dep.get("envSecrets")),
        "volume_mounts": dep.get("volumeMounts", []),
        "volumes": dep.get("volumes", []),
        "resources": dep.get("resources", {}),
        "namespace": NAMESPACE,
        "service_account_name": f"{RELEASE}-user-deployments",
        "env": dep.get("env", []),
        "run_k8s_config": {"pod_spec_config": {"automount_service_account_token": True}},
    }
    return {"k8s": {key: value for key, value in k8s.items() if value}}


def _launcher_context(launcher: dict[str, Any]) -> K8sContainerContext:
    return K8sContainerContext(
        image_pull_policy=launcher["image_pull_policy"],
        service_account_name=launcher["service_account_name"],
        env_config_maps=launcher["env_config_maps"],
        env_secrets=launcher["env_secrets"],
        namespace=launcher["job_namespace"],
        run_k8s_config=UserDefinedDagsterK8sConfig.from_dict(launcher["run_k8s_config"]),
    )


def _executor_context(executor: dict[str, Any]) -> K8sContainerContext:
    """The container context k8s_job_executor builds from its config (same fields, same order of precedence)."""
    return K8sContainerContext(
        image_pull_policy=executor.get("image_pull_policy"),
        image_pull_secrets=executor.get("image_pull_secrets"),
        service_account_name=executor.get("service_account_name"),
        env_config_maps=executor.get("env_config_maps"),
        env_secrets=executor.get("env_secrets"),
        env_vars=executor.get("env_vars"),
        volume_mounts=executor.get("volume_mounts"),
        volumes=executor.get("volumes"),
        labels=executor.get("labels"),
        namespace=executor.get("job_namespace"),
        resources=executor.get("resources"),
        run_k8s_config=UserDefinedDagsterK8sConfig.from_dict(executor.get("step_k8s_config", {})),
    )


def step_job(
    op_name: str,
    op_tags: dict[str, Any],
    *,
    values: dict[str, Any] | None = None,
    executor: dict[str, Any] | None = None,
    run_id: str = EXAMPLE_RUN_ID,
    job_name: str = "__ASSET_JOB",
    code_location: str | None = CODE_LOCATION,  # labelled when the run came from a code server (as in the chart)
) -> kubernetes.client.V1Job:
    """The Job K8sStepHandler.launch_step creates for a step: launcher + code location, executor, op tag, per-step."""
    values = values if values is not None else helm_values()
    executor = executor if executor is not None else executor_config(load_snapshot().k8s)
    launcher = run_launcher_config(values)
    tags = {key: value if isinstance(value, str) else json.dumps(value) for key, value in op_tags.items()}
    context = (
        _launcher_context(launcher)
        .merge(K8sContainerContext.create_from_config(code_location_container_context(values)))
        .merge(_executor_context(executor))
        .merge(K8sContainerContext(run_k8s_config=get_user_defined_k8s_config(tags)))
        .merge(
            K8sContainerContext(
                run_k8s_config=UserDefinedDagsterK8sConfig.from_dict(
                    executor.get("per_step_k8s_config", {}).get(op_name, {})
                )
            )
        )
    )
    job_config = DagsterK8sJobConfig(
        job_image=executor["job_image"],
        dagster_home=launcher["dagster_home"],
        instance_config_map=launcher["instance_config_map"],
        postgres_password_secret=launcher["postgres_password_secret"],
    )
    name = f"dagster-step-{get_k8s_job_name(run_id, op_name)}"
    job = construct_dagster_k8s_job(
        job_config=job_config,
        args=STEP_ARGS,
        job_name=name,
        pod_name=name,
        component="step_worker",
        user_defined_k8s_config=context.run_k8s_config,
        labels={
            "dagster/job": job_name,
            "dagster/op": op_name,
            "dagster/run-id": run_id,
            **({"dagster/code-location": code_location} if code_location else {}),
        },
        env_vars=[
            {"name": "DAGSTER_RUN_JOB_NAME", "value": job_name},
            {"name": "DAGSTER_RUN_STEP_KEY", "value": op_name},
        ],
    )
    job.metadata.namespace = context.namespace
    return job


def user_code_objects(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The code location's Deployment and Service, as the chart's dagster-user-deployments templates shape them."""
    values = values if values is not None else helm_values()
    dep = user_deployment(values)
    name = f"{RELEASE}-dagster-user-deployments-{dep['name']}"
    labels = {"app.kubernetes.io/name": "dagster-user-deployments", "app.kubernetes.io/instance": RELEASE,
              "component": "user-deployments", "deployment": dep["name"]}
    image = f"{dep['image']['repository']}:{dep['image']['tag']}"
    port = dep["port"]
    env = [
        {"name": "DAGSTER_CURRENT_IMAGE", "value": image},
        {"name": "DAGSTER_CLI_API_GRPC_CONTAINER_CONTEXT",
         "value": json.dumps(code_location_container_context(values))},
        {"name": "DAGSTER_PG_PASSWORD", "valueFrom": {"secretKeyRef": {
            "name": values["global"]["postgresqlSecretName"], "key": "postgresql-password"}}},
        *dep.get("env", []),
    ]
    env_from = [{"configMapRef": {"name": f"{RELEASE}-{dep['name']}-user-env"}}]
    env_from += [{"configMapRef": {"name": n}} for n in _names(dep.get("envConfigMaps"))]
    env_from += [{"secretRef": {"name": n}} for n in _names(dep.get("envSecrets"))]
    health = {"exec": {"command": ["dagster", "api", "grpc-health-check", "-p", str(port)]},
              "periodSeconds": 20, "timeoutSeconds": 10}
    container = {
        "name": dep["name"],
        "image": image,
        "imagePullPolicy": dep["image"]["pullPolicy"],
        "args": ["dagster", "api", "grpc", "-h", "0.0.0.0", "-p", str(port), *dep["dagsterApiGrpcArgs"]],
        "env": env,
        "envFrom": env_from,
        "ports": [{"name": "grpc", "containerPort": port}],
        "resources": dep.get("resources", {}),
        "volumeMounts": dep.get("volumeMounts", []),
        "readinessProbe": health,
        "livenessProbe": health,
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": labels},
        "spec": {
            "replicas": dep.get("replicaCount", 1),
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"serviceAccountName": f"{RELEASE}-user-deployments", "containers": [container],
                         "volumes": dep.get("volumes", [])},
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": dep["name"], "namespace": NAMESPACE, "labels": labels},
        "spec": {"type": "ClusterIP", "selector": labels,
                 "ports": [{"name": "grpc", "port": port, "targetPort": port, "protocol": "TCP"}]},
    }
    return [deployment, service]


def cluster_objects() -> list[dict[str, Any]]:
    """k8s/bioreview-objects.yaml: service account, config map and the volume claims the pods reference."""
    return [doc for doc in yaml.safe_load_all((K8S_DIR / "bioreview-objects.yaml").read_text()) if doc]
