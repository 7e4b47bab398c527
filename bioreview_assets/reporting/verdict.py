"""The demo's closing paragraph: did fine-tuning work, and how much of each F1 is only the concern count."""

from __future__ import annotations

import polars as pl


def fine_tuned_pairs(models) -> list[tuple[str, str]]:
    """(fine-tuned model, its base system) for the model configs (ModelConfig) that name a base_system."""
    return [(cfg.name, cfg.base_system) for cfg in models if cfg.finetune and cfg.base_system]


def _row(board: pl.DataFrame, system: str, split: str) -> dict | None:
    rows = board.filter((pl.col("system") == system) & (pl.col("split") == split)).to_dicts()
    return rows[0] if rows else None


def _null_share(row: dict) -> str:
    if not row["f1"]:
        return "n/a (F1 0)"
    return f"{row['null_f1'] / row['f1']:.0%}"


def _paired(paired: pl.DataFrame | None, split: str, a: str, b: str) -> dict | None:
    if paired is None or paired.is_empty():
        return None
    rows = paired.filter((pl.col("split") == split) & (pl.col("system_a") == a) & (pl.col("system_b") == b)).to_dicts()
    return rows[0] if rows else None


def _paired_clause(row: dict | None) -> str:
    """`paired over 30 articles: +0.38 [+0.31, +0.46], ft better` (the CI of the difference, not two CIs by eye)."""
    if row is None:
        return ""
    return (f" (paired over {row['n_articles']} articles: {row['diff']:+.2f} [{row['diff_ci_lo']:+.2f}, "
            f"{row['diff_ci_hi']:+.2f}], {row['outcome']})")


def _ceiling_clause(board: pl.DataFrame, split: str, tuned_row: dict) -> str:
    from bioreview_assets.core.reviewer_ceiling import REVIEWERS_SYSTEM

    r = _row(board, REVIEWERS_SYSTEM, split)
    if r is None:
        return ""
    share = f"{tuned_row['f1'] / r['f1']:.0%} of it" if r["f1"] else "n/a (ceiling F1 0)"
    return (f"; the reviewers themselves (each scored against the others of its article) reach "
            f"{r['f1']:.2f} [{r['f1_ci_lo']:.2f}, {r['f1_ci_hi']:.2f}] with a null of {r['null_f1']:.2f}, "
            f"the human ceiling: the fine-tuned model reaches {share}")


def verdict_lines(board: pl.DataFrame, pairs: list[tuple[str, str]], baselines: list[str], splits: list[str],
                  paired: pl.DataFrame | None = None) -> list[str]:
    """One sentence per (fine-tuned model, its base) and split: the baselines' null share, the paired differences
    (when `paired` holds them) and where the model stands against the reviewers' ceiling; then one per ensemble."""
    from bioreview_assets.core.reviewer_ceiling import REVIEWERS_SYSTEM

    lines = []
    for tuned, base in pairs:
        for split in splits:
            t, b = _row(board, tuned, split), _row(board, base, split)
            if t is None or b is None:
                continue
            if t["f1"] is None or b["f1"] is None:  # no reference concerns on this split: nothing to compare
                lines.append(f"{split}: F1 is undefined (n/a): the split has no reference concerns.")
                continue
            verb = "raised" if t["f1"] > b["f1"] else "did not raise" if t["f1"] == b["f1"] else "lowered"
            sentence = (
                f"{split}: fine-tuning {verb} F1 from {b['f1']:.2f} ({base}) to {t['f1']:.2f} "
                f"[{t['f1_ci_lo']:.2f}, {t['f1_ci_hi']:.2f}] ({tuned}){_paired_clause(_paired(paired, split, tuned, base))}"
                f"; the shuffled-article null reaches {_null_share(t)} of the fine-tuned F1"
            )
            for name in baselines:
                r = _row(board, name, split)
                if r is not None and name != REVIEWERS_SYSTEM and r["f1"] is not None:
                    sentence += (f"; {name} scores {r['f1']:.2f}, but its null reaches {_null_share(r)} of that, "
                                 f"so above the null it scores {r['f1'] - r['null_f1']:.2f} against the fine-tuned "
                                 f"model's {t['f1'] - t['null_f1']:.2f}"
                                 f"{_paired_clause(_paired(paired, split, tuned, name))}")
            lines.append(sentence + _ceiling_clause(board, split, t) + ".")
    if paired is not None and not paired.is_empty():
        for row in paired.filter(pl.col("comparison") == "ensemble vs best member").to_dicts():
            lines.append(f"{row['split']}: ensemble {row['system_a']} against its best member {row['system_b']}: "
                         f"F1 {row['f1_a']:.2f} vs {row['f1_b']:.2f}{_paired_clause(row)}.")
    return lines
