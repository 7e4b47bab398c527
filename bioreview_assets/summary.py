"""What `make demo` prints at the end: corpus statistics now, the leaderboard once scores exist."""

from __future__ import annotations

from bioreview_assets import settings
from bioreview_assets.store.artifacts import ArtifactStore
from bioreview_assets.store.layout import corpus_dir, read_split_meta


def corpus_summary_lines(store: ArtifactStore) -> list[str]:
    project = settings.load_project()
    lines = ["", "Benchmark splits:"]
    for split in ("train", "val", "test"):
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


def print_demo_summary() -> None:
    store = ArtifactStore()
    print("\n".join(corpus_summary_lines(store)))
    print(f"\nArtefacts under {store.root}")
