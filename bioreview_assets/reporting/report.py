"""The leaderboard report: tables, plots, error analysis; written under <storage>/reports/ (asset and CLI)."""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from bioreview_assets.reporting.formatting import frame_table as markdown
from bioreview_assets.reporting.paired import comparison_pairs, load_article_scores, paired_table
from bioreview_assets.reporting.plots import leaderboard_png
from bioreview_assets.reporting.tables import (
    breakdown,
    headline,
    leaderboard,
    matcher_comparison,
    probe_table,
)
from bioreview_assets.reporting.verdict import fine_tuned_pairs, verdict_lines
from bioreview_assets.store.artifacts import ArtifactStore
from bioreview_assets.store.layout import REPORT_DIR
from bioreview_assets.store.records import ScoreRow

# Reference figures (docs/reference.md: reference pipeline §7.1; v3 test, 981 articles, frozen SPECTER2 matcher).
# Different split, matcher and prompt from anything scored here: shown for orientation, never ranked against our rows.
REFERENCE_V3_TEST = [
    {"system": "reference 8B+9B union ensemble", "f1": 0.7038, "recall": 0.6946, "precision": 0.7132},
    {"system": "reference Qwen3.5-9B dedup+cap20", "f1": 0.6213, "recall": 0.4975, "precision": 0.8270},
    {"system": "reference Qwen3-8B dedup+cap20", "f1": 0.5567, "recall": 0.4092, "precision": 0.8706},
]


@dataclass
class Report:
    leaderboard: pl.DataFrame
    matchers: pl.DataFrame
    per_source: pl.DataFrame
    per_category: pl.DataFrame
    failure_modes: pl.DataFrame
    zero_recall: pl.DataFrame
    files: dict[str, str] = field(default_factory=dict)
    failure_examples: pl.DataFrame = field(default_factory=pl.DataFrame)
    # Paired bootstrap differences (fine-tuned vs base / BM25 / checklist, ensemble vs its best member).
    paired: pl.DataFrame = field(default_factory=pl.DataFrame)


def read_stored(store: ArtifactStore, path: str) -> pl.DataFrame:
    """A parquet file `store.glob` found, read as the graph reads it: checked against its partition's manifest, and
    an unreadable or changed file is a CorruptArtifact naming it (never ranked as if whole)."""
    return store.read_parquet(*store.parts_of(path))


def load_scores(store: ArtifactStore) -> pl.DataFrame:
    paths = store.glob("scores/*/*/scores.parquet")
    if not paths:
        raise FileNotFoundError(f"no scores under {store.root}/scores: materialise some scores partitions first")
    # Older partitions of a split without reference concerns hold F1 as a column of nulls: cast to the record's
    # types so the tables format them as undefined.
    return pl.concat([ScoreRow.conform(read_stored(store, p)) for p in paths], how="diagonal_relaxed")


def _metrics_by_partition(store: ArtifactStore, matcher: str) -> dict[tuple[str, str], dict]:
    out = {}
    for path in store.glob("scores/*/*/metrics.json"):
        system, split = path.split("/")[-3:-1]
        out[(system, split)] = store.read_json("scores", system, split, "metrics.json")[matcher]
    return out


def failure_modes(store: ArtifactStore) -> pl.DataFrame:
    """Parse outcomes per model x split from the stored generations (errors, loops, unparsable, empty)."""
    frames = []
    for path in store.glob("generations/*/*/generations.parquet"):
        model, split = path.split("/")[-3:-1]
        table = read_stored(store, path)
        frames.append(table.group_by("parse_method").len().with_columns(
            pl.lit(model).alias("model"), pl.lit(split).alias("split")))
    if not frames:
        return pl.DataFrame()
    return pl.concat(frames).pivot(on="parse_method", index=["model", "split"], values="len").fill_null(0)


def failure_examples(store: ArtifactStore, per_mode: int = 2, width: int = 160) -> pl.DataFrame:
    """A few outputs of every failed parse outcome (no concern parsed, or a generation error), per model x split."""
    frames = []
    for path in store.glob("generations/*/*/generations.parquet"):
        model, split = path.split("/")[-3:-1]
        table = read_stored(store, path)
        failed = table.filter(~pl.col("parse_ok"))
        if failed.is_empty():
            continue
        frames.append(
            failed.group_by("parse_method", maintain_order=True).head(per_mode).select(
                pl.lit(model).alias("model"), pl.lit(split).alias("split"), "parse_method", "article_id",
                pl.coalesce(pl.col("error"), pl.col("text")).fill_null("").str.replace_all(r"\s+", " ")
                .str.slice(0, width).alias("output (start)"),
            ))
    return pl.concat(frames) if frames else pl.DataFrame()


def zero_recall_examples(store: ArtifactStore, matcher: str, per_system: int = 3) -> pl.DataFrame:
    """Articles where a system matched none of the reference concerns, with their GT count and output size."""
    paths = store.glob("scores/*/*/articles.parquet")
    if not paths:
        return pl.DataFrame()
    table = pl.concat([read_stored(store, p) for p in paths], how="diagonal_relaxed")
    return (
        table.filter((pl.col("matcher") == matcher) & (pl.col("n_gt") > 0) & (pl.col("n_matched") == 0))
        .sort(["system", "split", "n_gt"], descending=[False, False, True])
        .group_by(["system", "split"], maintain_order=True).head(per_system)
        .select("system", "split", "article_id", "source", "n_gt", "n_tool", "in_output")
    )


