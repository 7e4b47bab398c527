"""`bioreview` command: demo, sample-data, sql, report, score, publish (thin wrappers over the code the assets use)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bioreview_assets.core.schema import SPLITS


def _cmd_sample_data(args: argparse.Namespace) -> int:
    from bioreview_assets.sample.generator import write_sample

    for split, path in write_sample(Path(args.out), seed=args.seed).items():
        print(f"{split}: {path}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from bioreview_assets.demo import run_demo
    from bioreview_assets.resources import StorageResource
    from bioreview_assets.summary import print_demo_summary

    results = run_demo()
    print_demo_summary(StorageResource().store(), results)
    return 0


def _cmd_sql(args: argparse.Namespace) -> int:
    import duckdb

    from bioreview_assets.resources import StorageResource
    from bioreview_assets.store.catalog import query_table

    try:
        print(query_table(args.query, max_rows=args.max_rows, store=StorageResource().store()))
    except (duckdb.Error, ValueError) as err:  # a SQL mistake: the message, not a traceback
        print(f"bioreview sql: error: {err}", file=sys.stderr)
        return 1
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from bioreview_assets.reporting.report import write_report
    from bioreview_assets.resources import StorageResource

    report = write_report(StorageResource().store())
    for name, path in report.files.items():
        print(f"{name}: {path}")
    return 0


def _cmd_score(args: argparse.Namespace) -> int:
    import json

    from bioreview_assets import settings
    from bioreview_assets.core.benchmark import parse_split
    from bioreview_assets.core.predictions import prediction_coverage, read_predictions
    from bioreview_assets.core.scoring import article_refs
    from bioreview_assets.ml.similarity import score_with_matcher
    from bioreview_assets.resources import EmbedderResource
    from bioreview_assets.store.benchmark_source import split_file

    source = split_file(args.split)
    loaded = parse_split(args.split, source.read(), settings.load_project().max_bad_row_fraction, str(source.path))
    predictions = read_predictions(Path(args.predictions).read_bytes(), source=args.predictions)
    coverage = prediction_coverage(predictions, [a.id for a in loaded.articles], args.split)
    for warning in coverage["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    result = score_with_matcher(EmbedderResource(), args.matcher or settings.load_project().default_matcher,
                                article_refs(loaded.articles), predictions.by_article, args.bootstrap)
    keys = ("f1_micro", "recall_micro", "precision_micro", "recall_major", "null_f1", "count_oracle_f1",
            "n_articles", "n_gt", "n_tool", "n_matched", "matcher_id")
    report = {k: result.metrics[k] for k in keys} | {"ci": result.metrics.get("ci"), "coverage": coverage}
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:  # the coverage is stored with the score, never only printed
        Path(args.out).write_text(json.dumps({**report, "predictions": args.predictions,
                                              "metrics": result.metrics}, indent=2, default=str))
    return 0


def _cmd_publish(args: argparse.Namespace) -> int:
    from bioreview_assets.ml.publish import assemble_published_adapter, upload_published_adapter
    from bioreview_assets.resources import StorageResource
    from bioreview_assets.store.layout import published_dir

    store = StorageResource().store()
    out = Path(args.out) if args.out else store.local_dir(*published_dir(args.model))
    published = assemble_published_adapter(store, args.model, out)
    print(f"published folder: {published.folder}")
    print(f"files: {', '.join(published.files)}")
    print(f"scored splits in the card: {published.scored_splits or 'none'}"
          + (f" (stale, left out: {published.stale_scores})" if published.stale_scores else ""))
    if args.repo_id:
        print(f"uploaded: {upload_published_adapter(out, args.repo_id, private=not args.public)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bioreview", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sample = sub.add_parser("sample-data", help="write the bundled sample benchmark as split files")
    sample.add_argument("--out", required=True, help="folder for {train,val,test}.jsonl")
    sample.add_argument("--seed", type=int, default=None)
    sample.set_defaults(func=_cmd_sample_data)
    demo = sub.add_parser("demo", help="materialise the embedded default systems and print a summary")
    demo.set_defaults(func=_cmd_demo)
    sql = sub.add_parser("sql", help="run SQL over the catalog views (built in memory: never blocks a writer)")
    sql.add_argument("query")
    sql.add_argument("--max-rows", type=int, default=50)
    sql.set_defaults(func=_cmd_sql)
    report = sub.add_parser("report", help="write the leaderboard report (markdown, JSON, PNG) under <storage>/reports")
    report.set_defaults(func=_cmd_report)
    score = sub.add_parser("score", help="score a predictions JSONL ({article_id, concerns}) against a split")
    score.add_argument("--predictions", required=True)
    score.add_argument("--split", default="val", choices=list(SPLITS))
    score.add_argument("--matcher", default=None, help="a configs/matchers/ name (default: the project's)")
    score.add_argument("--bootstrap", type=int, default=1000)
    score.add_argument("--out", default=None, help="also write the score, its coverage and metrics to this JSON file")
    score.set_defaults(func=_cmd_score)
    publish = sub.add_parser("publish", help="assemble MODEL's adapter as a Hub-ready folder; --repo-id uploads it")
    publish.add_argument("model", help="a model partition with a trained adapter (e.g. smollm2-135m)")
    publish.add_argument("--out", default=None, help="folder to write (default <storage>/published_adapter/MODEL)")
    publish.add_argument("--repo-id", default=None, help="Hub repository to upload to; the token is read from HF_TOKEN")
    publish.add_argument("--public", action="store_true", help="create the repository public (default: private)")
    publish.set_defaults(func=_cmd_publish)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "seed", 0) is None:
        from bioreview_assets.sample.generator import SEED

        args.seed = SEED
    from bioreview_assets.core.benchmark import EmptySplit, TooManyBadRows
    from bioreview_assets.core.predictions import BadPredictions
    from bioreview_assets.config.checks import check_configs
    from bioreview_assets.settings import ConfigError
    from bioreview_assets.store.artifacts import CorruptArtifact

    try:
        if args.command != "sample-data":  # every other command reads configs: all of them are checked first
            check_configs()
        return args.func(args)
    except (BadPredictions, TooManyBadRows, EmptySplit, FileNotFoundError, ConfigError, CorruptArtifact) as err:
        # Bad input is the user's to fix: say what and where, without a traceback (exit 1, as the harness).
        print(f"bioreview {args.command}: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
