"""PNG plots for the UI and the report (matplotlib, Agg backend)."""

from __future__ import annotations

import io

import numpy as np


def _figure(ncols: int, width: float = 11.0, height: float = 3.8):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt, *plt.subplots(1, ncols, figsize=(width, height))


def _png(plt, fig) -> bytes:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return buffer.getvalue()


def loss_curve_png(history: dict[str, list], model: str = "") -> bytes:
    """PNG of the train/val loss curves (history = {"train": [[step, loss]...], "val": [[step, loss]...]}), titled
    with the model it belongs to."""
    import matplotlib

    matplotlib.use("Agg")  # no display on pods or in tests
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 3.5), dpi=100)
    axes = figure.add_subplot()
    labels = {"train": "train loss (per logging step)", "val": "val loss (fixed val subset)"}
    for key, style in (("train", "-"), ("val", "o-")):
        points = history.get(key) or []
        if points:
            steps, losses = zip(*points)
            axes.plot(steps, losses, style, label=labels[key], markersize=4)
    axes.set_title(f"{model}: SFT loss" if model else "SFT loss")
    axes.set_xlabel("optimizer step")
    axes.set_ylabel("loss")
    axes.grid(alpha=0.3)
    if any(history.get(key) for key in ("train", "val")):
        axes.legend()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight")
    return buffer.getvalue()


def matcher_diagnostics_png(metrics: dict, histograms: dict, title: str) -> bytes:
    """Left: F1/P/R against the threshold (flat = the matcher rewards counts). Right: similarity histograms."""
    plt, fig, (left, right) = _figure(2)
    curve = metrics["threshold_curve"]
    xs = [p["configured_threshold"] for p in curve]
    for key in ("f1", "precision", "recall"):
        left.plot(xs, [p[key] for p in curve], marker="o", ms=3, label=f"{key} at this threshold")
    if metrics.get("null_f1") is not None:
        left.axhline(metrics["null_f1"], color="grey", ls="--", label="null F1 (at configured threshold)")
    left.axvline(metrics["configured_threshold"], color="black", lw=0.8, label="configured threshold")
    left.set(xlabel="configured threshold", ylim=(0, 1), title=f"{title}: threshold curve")
    left.legend(fontsize=7)
    edges = np.asarray(histograms["bin_edges"])
    centres = (edges[:-1] + edges[1:]) / 2
    width = float(edges[1] - edges[0])
    labels = {"matched": "matched pairs (counted as hits)",
              "own_best": "each generated concern's best reference, own article",
              "null_best": "each generated concern's best reference, another article (null)"}
    occupied = np.zeros(len(centres), dtype=bool)
    for key, colour in (("matched", "tab:green"), ("own_best", "tab:blue"), ("null_best", "tab:red")):
        counts = histograms.get(key)
        if counts:
            occupied |= np.asarray(counts) > 0
            total = max(sum(counts), 1)
            right.bar(centres, np.asarray(counts) / total, width=width, alpha=0.45, color=colour,
                      label=f"{labels[key]} (n={sum(counts)})")
    right.axvline(metrics["configured_threshold"], color="black", lw=0.8, label="match threshold")
    if occupied.any():
        # The x axis spans the bins that hold data (and the threshold), one bin of margin either side.
        first, last = np.flatnonzero(occupied)[[0, -1]]
        lo = min(edges[first], metrics["configured_threshold"]) - width
        hi = max(edges[last + 1], metrics["configured_threshold"]) + width
        right.set_xlim(max(lo, edges[0]), min(hi, edges[-1]))
    right.set(xlabel="cosine similarity", ylabel="share of each group", title="best similarity: own article vs null")
    right.legend(fontsize=7)
    return _png(plt, fig)


def leaderboard_png(rows: list[dict], title: str) -> bytes:
    """Horizontal bars: F1 with its CI, and the null F1 beside it, one bar group per system."""
    plt, fig, axis = _figure(1, width=9.0, height=0.45 * max(len(rows), 3) + 1.2)
    names = [r["system"] for r in rows][::-1]
    f1 = np.array([r["f1"] for r in rows][::-1], dtype=float)
    null = np.array([r["null_f1"] if r["null_f1"] is not None else np.nan for r in rows][::-1], dtype=float)
    lo = np.array([r["f1_ci_lo"] if r["f1_ci_lo"] is not None else np.nan for r in rows][::-1], dtype=float)
    hi = np.array([r["f1_ci_hi"] if r["f1_ci_hi"] is not None else np.nan for r in rows][::-1], dtype=float)
    y = np.arange(len(names))
    err = np.vstack([np.nan_to_num(f1 - lo), np.nan_to_num(hi - f1)])
    axis.barh(y + 0.2, f1, height=0.4, xerr=err, color="tab:blue", label="F1 (95% CI)")
    axis.barh(y - 0.2, null, height=0.4, color="tab:red", alpha=0.6, label="shuffled-article null F1")
    axis.set_yticks(y, names, fontsize=8)
    axis.set(xlim=(0, 1), xlabel="micro F1", title=title)
    axis.legend(fontsize=7, loc="lower right")
    return _png(plt, fig)
