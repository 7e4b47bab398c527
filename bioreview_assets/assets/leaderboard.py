"""leaderboard: every scored system x split, as markdown, JSON and PNG plots (plus breakdowns and errors)."""

import dagster as dg

from bioreview_assets.config.snapshot import ConfigSnapshot
from bioreview_assets.checks.reports import REPORT_CHECKS, evaluate_report_checks
from bioreview_assets.reporting.report import write_report
from bioreview_assets.store.layout import REPORT_DIR
from bioreview_assets.reporting.formatting import frame_table as markdown
from bioreview_assets.reporting.tables import headline
from bioreview_assets.reporting.verdict import fine_tuned_pairs, verdict_lines
from bioreview_assets.orchestration.resources import StorageResource
from bioreview_assets.orchestration.ui_metadata import GLOSSARY, glossary, link, png_markdown, table_metadata

DESCRIPTION = (
    "Leaderboard of all scored systems and splits with null baselines, and the report's tables in its metadata: "
    "verdict, headline per split (F1 with its 95% CI; `reviewers` is the human ceiling, `checklist` a paper-agnostic "
    "list), paired differences (bootstrap over the same articles), per source, per category, failure modes with example "
    "outputs and zero-recall articles. The full report (markdown, JSON, PNG) is linked under `report`.\n\n" + GLOSSARY
)


def build(snapshot: ConfigSnapshot) -> list[dg.AssetsDefinition]:
    """leaderboard, reporting the systems of `snapshot`."""

    @dg.asset(deps=["scores"], check_specs=REPORT_CHECKS, group_name="reports", kinds={"python", "markdown"},
              description=DESCRIPTION)
    def leaderboard(context: dg.AssetExecutionContext, storage: StorageResource) -> dg.MaterializeResult:
        """Leaderboard of every scored system and split, with the report's tables and plots."""
        return materialize_leaderboard(snapshot, context, storage)

    return [leaderboard]


def materialize_leaderboard(snapshot: ConfigSnapshot, context: dg.AssetExecutionContext,
                            storage: StorageResource) -> dg.MaterializeResult:
    store = storage.store()
    project = snapshot.project
    models = snapshot.project_models()
    report = write_report(store, project, models, snapshot.project_ensembles())
    board = report.leaderboard
    splits = board["split"].unique(maintain_order=True).to_list()
    verdict = verdict_lines(board, fine_tuned_pairs(models), project.baselines, splits, report.paired)
    metadata = {
        "systems": board["system"].n_unique(),
        "rows": board.height,
        **table_metadata(board),
        "verdict": dg.MetadataValue.md("\n".join(f"* {line}" for line in verdict) or "_no fine-tuned pair scored_"),
    }
    for split in splits:
        metadata[f"headline_{split}"] = dg.MetadataValue.md(markdown(headline(board, split)))
    metadata.update({
        "leaderboard": dg.MetadataValue.md(markdown(board)),
        "paired_differences": dg.MetadataValue.md(markdown(report.paired)),
        "per_source": dg.MetadataValue.md(markdown(report.per_source)),
        "per_category": dg.MetadataValue.md(markdown(report.per_category)),
        "failure_modes": dg.MetadataValue.md(markdown(report.failure_modes)),
        "failure_examples": dg.MetadataValue.md(markdown(report.failure_examples)),
        "zero_recall_articles": dg.MetadataValue.md(markdown(report.zero_recall)),
        "glossary": glossary(),
        "report": link(store, *REPORT_DIR, "leaderboard.md"),
        "report_json": link(store, *REPORT_DIR, "leaderboard.json"),
    })
    for split in sorted(splits):
        png = store.read_bytes(*REPORT_DIR, f"leaderboard_{split}.png")
        metadata[f"plot_{split}"] = png_markdown(png, f"leaderboard {split}")
        metadata[f"plot_{split}_file"] = link(store, *REPORT_DIR, f"leaderboard_{split}.png")
    context.log.info("\n" + markdown(headline(board, project.eval_splits[0])))
    fine_tuned = {s.name: snapshot.model(s.model).base_system for s in snapshot.systems()
                  if s.kind == "model" and snapshot.model(s.model).finetune}
    return dg.MaterializeResult(metadata=metadata,
                                check_results=evaluate_report_checks(board, project.gate, fine_tuned))
