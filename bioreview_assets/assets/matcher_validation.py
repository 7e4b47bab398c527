"""matcher_validation[matcher]: the matcher's "same concern" decision against labelled pairs (P/R/F1, curve, kappa)."""

import dagster as dg

from bioreview_assets.config.snapshot import ConfigSnapshot
from bioreview_assets.core.hashing import stable_hash
from bioreview_assets.checks.matcher_validation import VALIDATION_CHECKS, evaluate_matcher_validation
from bioreview_assets.core.diagnostics import DEFAULT_THRESHOLDS
from bioreview_assets.core.matcher_validation import validate_labelled_pairs
from bioreview_assets.store.locks import locked_partition
from bioreview_assets.orchestration.gpu_tags import embedding_asset_kwargs
from bioreview_assets.services.similarity import judge_for
from bioreview_assets.orchestration.partitions import matcher_partitions, partitioned_checks
from bioreview_assets.orchestration.resources import EmbedderResource, StorageResource
from bioreview_assets.store.labelled_pairs import labelled_pair_sources
from bioreview_assets.reporting.formatting import labelled_ci, record_table, rounded
from bioreview_assets.orchestration.ui_metadata import link


def validation_table(results: dict[str, dict]) -> str:
    rows = [{"labels": name, "pairs": r["n_pairs"], "same": r["n_same"], "F1": labelled_ci("F1", r["f1"], r["ci"]["f1"]),
             "precision": r["precision"], "recall": r["recall"], "best threshold": r["best_configured_threshold"],
             "best F1": r["best_f1"],
             "kappa": ", ".join(f"{'/'.join(a['annotators'])} {a['kappa']:.2f} ({a['n_pairs']})"
                                for a in r["agreement"]) or "-"}
            for name, r in results.items()]
    return record_table(rows, ["labels", "pairs", "same", "F1", "precision", "recall", "best threshold", "best F1",
                                "kappa"])


def build(snapshot: ConfigSnapshot) -> list[dg.AssetsDefinition]:
    """matcher_validation, partitioned by every matcher of `snapshot`."""

    @dg.asset(
        partitions_def=matcher_partitions(snapshot),
        check_specs=partitioned_checks(VALIDATION_CHECKS, matcher_partitions(snapshot)),
        **embedding_asset_kwargs(snapshot),
        group_name="scoring",
        kinds={"python"},
    )
    @locked_partition
    def matcher_validation(context: dg.AssetExecutionContext, storage: StorageResource,
                           embedders: EmbedderResource) -> dg.MaterializeResult:
        """Precision, recall and F1 of the matcher's "same concern" against labelled pairs, threshold curve, kappa."""
        return materialize_matcher_validation(snapshot, context, storage, embedders)

    return [matcher_validation]


def materialize_matcher_validation(snapshot: ConfigSnapshot, context: dg.AssetExecutionContext,
                                   storage: StorageResource, embedders: EmbedderResource) -> dg.MaterializeResult:
    matcher = context.partition_key
    project = snapshot.project
    cfg = project.matcher_validation
    spec = snapshot.matcher(matcher)
    encode, identity = (None, None) if spec.method == "lexical" else embedders.encoder(spec)
    judge = judge_for(spec) if spec.method == "llm_judge" else None
    results = {name: validate_labelled_pairs(spec, encode, pairs, DEFAULT_THRESHOLDS, project.bootstrap_n, judge=judge)
               for name, pairs in labelled_pair_sources(cfg).items()}
    store = storage.store()
    record = {"matcher": spec.identity(identity), "min_f1": cfg.min_f1, "sources": results}
    store.write_json(record, "matcher_validation", matcher, "validation.json")
    first = next(iter(results.values()))
    return dg.MaterializeResult(
        metadata={
            "f1_with_ci": dg.MetadataValue.text(labelled_ci("F1", first["f1"], first["ci"]["f1"])),
            "f1": first["f1"], "precision": first["precision"], "recall": first["recall"],
            "best_threshold": first["best_configured_threshold"], "configured_threshold": spec.threshold,
            "validation": dg.MetadataValue.md(validation_table(results)),
            "curve": dg.MetadataValue.json({name: [rounded(row) for row in r["curve"]] for name, r in results.items()}),
            "by_kind": dg.MetadataValue.json({name: rounded(r["by_kind"]) for name, r in results.items()}),
            "matcher": dg.MetadataValue.json(record["matcher"]),
            "path": link(store, "matcher_validation", matcher, "validation.json"),
        },
        data_version=dg.DataVersion(stable_hash(record)),
        check_results=evaluate_matcher_validation(results, cfg.min_f1, label=matcher),
    )
