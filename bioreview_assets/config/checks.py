"""Every config the project names, loaded and cross-checked before any work (definitions.py and the CLI call
check_configs): a bad value or an unknown name is a ConfigError naming the file, the key and what is allowed."""

from __future__ import annotations

from bioreview_assets.config import loader
from bioreview_assets.config.project import ProjectConfig
from bioreview_assets.config.systems import all_systems
from bioreview_assets.config.loader import ConfigError


def _present(folder: str) -> list[str]:
    """Names of the configs under configs/<folder>/."""
    return sorted(path.stem for path in (loader.configs_dir() / folder).glob("*.yaml"))


def check_configs() -> ProjectConfig:
    """Load and cross-check every config the project names: each model (sweep variants and probes included), its
    corpus, each matcher and ensemble (members and matcher must exist). Raises ConfigError."""
    project = loader.load_project()  # its own names (policies, splits, baselines...) are checked by its model
    where = loader.configs_dir()
    for folder, names in (("models", project.models), ("matchers", project.matchers),
                          ("ensembles", project.ensembles), ("sweeps", project.sweeps)):
        missing = [name for name in names if name not in _present(folder)]
        if missing:
            raise ConfigError(f"invalid config {where / 'project.yaml'}: {folder}: no {folder}/{missing[0]}.yaml; "
                              f"allowed: {_present(folder)}")
    for name in loader.all_model_names():
        cfg = loader.load_model(name)
        if cfg.corpus not in _present("corpora"):
            raise ConfigError(f"invalid config {where / 'models' / name.split('@')[0]}.yaml: corpus: unknown "
                              f"{cfg.corpus!r}; allowed: {_present('corpora')}")
        loader.load_corpus(cfg.corpus)
    for name in project.matchers:
        loader.load_matcher(name)
    systems = [system.name for system in all_systems() if system.kind != "ensemble"]
    for name in project.ensembles:
        ensemble = loader.load_ensemble(name)
        file = f"invalid config {where / 'ensembles' / name}.yaml"
        for key, given in (("members", ensemble.members), ("count_baseline", [ensemble.count_baseline_source()])):
            unknown = [member for member in given if member not in systems]
            if unknown:
                raise ConfigError(f"{file}: {key}: unknown system {unknown[0]!r}; allowed: {systems}")
        if ensemble.matcher is not None and ensemble.matcher not in _present("matchers"):
            raise ConfigError(f"{file}: matcher: unknown {ensemble.matcher!r}; allowed: {_present('matchers')}")
    return project
