"""ensemble_concerns[ensemble x split]: members' concerns merged by cross-model one-to-one matching, then capped."""

import dagster as dg

from bioreview_assets.config.snapshot import ConfigSnapshot
from bioreview_assets.checks.systems import ENSEMBLE_CHECKS, evaluate_cap
from bioreview_assets.core.ensemble import merge_members
from bioreview_assets.core.postprocess import select
from bioreview_assets.orchestration.gpu_tags import embedding_asset_kwargs
from bioreview_assets.orchestration.partitions import (
    partitioned_checks,
    SPLIT_DIM,
    SYSTEM_DIM,
    ensemble_partitions,
    keys,
    members_to_ensemble_mapping,
)
from bioreview_assets.orchestration.resources import EmbedderResource, StorageResource
from bioreview_assets.store.concern_table import read_concerns, write_concerns
from bioreview_assets.store.layout import read_articles
from bioreview_assets.store.locks import locked_partition



def ensemble_description(snapshot: ConfigSnapshot) -> str:
    text = ("Union/vote of member systems' concerns (no transitive chaining), capped like a single model; or its "
            "count baseline.")
    if not snapshot.project.ensembles:
        # Zero partitions read as "0 of 0 materialised" in the UI: say that nothing is configured instead.
        text = ("**Not configured: no ensemble is listed in configs/project.yaml (`ensembles:`), so this asset has no "
                "partitions and nothing to build.** " + text)
    return text


def build(snapshot: ConfigSnapshot) -> list[dg.AssetsDefinition]:
    """ensemble_concerns, partitioned by the ensembles of `snapshot` and their count baselines."""

    @dg.asset(
        partitions_def=ensemble_partitions(snapshot),
        deps=[dg.AssetDep("concerns", partition_mapping=members_to_ensemble_mapping(snapshot))],
        check_specs=partitioned_checks(ENSEMBLE_CHECKS, ensemble_partitions(snapshot)),
        **embedding_asset_kwargs(snapshot),
        group_name="systems",
        kinds={"python", "parquet"},
        description=ensemble_description(snapshot),
        tags={"bioreview/configured": "yes" if snapshot.project.ensembles else "none"},
    )
    @locked_partition
    def ensemble_concerns(
        context: dg.AssetExecutionContext, storage: StorageResource, embedders: EmbedderResource
    ) -> dg.MaterializeResult:
        """Union/vote of members' concerns (no transitive chaining), capped like one model; or its count baseline."""
        return materialize_ensemble_concerns(snapshot, context, storage, embedders)

    return [ensemble_concerns]


def materialize_ensemble_concerns(snapshot: ConfigSnapshot, context: dg.AssetExecutionContext,
                                  storage: StorageResource, embedders: EmbedderResource) -> dg.MaterializeResult:
    part = keys(context)
    system, split = snapshot.system(part[SYSTEM_DIM]), part[SPLIT_DIM]
    name = system.ensemble
    cfg = snapshot.ensemble(name)
    store = storage.store()
    sources = {a.id: a.source for a in read_articles(store, split)}
    members = {member: read_concerns(store, member, split) for member in cfg.members}
    similarity = embedders.similarity(snapshot.matcher(cfg.matcher or snapshot.project.default_matcher))
    covered = sorted(set().union(*members.values()))
    by_article, before_cap = {}, 0
    for article_id in covered:
        merged = merge_members(
            {m: concerns.get(article_id, []) for m, concerns in members.items()},
            similarity, cfg.threshold, cfg.strategy, cfg.min_votes,
        )
        before_cap += len(merged)
        by_article[article_id] = select(merged, cfg.cap, cfg.selection)
    n_members = {m: sum(len(v) for v in c.values()) for m, c in members.items()}
    meta = {"kind": "ensemble", "config": cfg.model_dump(), "member_concerns": n_members, "after_merge": before_cap}
    if system.name != name:
        by_article = at_ensemble_count(read_concerns(store, cfg.count_baseline_source(), split), by_article)
        meta.update(kind="ensemble_count_baseline", source_system=cfg.count_baseline_source())
    n_out = sum(len(v) for v in by_article.values())
    meta["n_concerns"] = n_out
    path, content_hash = write_concerns(store, system.name, split, by_article, sources, meta,
                                        produced_by=meta.get("source_system"))
    votes = [getattr(c, "votes", 1) for v in by_article.values() for c in v]
    return dg.MaterializeResult(
        metadata={
            "members": dg.MetadataValue.json(n_members),
            "after_merge": before_cap,
            "after_cap": n_out,
            "concerns_per_article": round(n_out / max(len(by_article), 1), 2),
            "shared_by_2plus": sum(v >= 2 for v in votes),
            "path": path,
        },
        data_version=dg.DataVersion(content_hash),  # members' concerns changed -> this changes -> scores stale
        check_results=evaluate_cap(by_article, cfg.cap, label=f"{system.name} / {split}"),
    )


def at_ensemble_count(single: dict, ensemble: dict) -> dict:
    """The single system's concerns, first N per article where N is the ensemble's count for that article."""
    return {aid: single.get(aid, [])[: len(kept)] for aid, kept in ensemble.items()}
