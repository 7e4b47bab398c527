"""The demo's closing paragraph: did fine-tuning work, and how much of each F1 is only the concern count."""

from __future__ import annotations

import polars as pl


def fine_tuned_pairs(models: list[str]) -> list[tuple[str, str]]:
    """(fine-tuned model, its base system) for the models that name a base_system."""
    from bioreview_assets import settings

    pairs = []
    for model in models:
        cfg = settings.load_model(model)
        if cfg.finetune and cfg.base_system:
            pairs.append((model, cfg.base_system))
    return pairs


def _row(board: pl.DataFrame, system: str, split: str) -> dict | None:
    rows = board.filter((pl.col("system") == system) & (pl.col("split") == split)).to_dicts()
    return rows[0] if rows else None


def _null_share(row: dict) -> str:
    if not row["f1"]:
        return "n/a (F1 0)"
    return f"{row['null_f1'] / row['f1']:.0%}"


def verdict_lines(board: pl.DataFrame, pairs: list[tuple[str, str]], baselines: list[str], splits: list[str]) -> list[str]:
    """One sentence per (fine-tuned model, its base) and split, naming the baselines' null share beside it."""
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
                f"[{t['f1_ci_lo']:.2f}, {t['f1_ci_hi']:.2f}] ({tuned}); the shuffled-article null reaches "
                f"{_null_share(t)} of the fine-tuned F1"
            )
            for name in baselines:
                r = _row(board, name, split)
                if r is not None and r["f1"] is not None:
                    sentence += (f"; {name} scores {r['f1']:.2f}, but its null reaches {_null_share(r)} of that, "
                                 f"so above the null it scores {r['f1'] - r['null_f1']:.2f} against the fine-tuned "
                                 f"model's {t['f1'] - t['null_f1']:.2f}")
            lines.append(sentence + ".")
    return lines
