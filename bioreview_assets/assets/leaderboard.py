"""leaderboard: every scored system x split, as markdown, JSON and PNG plots (plus breakdowns and errors)."""

import dagster as dg
import polars as pl

from bioreview_assets import settings
from bioreview_assets.checks.reports import REPORT_CHECKS, evaluate_report_checks
from bioreview_assets.reporting.plots import png_markdown
from bioreview_assets.reporting.report import write_report
from bioreview_assets.reporting.tables import markdown
from bioreview_assets.resources import StorageResource


@dg.asset(deps=["scores"], check_specs=REPORT_CHECKS, group_name="reports", kinds={"python", "markdown"})
def leaderboard(context: dg.AssetExecutionContext, storage: StorageResource) -> dg.MaterializeResult:
    """Leaderboard of all scored systems and splits with null baselines, breakdowns and failure modes."""
    store = storage.store()
    report = write_report(store)
    project = settings.load_project()
    metadata = {
        "systems": report.leaderboard["system"].n_unique(),
        "rows": report.leaderboard.height,
        "leaderboard": dg.MetadataValue.md(markdown(report.leaderboard)),
        "report": store.url("reports", "leaderboard.md"),
    }
    for split in report.leaderboard["split"].unique().sort().to_list():
        png = store.read_bytes("reports", f"leaderboard_{split}.png")
        metadata[f"plot_{split}"] = png_markdown(png, f"leaderboard {split}")
    context.log.info("\n" + markdown(report.leaderboard.filter(pl.col("split") == project.eval_splits[0])))
    return dg.MaterializeResult(metadata=metadata,
                                check_results=evaluate_report_checks(report.leaderboard, project))