def build_report(store: ArtifactStore, project, models, ensembles) -> Report:
    """Everything the report shows, from stored artefacts only (project: the ProjectConfig; models and ensembles:
    the configs of its models and ensembles)."""
    matcher = project.default_matcher
    scores = load_scores(store)
    metrics = _metrics_by_partition(store, matcher)
    board = leaderboard(scores, matcher)
    return Report(
        leaderboard=board,
        matchers=matcher_comparison(scores),
        per_source=breakdown(metrics, "per_source_micro", "source"),
        per_category=breakdown(metrics, "per_category_micro", "category"),
        failure_modes=failure_modes(store),
        zero_recall=zero_recall_examples(store, matcher),
        failure_examples=failure_examples(store),
        paired=paired_table(load_article_scores(store), board, comparison_pairs(project, models, ensembles), matcher,
                            n=project.bootstrap_n),
    )


def render_markdown(report: Report, matcher_identity: str, project, models) -> str:
    """The whole report as one markdown document (project: the ProjectConfig; models: its models' configs)."""
    parts = [
        "# bioreview leaderboard",
        f"Matcher: `{matcher_identity}`. Micro F1 over every article of the split (missing articles count with zero "
        "concerns). `null_f1`: the same concerns scored against another article of the same source; "
        "`count_oracle_f1`: F1 if min(#generated, #reference) pairs matched per article. A system whose F1 is "
        "close to its null F1 is rewarded for its concern count, not its content.",
    ]
    splits = report.leaderboard["split"].unique(maintain_order=True).to_list()
    verdict = verdict_lines(report.leaderboard, fine_tuned_pairs(models), project.baselines, splits,
                            report.paired)
    if verdict:
        parts += ["## Verdict", "\n".join(f"* {line}" for line in verdict)]
    for split in splits:
        parts += [f"## {split}: one row per system (default post-processing {project.default_postprocess})",
                  markdown(headline(report.leaderboard, split)),
                  f"### {split}: every row, policy variants and count baselines included",
                  markdown(report.leaderboard.filter(pl.col("split") == split))]
    parts += ["## Paired comparisons (same articles; paired bootstrap of the F1 difference A - B, 95% CI)",
              "`reviewers` is the human ceiling: each reviewer's concerns scored against the other reviewers' concerns "
              "of the same article (articles with two or more reviewers; a row's articles are reviewer units). "
              "`checklist` is the same K most common training concerns for every article.",
              markdown(report.paired)]
    parts += ["## F1 by matcher", markdown(report.matchers)]
    parts += ["## Per source (micro)", markdown(report.per_source)]
    parts += ["## Per category (micro, reference-side attribution)", markdown(report.per_category)]
    parts += ["## Checkpoint probes (score by step; final = the model's finished adapter)",
              markdown(probe_table(report.leaderboard))]
    parts += ["## Failure modes (generations)", markdown(report.failure_modes)]
    parts += ["### Failure examples (outputs with no parsed concern)", markdown(report.failure_examples)]
    parts += ["## Zero-recall articles (examples)", markdown(report.zero_recall)]
    parts += [
        "## Reference figures (docs/reference.md: reference pipeline §7.1) — not comparable",
        "v3 test split (981 articles), frozen SPECTER2 matcher, a different prompt: shown for orientation only; "
        "they are never ranked with the rows above (different split hash).",
        markdown(pl.DataFrame(REFERENCE_V3_TEST)),
    ]
    return "\n\n".join(parts) + "\n"


def write_report(store: ArtifactStore, project, models, ensembles) -> Report:
    """Build the report and write markdown, JSON and PNG files under <storage>/reports/ (project: the ProjectConfig;
    models and ensembles: the configs of its models and ensembles)."""
    report = build_report(store, project, models, ensembles)
    matcher = project.default_matcher
    identity = report.leaderboard.height and load_scores(store).filter(pl.col("matcher") == matcher)["matcher_id"][0]
    report.files["markdown"] = store.write_bytes(
        render_markdown(report, f"{matcher} ({identity})", project, models).encode(), *REPORT_DIR, "leaderboard.md")
    report.files["json"] = store.write_bytes(report.leaderboard.write_json().encode(), *REPORT_DIR, "leaderboard.json")
    report.files["paired"] = store.write_bytes(report.paired.write_json().encode(), *REPORT_DIR, "paired.json")
    if not report.paired.is_empty():  # the DuckDB view `paired_differences`
        report.files["paired_parquet"] = store.write_parquet(report.paired, *REPORT_DIR, "paired.parquet")
    elif store.exists(*REPORT_DIR, "paired.parquet"):
        store.fs.rm(store.path(*REPORT_DIR, "paired.parquet"))  # no stale comparisons in SQL
    for split in report.leaderboard["split"].unique().to_list():
        rows = report.leaderboard.filter(pl.col("split") == split).to_dicts()
        report.files[f"plot_{split}"] = store.write_bytes(
            leaderboard_png(rows, f"{split} ({matcher})"), *REPORT_DIR, f"leaderboard_{split}.png")
    return report
