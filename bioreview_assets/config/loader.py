"""The one reader of configs/: YAML files validated into the models of config/model.py and config/project.py."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from bioreview_assets.config import env
from bioreview_assets.config.model import ModelConfig
from bioreview_assets.config.project import EnsembleConfig, ProjectConfig, SweepConfig
from bioreview_assets.core.gt_filter import CorpusConfig
from bioreview_assets.core.matcher_spec import MatcherSpec
from bioreview_assets.core.postprocess import PostprocessPolicy

REPO_ROOT = env.REPO_ROOT


class ConfigError(ValueError):
    """A config file that does not make sense: names the file, the key and what is allowed (the CLI prints it
    without a traceback)."""


def configs_dir() -> Path:
    """Folder holding the YAML configs (BIOREVIEW_CONFIG_DIR overrides the repo's configs/)."""
    return env.config_dir()


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise FileNotFoundError(f"config file {path} does not exist")
    with path.open() as handle:
        data = yaml.safe_load(handle) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping at top level")
    return data


def validated(model: type[BaseModel], data: dict[str, Any], path: Path) -> Any:
    """`data` as `model`, or a ConfigError naming the file, each wrong key, what it holds and what is allowed."""
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise ConfigError(f"invalid config {path}: " + "; ".join(_describe(e) for e in err.errors())) from None


def _describe(error: dict) -> str:
    # pydantic's messages say what is allowed ("Input should be greater than or equal to 1", "Input should be
    # 'nf4' or 'fp8'"); a union of int and "auto" gives one error per branch: the key and value once.
    key = ".".join(str(part) for part in error["loc"] if not str(part).startswith(("function-after", "literal[")))
    key = key.replace(".constrained-int", "").replace(".int", "")
    message = error["msg"].removeprefix("Value error, ")
    shown = "" if error["type"] in ("missing", "value_error") else f" (got {error.get('input')!r})"
    return f"{key or '<file>'}: {message}{shown}"


def _load_named(folder: str, name: str, model: type[BaseModel]) -> Any:
    path = configs_dir() / folder / f"{name}.yaml"
    data = _read_yaml(path)
    return validated(model, {"name": name, **data} if "name" in model.model_fields else data, path)


def _apply_dotted(data: dict[str, Any], dotted: dict[str, Any]) -> dict[str, Any]:
    out = json.loads(json.dumps(data))
    for key, value in dotted.items():
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    # The reference's sweep manager kept alpha = 2r when r was overridden; we keep that rule explicit.
    if "training.lora.r" in dotted and "training.lora.alpha" not in dotted:
        out["training"]["lora"]["alpha"] = 2 * dotted["training.lora.r"]
    return out


@functools.lru_cache(maxsize=None)
def load_project() -> ProjectConfig:
    """The project config (configs/project.yaml)."""
    path = configs_dir() / "project.yaml"
    return validated(ProjectConfig, _read_yaml(path), path)


@functools.lru_cache(maxsize=None)
def load_model(name: str) -> ModelConfig:
    """A model config; `base@tag` names a sweep variant (dotted overrides over the base model config)."""
    if "@" in name:
        base, tag = name.split("@", 1)
        for probe in load_project().probes:
            if probe.model == base and tag in {f"step{n}" for n in probe.steps}:
                path = configs_dir() / "models" / f"{base}.yaml"
                data = _read_yaml(path)
                data.setdefault("generation", {})["max_articles"] = probe.max_articles
                return validated(ModelConfig, {**data, "name": name, "probe_of": base,
                                               "probe_step": int(tag.removeprefix("step"))}, path)
        for sweep_name in load_project().sweeps:
            sweep = _load_named("sweeps", sweep_name, SweepConfig)
            if sweep.base == base and tag in sweep.variants:
                data = _read_yaml(configs_dir() / "models" / f"{base}.yaml")
                # The overrides are the sweep file's: a bad value is reported there.
                return validated(ModelConfig, {**_apply_dotted(data, sweep.variants[tag]), "name": name},
                                 configs_dir() / "sweeps" / f"{sweep_name}.yaml")
        raise KeyError(f"no sweep variant or checkpoint probe {name!r} in configs/ for base model {base!r}")
    return _load_named("models", name, ModelConfig)


@functools.lru_cache(maxsize=None)
def load_corpus(name: str) -> CorpusConfig:
    return _load_named("corpora", name, CorpusConfig)


@functools.lru_cache(maxsize=None)
def load_matcher(name: str) -> MatcherSpec:
    return _load_named("matchers", name, MatcherSpec)


@functools.lru_cache(maxsize=None)
def load_ensemble(name: str) -> EnsembleConfig:
    return _load_named("ensembles", name, EnsembleConfig)


def postprocess_policy(name: str) -> PostprocessPolicy:
    """The post-processing policy `name` of configs/project.yaml."""
    for policy in load_project().postprocess:
        if policy.name == name:
            return policy
    raise KeyError(f"no post-processing policy {name!r} in configs/project.yaml")


def eval_article_limit(model: str | None = None) -> int | None:
    """How many leading articles of an eval split are generated and scored (None = all).

    The project's eval_max_articles for every system; a checkpoint probe (`model@stepN`) uses its own smaller val
    subset on top of that. Baselines and ensembles pass no model.
    """
    limits = [load_project().eval_max_articles]
    if model is not None:
        limits.append(load_model(model).generation.max_articles)
    given = [n for n in limits if n]
    return min(given) if given else None


def all_matcher_names() -> list[str]:
    """Every matcher config in configs/matchers/ (the project's scored matchers first, in their order)."""
    scored = load_project().matchers
    return scored + sorted(p.stem for p in (configs_dir() / "matchers").glob("*.yaml") if p.stem not in scored)


def all_model_names() -> list[str]:
    """Models plus the sweep variants (`base@tag`) and checkpoint probes (`base@stepN`) they expand into."""
    project = load_project()
    names = list(project.models)
    for sweep_name in project.sweeps:
        sweep = _load_named("sweeps", sweep_name, SweepConfig)
        names += [f"{sweep.base}@{tag}" for tag in sweep.variants]
    names += [f"{probe.model}@step{step}" for probe in project.probes for step in probe.steps]
    return names


# Loaders cached in modules above this one (config/k8s.py's load_k8s_config): this module never imports them.
_CACHED_ELSEWHERE: list = []


def cached_loader(fn):
    """A config loader kept outside this module, cached like the ones here and forgotten by clear_caches()."""
    cached = functools.lru_cache(maxsize=None)(fn)
    _CACHED_ELSEWHERE.append(cached)
    return cached


def read_config(model: type[BaseModel], path: Path) -> Any:
    """The YAML file at `path` as `model` (ConfigError naming the file and the key when it does not validate)."""
    return validated(model, _read_yaml(path), path)


def clear_caches() -> None:
    """Forget loaded configs (tests switch BIOREVIEW_CONFIG_DIR)."""
    for fn in (load_project, load_model, load_corpus, load_matcher, load_ensemble, *_CACHED_ELSEWHERE):
        fn.cache_clear()
