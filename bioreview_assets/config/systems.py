"""The system registry: every scored system (a model under a post-processing policy, an ensemble, an ensemble's
count baseline, a baseline), derived from the project config and the model names (ConfigSnapshot.systems)."""

from __future__ import annotations

from dataclasses import dataclass

from bioreview_assets.config.project import ProjectConfig

POLICY_SEPARATOR = "~"
COUNT_BASELINE = "single-at-count"


@dataclass(frozen=True)
class System:
    """A scored system: a model under a post-processing policy, an ensemble, or a baseline."""

    name: str
    kind: str  # model | ensemble | baseline
    model: str | None = None
    policy: str | None = None
    ensemble: str | None = None  # for an ensemble's count baseline: the ensemble it is compared with


def model_system_name(project: ProjectConfig, model: str, policy: str) -> str:
    return model if policy == project.default_postprocess else f"{model}{POLICY_SEPARATOR}{policy}"


def count_baseline_name(ensemble: str) -> str:
    """The system `<ensemble>~single-at-count`: one member's concerns cut to the ensemble's count per article."""
    return f"{ensemble}{POLICY_SEPARATOR}{COUNT_BASELINE}"


def all_systems(project: ProjectConfig, model_names: list[str]) -> list[System]:
    """Every system the graph scores, in a stable order (model_names: models, sweep variants and probes)."""
    systems = [
        System(model_system_name(project, model, policy.name), "model", model=model, policy=policy.name)
        for model in model_names
        for policy in project.postprocess
    ]
    for name in project.ensembles:
        systems.append(System(name, "ensemble", ensemble=name))
        # "The single model at the ensemble's concern count": so an ensemble win is not just "more concerns" (W3).
        systems.append(System(count_baseline_name(name), "ensemble", ensemble=name))
    systems += [System(name, "baseline") for name in project.baselines]
    return systems
