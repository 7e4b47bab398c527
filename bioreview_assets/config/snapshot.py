"""ConfigSnapshot: every config the project names, loaded and cross-checked once, then passed down as values.

The entry points and the definitions load one snapshot (config/loader.py's load_snapshot) and hand its typed
parts (a ModelConfig, a MatcherSpec, the ProjectConfig) to the layers below, which never look a name up themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping

from bioreview_assets.config.k8s import K8sConfig
from bioreview_assets.config.model import ModelConfig
from bioreview_assets.config.project import EnsembleConfig, ProjectConfig
from bioreview_assets.config.systems import System, all_systems
from bioreview_assets.core.gt_filter import CorpusConfig
from bioreview_assets.core.matcher_spec import MatcherSpec
from bioreview_assets.core.postprocess import PostprocessPolicy


def _named(kind: str, table: Mapping, name: str):
    try:
        return table[name]
    except KeyError:
        raise KeyError(f"no {kind} {name!r} in the loaded configs (known: {sorted(table)})") from None


@dataclass(frozen=True)
class ConfigSnapshot:
    """The project's configs as one immutable value (mappings are read-only views, models are validated)."""

    project: ProjectConfig
    models: Mapping[str, ModelConfig]  # every model partition: models, sweep variants, checkpoint probes, in order
    corpora: Mapping[str, CorpusConfig]  # the corpora the models name
    matchers: Mapping[str, MatcherSpec]  # every matcher file, the scored ones first
    ensembles: Mapping[str, EnsembleConfig]
    k8s: K8sConfig  # configs/k8s.yaml: images, executor and GPU pod shapes

    def __post_init__(self):
        for field in ("models", "corpora", "matchers", "ensembles"):
            object.__setattr__(self, field, MappingProxyType(dict(getattr(self, field))))

    def model(self, name: str) -> ModelConfig:
        return _named("model", self.models, name)

    def corpus(self, name: str) -> CorpusConfig:
        return _named("corpus", self.corpora, name)

    def matcher(self, name: str) -> MatcherSpec:
        return _named("matcher", self.matchers, name)

    def ensemble(self, name: str) -> EnsembleConfig:
        return _named("ensemble", self.ensembles, name)

    @property
    def model_names(self) -> list[str]:
        return list(self.models)

    @property
    def matcher_names(self) -> list[str]:
        return list(self.matchers)

    def scored_matchers(self) -> list[MatcherSpec]:
        """The matchers every system is scored with (project.matchers, in their order)."""
        return [self.matcher(name) for name in self.project.matchers]

    def default_matcher(self) -> MatcherSpec:
        return self.matcher(self.project.default_matcher)

    def project_models(self, names: list[str] | None = None) -> list[ModelConfig]:
        """The configs of `names` (default: the project's models, sweep variants and probes left out)."""
        return [self.model(name) for name in (self.project.models if names is None else names)]

    def project_ensembles(self) -> list[EnsembleConfig]:
        return [self.ensemble(name) for name in self.project.ensembles]

    def postprocess_policy(self, name: str) -> PostprocessPolicy:
        """The post-processing policy `name` of configs/project.yaml."""
        for policy in self.project.postprocess:
            if policy.name == name:
                return policy
        raise KeyError(f"no post-processing policy {name!r} in configs/project.yaml")

    def eval_article_limit(self, model: str | None = None) -> int | None:
        """How many leading articles of an eval split are generated and scored (None = all).

        The project's eval_max_articles for every system; a checkpoint probe (`model@stepN`) uses its own smaller val
        subset on top of that. Baselines and ensembles pass no model.
        """
        limits = [self.project.eval_max_articles]
        if model is not None:
            limits.append(self.model(model).generation.max_articles)
        given = [n for n in limits if n]
        return min(given) if given else None

    def systems(self) -> list[System]:
        """Every system the graph scores, in a stable order."""
        return all_systems(self.project, self.model_names)

    def system(self, name: str) -> System:
        for system in self.systems():
            if system.name == name:
                return system
        raise KeyError(f"unknown system {name!r}")
