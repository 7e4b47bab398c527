"""Partitions: split, model, system (the systems of config/systems.py), and the mappings between them, each built
from the ConfigSnapshot the definitions are built from."""

from __future__ import annotations

import contextlib
import warnings

import dagster as dg


def _silence_beta_and_preview() -> None:
    # The multi-dimension partition mappings we rely on are marked beta; say so once here instead of at every use.
    warnings.filterwarnings("ignore", category=dg.BetaWarning)
    # Partitioned check specs (AssetCheckSpec(partitions_def=...)) are a preview in 1.13; they are what records the
    # partition of each check evaluation, so the checks page can say which system a result is for.
    warnings.filterwarnings("ignore", category=dg.PreviewWarning, message=".*partitions_def on an AssetCheckSpec.*")


_silence_beta_and_preview()


@contextlib.contextmanager
def beta_and_preview_silenced():
    """The same filters for the duration of a build, whatever filters the caller set since import (pytest resets
    them per test; the definitions are built by a function, not only at import)."""
    with warnings.catch_warnings():
        _silence_beta_and_preview()
        yield

from bioreview_assets.config.snapshot import ConfigSnapshot
from bioreview_assets.config.systems import count_baseline_name
from bioreview_assets.core.schema import SPLITS

SPLIT_DIM, MODEL_DIM, SYSTEM_DIM = "split", "model", "system"


def split_partitions() -> dg.StaticPartitionsDefinition:
    # One split set for every split dimension: Dagster maps split -> model x split only between equal definitions.
    # Which partitions are worth materialising (corpus: train/val, generation: val/test) is config, not partitioning.
    return dg.StaticPartitionsDefinition(list(SPLITS))


def model_partitions(snapshot: ConfigSnapshot) -> dg.StaticPartitionsDefinition:
    return dg.StaticPartitionsDefinition(snapshot.model_names)


def model_split_partitions(snapshot: ConfigSnapshot) -> dg.MultiPartitionsDefinition:
    return dg.MultiPartitionsDefinition({MODEL_DIM: model_partitions(snapshot), SPLIT_DIM: split_partitions()})


def matcher_partitions(snapshot: ConfigSnapshot) -> dg.StaticPartitionsDefinition:
    """Every configured matcher (configs/matchers/): matcher_validation validates each on labelled pairs."""
    return dg.StaticPartitionsDefinition(snapshot.matcher_names)


def system_partitions(snapshot: ConfigSnapshot) -> dg.StaticPartitionsDefinition:
    return dg.StaticPartitionsDefinition([system.name for system in snapshot.systems()])


def system_split_partitions(snapshot: ConfigSnapshot) -> dg.MultiPartitionsDefinition:
    return dg.MultiPartitionsDefinition({SYSTEM_DIM: system_partitions(snapshot), SPLIT_DIM: split_partitions()})


def keys(context: dg.AssetExecutionContext) -> dict[str, str]:
    """The multi-dimensional partition key of a run as {dimension: key} (single-dimension assets read
    context.partition_key directly)."""
    key = context.partition_key
    if not isinstance(key, dg.MultiPartitionKey):
        raise TypeError(f"partition key {key!r} has one dimension: read context.partition_key instead")
    return dict(key.keys_by_dimension)


def split_to_model_split() -> dg.MultiToSingleDimensionPartitionMapping:
    """benchmark_split[split] feeds every model's partition of that split."""
    return dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name=SPLIT_DIM)


def model_to_model_split() -> dg.MultiToSingleDimensionPartitionMapping:
    """A model-partitioned asset (adapter) feeds every split of that model."""
    return dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name=MODEL_DIM)


def _multi(system_names: list[str]) -> dg.MultiPartitionsDefinition:
    return dg.MultiPartitionsDefinition(
        {SYSTEM_DIM: dg.StaticPartitionsDefinition(system_names), SPLIT_DIM: split_partitions()}
    )


def model_systems_partitions(snapshot: ConfigSnapshot) -> dg.MultiPartitionsDefinition:
    """Systems whose concerns come straight from one model's generations or from a baseline."""
    return _multi([s.name for s in snapshot.systems() if s.kind != "ensemble"])


def ensemble_partitions(snapshot: ConfigSnapshot) -> dg.MultiPartitionsDefinition:
    return _multi([s.name for s in snapshot.systems() if s.kind == "ensemble"])


def _per_dimension(system_mapping: dg.PartitionMapping, upstream_system_dim: str) -> dg.MultiPartitionMapping:
    return dg.MultiPartitionMapping(
        {
            upstream_system_dim: dg.DimensionPartitionMapping(SYSTEM_DIM, system_mapping),
            SPLIT_DIM: dg.DimensionPartitionMapping(SPLIT_DIM, dg.IdentityPartitionMapping()),
        }
    )


def model_to_system_mapping(snapshot: ConfigSnapshot) -> dg.MultiPartitionMapping:
    """generations[model x split] -> concerns[system x split] of every policy of that model."""
    by_model: dict[str, set[str]] = {}
    for system in snapshot.systems():
        if system.kind == "model":
            by_model.setdefault(system.model, set()).add(system.name)
    return _per_dimension(dg.StaticPartitionMapping(by_model), MODEL_DIM)


def members_to_ensemble_mapping(snapshot: ConfigSnapshot) -> dg.MultiPartitionMapping:
    """concerns[member x split] -> ensemble_concerns[ensemble x split]."""
    by_member: dict[str, set[str]] = {}
    for name in snapshot.project.ensembles:
        cfg = snapshot.ensemble(name)
        for member in cfg.members:
            by_member.setdefault(member, set()).update({name, count_baseline_name(name)})
        by_member.setdefault(cfg.count_baseline_source(), set()).add(count_baseline_name(name))
    return _per_dimension(dg.StaticPartitionMapping(by_member), SYSTEM_DIM)


def same_system_mapping(snapshot: ConfigSnapshot, kind_filter) -> dg.MultiPartitionMapping:
    """Identity on the systems an upstream asset holds (scores reads concerns or ensemble_concerns)."""
    names = [s.name for s in snapshot.systems() if kind_filter(s)]
    return _per_dimension(dg.StaticPartitionMapping({n: n for n in names}), SYSTEM_DIM)


def split_to_system_split() -> dg.MultiToSingleDimensionPartitionMapping:
    """benchmark_split[split] feeds every system's partition of that split."""
    return dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name=SPLIT_DIM)


def partitioned_checks(specs: list[dg.AssetCheckSpec], partitions_def) -> list[dg.AssetCheckSpec]:
    """The check specs of an asset with its partitions_def, so each evaluation records its partition (Dagster 1.13:
    without it a check on a partitioned asset is unpartitioned and the checks page cannot say whose result it is)."""
    return [dg.AssetCheckSpec(s.name, asset=s.asset_key, description=s.description, blocking=s.blocking,
                              metadata=s.metadata, partitions_def=partitions_def) for s in specs]

