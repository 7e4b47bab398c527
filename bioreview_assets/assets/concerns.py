"""concerns[system x split]: parsed generations under a post-processing policy, or a baseline's concerns."""

import dagster as dg

from bioreview_assets.config.snapshot import ConfigSnapshot
from bioreview_assets.core.hashing import stable_hash
from bioreview_assets.checks.systems import CONCERNS_CHECKS, evaluate_cap
from bioreview_assets.core.baselines import CHECKLIST, baseline_concerns
from bioreview_assets.core.parsing import PARSER_VERSION
from bioreview_assets.core.matcher_spec import MatcherSpec
from bioreview_assets.core.postprocess import STEPS, PostprocessPolicy, apply_policy
from bioreview_assets.orchestration.partitions import (
    partitioned_checks,
    SPLIT_DIM,
    SYSTEM_DIM,
    keys,
    model_systems_partitions,
    model_to_system_mapping,
    split_to_system_split,
)
from bioreview_assets.orchestration.resources import EmbedderResource, StorageResource
from bioreview_assets.store.concern_table import write_concerns
from bioreview_assets.store.generation_table import generated_concerns
from bioreview_assets.store.layout import read_articles, read_eval_articles
from bioreview_assets.store.locks import locked_partition


def baseline_kwargs(snapshot: ConfigSnapshot, name: str, embedders: EmbedderResource) -> dict:
    """The checklist clusters with the default matcher's embedder at its threshold, capped like every system."""
    if name != CHECKLIST:
        return {}
    project = snapshot.project
    spec = snapshot.default_matcher()
    encode, identity = embedders.encoder(spec)
    return {"encode": encode, "threshold": spec.effective_threshold, "matcher": spec.identity(identity),
            "cap": snapshot.postprocess_policy(project.default_postprocess).cap}


def similarity_for_policy(policy: PostprocessPolicy, embedders: EmbedderResource, matcher: MatcherSpec):
    """Embedding similarity of `matcher` (the default one) for semantic dedup (only built when the policy asks)."""
    if policy.semantic_dedup_threshold is None:
        return None
    return embedders.similarity(matcher)


def build(snapshot: ConfigSnapshot) -> list[dg.AssetsDefinition]:
    """concerns, partitioned by the model and baseline systems of `snapshot`."""

    @dg.asset(
        partitions_def=model_systems_partitions(snapshot),
        deps=[
            dg.AssetDep("generations", partition_mapping=model_to_system_mapping(snapshot)),
            dg.AssetDep("benchmark_split", partition_mapping=split_to_system_split()),
        ],
        check_specs=partitioned_checks(CONCERNS_CHECKS, model_systems_partitions(snapshot)),
        group_name="systems",
        kinds={"python", "parquet"},
        # A parser change shows every concerns partition stale in the UI; re-materialising re-parses the stored raw
        # text.
        code_version=f"parser-{PARSER_VERSION}",
    )
    @locked_partition
    def concerns(
        context: dg.AssetExecutionContext, storage: StorageResource, embedders: EmbedderResource
    ) -> dg.MaterializeResult:
        """Concerns of one system on one split: a model's parsed output under a policy, or a baseline's."""
        return materialize_concerns(snapshot, context, storage, embedders)

    return [concerns]


def materialize_concerns(snapshot: ConfigSnapshot, context: dg.AssetExecutionContext, storage: StorageResource,
                         embedders: EmbedderResource) -> dg.MaterializeResult:
    part = keys(context)
    system, split = snapshot.system(part[SYSTEM_DIM]), part[SPLIT_DIM]
    store = storage.store()
    articles = read_eval_articles(store, split, snapshot.eval_article_limit(system.model))
    sources = {a.id: a.source for a in articles}
    removed = dict.fromkeys(STEPS, 0)
    if system.kind == "baseline":
        out = baseline_concerns(system.name, articles, lambda: read_articles(store, "train"),
                                **baseline_kwargs(snapshot, system.name, embedders))
        by_article, sources = out.by_unit, out.sources
        meta = {"kind": "baseline", "baseline": system.name, **out.meta}
        cap = out.meta.get("cap")  # BM25 and the reviewers emit what they emit; the checklist is capped
    else:
        policy = snapshot.postprocess_policy(system.policy)
        cap = policy.cap
        similarity = similarity_for_policy(policy, embedders, snapshot.default_matcher())
        parsed_by_article, lineage = generated_concerns(store, system.model, split)
        by_article = {}
        for article_id, parsed in parsed_by_article.items():
            kept, counts = apply_policy(parsed, policy, similarity)
            by_article[article_id] = kept
            for step, n in counts.items():
                removed[step] += n
        meta = {"kind": "model", "model": system.model, "policy": policy.__dict__, "lineage": lineage}
    n_concerns = sum(len(v) for v in by_article.values())
    meta.update({"system": system.name, "split": split, "n_concerns": n_concerns, "removed": removed})
    path, content_hash = write_concerns(store, system.name, split, by_article, sources, meta)
    per_source: dict[str, list[int]] = {}
    for article_id, kept in by_article.items():
        per_source.setdefault(sources[article_id], []).append(len(kept))
    return dg.MaterializeResult(
        metadata={
            "system": system.name,
            "articles_covered": len(by_article),
            "articles_in_split": len(articles),
            "n_concerns": n_concerns,
            "concerns_per_article": round(n_concerns / max(len(by_article), 1), 2),
            "removed": dg.MetadataValue.json(removed),
            "concerns_per_article_by_source": dg.MetadataValue.json(
                {src: round(sum(v) / len(v), 2) for src, v in sorted(per_source.items())}
            ),
            "path": path,
            **({"lineage": dg.MetadataValue.json(meta["lineage"])} if "lineage" in meta else {}),
        },
        # Content plus parser version: a new parser is a new version of these concerns, with its lineage above.
        data_version=dg.DataVersion(stable_hash([content_hash, PARSER_VERSION])),
        check_results=evaluate_cap(by_article, cap, label=f"{system.name} / {split}"),
    )
