"""The one reader of configs/: YAML files validated into the models of config/model.py, project.py and k8s.py,
cross-checked (check_configs), and gathered into one ConfigSnapshot (load_snapshot).

Only the entry points (cli/) and definitions.py call load_snapshot; they pass its parts down, and no module below
them imports this one (bioreview_assets_tests/test_import_cycles.py). A snapshot is remembered by the state of the
files it was read from, so a test pointing BIOREVIEW_CONFIG_DIR elsewhere (or editing a file) just loads again."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from bioreview_assets.config import env
from bioreview_assets.config.k8s import K8sConfig
from bioreview_assets.config.model import ModelConfig
from bioreview_assets.config.project import EnsembleConfig, ProjectConfig, SweepConfig
from bioreview_assets.config.snapshot import ConfigSnapshot
from bioreview_assets.config.systems import all_systems
from bioreview_assets.core.gt_filter import CorpusConfig
from bioreview_assets.core.matcher_spec import MatcherSpec

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
    try:
        with path.open() as handle:
            data = yaml.safe_load(handle) or {}
    except yaml.YAMLError as err:  # the parser's message holds the line and column: one line of it, no traceback
        raise ConfigError(f"invalid config {path}: not valid YAML: {' '.join(str(err).split())}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"invalid config {path}: expected a mapping of keys at the top level, not a "
                          f"{'list' if isinstance(data, list) else type(data).__name__}")
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


def load_project() -> ProjectConfig:
    """The project config (configs/project.yaml)."""
    path = configs_dir() / "project.yaml"
    return validated(ProjectConfig, _read_yaml(path), path)


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


def load_corpus(name: str) -> CorpusConfig:
    return _load_named("corpora", name, CorpusConfig)


def load_matcher(name: str) -> MatcherSpec:
    return _load_named("matchers", name, MatcherSpec)


def load_ensemble(name: str) -> EnsembleConfig:
    return _load_named("ensembles", name, EnsembleConfig)


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


def read_config(model: type[BaseModel], path: Path) -> Any:
    """The YAML file at `path` as `model` (ConfigError naming the file and the key when it does not validate)."""
    return validated(model, _read_yaml(path), path)


def load_k8s_config() -> K8sConfig:
    """The Kubernetes config (configs/k8s.yaml, or BIOREVIEW_CONFIG_DIR's)."""
    return read_config(K8sConfig, configs_dir() / "k8s.yaml")


# Cross-checks: every config the project names, loaded and checked before any work (load_snapshot runs them), so a
# bad value or an unknown name is a ConfigError naming the file, the key and what is allowed.

def _present(folder: str) -> list[str]:
    """Names of the configs under configs/<folder>/."""
    return sorted(path.stem for path in (configs_dir() / folder).glob("*.yaml"))


def check_configs() -> ProjectConfig:
    """Load and cross-check every config the project names: each model (sweep variants and probes included), its
    corpus, each matcher and ensemble (members and matcher must exist). Raises ConfigError."""
    project = load_project()  # its own names (policies, splits, baselines...) are checked by its model
    where = configs_dir()
    for folder, names in (("models", project.models), ("matchers", project.matchers),
                          ("ensembles", project.ensembles), ("sweeps", project.sweeps)):
        missing = [name for name in names if name not in _present(folder)]
        if missing:
            raise ConfigError(f"invalid config {where / 'project.yaml'}: {folder}: no {folder}/{missing[0]}.yaml; "
                              f"allowed: {_present(folder)}")
    for name in all_model_names():
        cfg = load_model(name)
        if cfg.corpus not in _present("corpora"):
            raise ConfigError(f"invalid config {where / 'models' / name.split('@')[0]}.yaml: corpus: unknown "
                              f"{cfg.corpus!r}; allowed: {_present('corpora')}")
        load_corpus(cfg.corpus)
    for name in project.matchers:
        load_matcher(name)
    systems = [system.name for system in all_systems(project, all_model_names()) if system.kind != "ensemble"]
    for name in project.ensembles:
        ensemble = load_ensemble(name)
        file = f"invalid config {where / 'ensembles' / name}.yaml"
        for key, given in (("members", ensemble.members), ("count_baseline", [ensemble.count_baseline_source()])):
            unknown = [member for member in given if member not in systems]
            if unknown:
                raise ConfigError(f"{file}: {key}: unknown system {unknown[0]!r}; allowed: {systems}")
        if ensemble.matcher is not None and ensemble.matcher not in _present("matchers"):
            raise ConfigError(f"{file}: matcher: unknown {ensemble.matcher!r}; allowed: {_present('matchers')}")
    return project


# Snapshots already loaded, by the state of the files they were read from: a second load of unchanged files (every
# test builds the definitions again) costs a stat per file instead of a fresh parse and validation. Any edit changes
# the key, so nothing here ever needs clearing.
_LOADED: dict[tuple, ConfigSnapshot] = {}


def _files_state(root: Path) -> tuple:
    return (str(root), *sorted((str(path), path.stat().st_mtime_ns, path.stat().st_size)
                               for path in root.rglob("*.yaml")))


def load_snapshot() -> ConfigSnapshot:
    """Load and cross-check every config under the config folder (BIOREVIEW_CONFIG_DIR or configs/) into a snapshot;
    raises ConfigError naming the file and key of a bad one."""
    key = _files_state(configs_dir())
    if key not in _LOADED:
        _LOADED[key] = _read_snapshot()
    return _LOADED[key]


def _read_snapshot() -> ConfigSnapshot:
    project = check_configs()
    models = {name: load_model(name) for name in all_model_names()}
    return ConfigSnapshot(
        project=project,
        models=models,
        corpora={cfg.corpus: load_corpus(cfg.corpus) for cfg in models.values()},
        matchers={name: load_matcher(name) for name in all_matcher_names()},
        ensembles={name: load_ensemble(name) for name in project.ensembles},
        k8s=load_k8s_config(),
    )
