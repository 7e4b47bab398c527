"""What `make demo` prints at the end: corpus statistics now, the leaderboard once scores exist."""

from __future__ import annotations

import io

import polars as pl

from bioreview_assets.config.loader import load_snapshot
from bioreview_assets.config.snapshot import ConfigSnapshot
from bioreview_assets.core.schema import SPLITS
from bioreview_assets.store.layout import REPORT_DIR
from bioreview_assets.reporting.formatting import aligned_frame
from bioreview_assets.reporting.tables import headline, variants
from bioreview_assets.reporting.verdict import fine_tuned_pairs, verdict_lines
from bioreview_assets.store.artifacts import ArtifactStore
from bioreview_assets.store.layout import corpus_dir, read_split_meta


def corpus_summary_lines(store: ArtifactStore, snapshot: ConfigSnapshot) -> list[str]:
    project = snapshot.project
    lines = ["", "Benchmark splits:"]
    for split in SPLITS:
        meta = read_split_meta(store, split)
        lines.append(
            f"  {split:5s} {meta['n_articles']:5d} articles, {meta['n_quarantined']} quarantined, "
            f"sha256 {meta['content_hash'][:12]}{' (bundled sample)' if meta['is_sample'] else ''}"
        )
    lines += ["", "SFT corpora:", f"  {'model':14s} {'split':5s} {'kept':>9s} {'concerns':>13s} "
              f"{'tokens mean/max':>16s} {'truncated':>9s}  prompt hash"]
    for model in project.demo_models:
        for split in project.corpus_splits:
            folder = corpus_dir(model, split)
            if not store.exists(*folder, "meta.json"):
                continue
            meta = store.read_json(*folder, "meta.json")
            s = meta["stats"]
            lines.append(
                f"  {model:14s} {split:5s} {s['kept_articles']:>4d}/{s['total_articles']:<4d} "
                f"{s['concerns_before']:>5d}->{s['concerns_after']:<5d} "
                f"{s['prompt_tokens']['mean']:>8.0f}/{s['prompt_tokens']['max']:<6d} "
                f"{s['truncation_rate']:>9.1%}  {meta['prompt_hash']}"
            )
    return lines


def leaderboard_summary_lines(store: ArtifactStore, snapshot: ConfigSnapshot) -> list[str]:
    """Per split: the headline table (default policies), the variants, then the verdict and the report paths."""
    if not store.exists(*REPORT_DIR, "leaderboard.json"):
        return ["", "No leaderboard yet: materialise the `leaderboard` asset (or run `bioreview report`)."]
    project = snapshot.project
    board = pl.read_json(io.BytesIO(store.read_bytes(*REPORT_DIR, "leaderboard.json")))
    paired = (pl.read_json(io.BytesIO(store.read_bytes(*REPORT_DIR, "paired.json")))
              if store.exists(*REPORT_DIR, "paired.json") else pl.DataFrame())
    lines = []
    splits = [s for s in project.eval_splits if not board.filter(pl.col("split") == s).is_empty()]
    for split in splits:
        lines += ["", f"Leaderboard, {split} split ({project.default_matcher} matcher, default post-processing "
                      f"{project.default_postprocess}):", *("  " + line for line in aligned_frame(headline(board, split)))]
    for split in splits:
        extra = variants(board, split)
        if not extra.is_empty():
            lines += ["", f"Policy variants and count baselines, {split}:",
                      *("  " + line for line in aligned_frame(extra))]
    lines += ["", "Columns: F1 = micro F1 with its 95% bootstrap CI over articles; null F1 = the same concerns scored "
              "against another article of the same source (what the concern count alone earns); F1 above null = "
              "F1 - null F1; oracle F1 = F1 if min(#generated, #reference) concerns matched in every article. "
              "reviewers = the human ceiling (each reviewer scored against the other reviewers of its article; its "
              "articles are reviewer units); checklist = the same most common training concerns for every article."]
    if not paired.is_empty():
        lines += ["", "Paired differences (F1 of A - F1 of B on the same articles, 95% paired bootstrap CI):",
                  *("  " + line for line in aligned_frame(paired.select(
                      "split", "system_a", "system_b", "diff", "diff_ci_lo", "diff_ci_hi", "outcome")))]
    pairs = fine_tuned_pairs(snapshot.project_models(project.demo_models))
    lines += ["", "Verdict:", *("  " + line for line in verdict_lines(board, pairs, project.baselines, splits, paired))]
    lines += ["", "Report and plots:"]
    lines += [f"  {path}" for path in store.glob(*REPORT_DIR, "leaderboard*")]
    return lines


def _applicable(evaluation) -> bool:
    value = (evaluation.metadata or {}).get("applicable")
    return getattr(value, "value", value) is not False


def check_summary_lines(step_results: list[tuple], shown: int = 6) -> list[str]:
    """Asset-check verdicts of the demo's runs per check: passed, failed (partitions named), not applicable."""
    verdicts: dict[str, dict[str, list[str]]] = {}
    for step, result in step_results:
        for evaluation in result.get_asset_check_evaluations():
            outcome = "n/a" if not _applicable(evaluation) else "passed" if evaluation.passed else "failed"
            verdicts.setdefault(evaluation.check_name, {"passed": [], "failed": [], "n/a": []})[outcome].append(
                step.label)
    if not verdicts:
        return []
    lines = ["", "Asset checks (details in the UI or the run logs):"]
    width = max(len(name) for name in verdicts)
    for name, outcome in sorted(verdicts.items()):
        failed = outcome["failed"]
        line = f"  {name:{width}s}  {len(outcome['passed'])} passed, {len(failed)} failed"
        if outcome["n/a"]:
            line += f", {len(outcome['n/a'])} not applicable (F1 too low to judge)"
        if failed:
            line += ": " + ", ".join(failed[:shown]) + (f", ... (+{len(failed) - shown})" if len(failed) > shown else "")
        lines.append(line)
    return lines


def print_demo_summary(store: ArtifactStore, step_results: list[tuple] | None = None,
                       snapshot: ConfigSnapshot | None = None) -> None:
    """Corpus statistics, the leaderboard, the report paths and, after a demo run, its asset-check verdicts
    (`snapshot`: the configs the demo ran with, by default those loaded now)."""
    snapshot = snapshot or load_snapshot()
    lines = (corpus_summary_lines(store, snapshot) + leaderboard_summary_lines(store, snapshot)
             + check_summary_lines(step_results or []))
    print("\n".join(lines))
    print(f"\nArtefacts under {store.root}")
