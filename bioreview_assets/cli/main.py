"""`bioreview` command: doctor, demo, sample-data, sql, report, score, label-export, publish (thin wrappers over the
code the assets use)."""

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


def _cmd_doctor(args: argparse.Namespace) -> int:
    from bioreview_assets.config import loader
    from bioreview_assets.config.loader import load_snapshot
    from bioreview_assets.doctor.diagnose import blocking
    from bioreview_assets.doctor.report import examine, format_findings

    snapshot = load_snapshot()
    project = snapshot.project
    models = args.models or (snapshot.model_names if args.all else list(project.demo_models))
    matchers = [snapshot.matcher(name) for name in sorted({project.default_matcher, *project.matchers})]
    # A model file the project does not list (a tiny family model, say) is checked too, loaded on its own.
    findings = examine([snapshot.models.get(name) or loader.load_model(name) for name in models], matchers)
    print(f"bioreview doctor: {', '.join(models)}")
    print(format_findings(findings))
    return 1 if blocking(findings) else 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from bioreview_assets.cli.demo import run_demo
    from bioreview_assets.orchestration.resources import StorageResource
    from bioreview_assets.cli.summary import print_demo_summary

    # The doctor first: a machine that cannot run the demo says so in seconds, not after an hour.
    if _cmd_doctor(argparse.Namespace(models=None, all=False)) != 0:
        print("bioreview demo: the doctor found blocking problems (above); nothing was run", file=sys.stderr)
        return 1
    results = run_demo()
    print_demo_summary(StorageResource().store(), results)
    return 0


def _cmd_sql(args: argparse.Namespace) -> int:
    import duckdb

    from bioreview_assets.orchestration.resources import StorageResource
    from bioreview_assets.store.catalog import query_table

    try:
        print(query_table(args.query, max_rows=args.max_rows, store=StorageResource().store()))
    except (duckdb.Error, ValueError) as err:  # a SQL mistake: the message, not a traceback
        print(f"bioreview sql: error: {err}", file=sys.stderr)
        return 1
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from bioreview_assets.config.loader import load_snapshot
    from bioreview_assets.orchestration.resources import StorageResource
    from bioreview_assets.reporting.report import write_report

    snapshot = load_snapshot()
    report = write_report(StorageResource().store(), snapshot.project, snapshot.project_models(),
                          snapshot.project_ensembles())
    for name, path in report.files.items():
        print(f"{name}: {path}")
    return 0


def _cmd_score(args: argparse.Namespace) -> int:
    import json

    from bioreview_assets.config.loader import load_snapshot
    from bioreview_assets.core.benchmark import parse_split
    from bioreview_assets.core.gt_filter import GT_FILTER_VERSION
    from bioreview_assets.core.predictions import prediction_coverage, read_predictions
    from bioreview_assets.core.scoring import article_refs
    from bioreview_assets.services.similarity import score_with_matcher
    from bioreview_assets.orchestration.resources import EmbedderResource
    from bioreview_assets.store.benchmark_source import split_file
    from bioreview_assets.store.records import ScoreRow

    snapshot = load_snapshot()
    source = split_file(args.split)
    loaded = parse_split(args.split, source.read(), snapshot.project.max_bad_row_fraction, str(source.path))
    predictions = read_predictions(Path(args.predictions).read_bytes(), source=args.predictions)
    coverage = prediction_coverage(predictions, [a.id for a in loaded.articles], args.split)
    for warning in coverage["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    matcher = snapshot.matcher(args.matcher or snapshot.project.default_matcher)
    result = score_with_matcher(EmbedderResource(), matcher,
                                article_refs(loaded.articles), predictions.by_article, args.bootstrap)
    # The record of a scores.parquet row (system: the predictions file), with the coverage beside it.
    row = ScoreRow.from_metrics(result.metrics, system=Path(args.predictions).stem, split=args.split,
                                matcher=matcher.name, split_hash=loaded.content_hash, gt_filter=GT_FILTER_VERSION)
    print(json.dumps({**row.to_json(), "coverage": coverage}, indent=2))
    if args.out:  # the coverage is stored with the score, never only printed
        row.write_json(Path(args.out), coverage=coverage, predictions=args.predictions, metrics=result.metrics)
    return 0


def _cmd_label_export(args: argparse.Namespace) -> int:
    from bioreview_assets.config.loader import load_snapshot
    from bioreview_assets.core.matcher_validation import stratified_pairs
    from bioreview_assets.reporting.label_export import export_rows, to_csv, to_html
    from bioreview_assets.orchestration.resources import StorageResource
    from bioreview_assets.store.catalog import query_frame

    snapshot = load_snapshot()
    matcher = args.matcher or snapshot.project.default_matcher
    spec = snapshot.matcher(matcher)
    where = [f"matcher = '{matcher}'", "gt_text IS NOT NULL", "generated_text IS NOT NULL", "similarity IS NOT NULL"]
    where += [f"split = '{args.split}'"] if args.split else []
    frame = query_frame("SELECT gt_text AS text_a, generated_text AS text_b, similarity, system, split, article_id "
                        f"FROM matches WHERE {' AND '.join(where)} ORDER BY system, split, article_id, gt_index",
                        StorageResource().store())
    if frame.is_empty():
        raise FileNotFoundError(f"no stored matches under matcher {matcher!r}: materialise some scores first")
    pairs = stratified_pairs(frame.to_dicts(), spec.effective_threshold, args.n, seed=args.seed)
    rows = export_rows(pairs, matcher)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    csv_name = f"pairs-{matcher}.csv"
    (out / csv_name).write_text(to_csv(rows), encoding="utf-8")
    (out / f"label-{matcher}.html").write_text(to_html(rows, csv_name, f"{matcher} pairs"), encoding="utf-8")
    print(f"{len(rows)} pairs from {frame.height} stored matches, stratified around {matcher}'s threshold "
          f"{spec.effective_threshold}:")
    print(f"  {out / csv_name}  (fill label 1/0 and annotator; list it under matcher_validation.labelled_pairs)")
    print(f"  {out / f'label-{matcher}.html'}  (open in a browser: y same, n different, s skip; Save CSV)")
    return 0


def _cmd_publish(args: argparse.Namespace) -> int:
    from bioreview_assets.config.loader import load_snapshot
    from bioreview_assets.services.publish import assemble_published_adapter, upload_published_adapter
    from bioreview_assets.orchestration.resources import StorageResource
    from bioreview_assets.store.layout import published_dir

    snapshot = load_snapshot()
    store = StorageResource().store()
    out = Path(args.out) if args.out else store.local_dir(*published_dir(args.model))
    published = assemble_published_adapter(store, snapshot.model(args.model), snapshot.project, out)
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
    doctor = sub.add_parser("doctor", help="check this machine against the model configs it will run (exit 1 on a "
                                           "blocking problem)")
    doctor.add_argument("models", nargs="*", help="model configs to check (default: the project's demo_models)")
    doctor.add_argument("--all", action="store_true", help="every configured model")
    doctor.set_defaults(func=_cmd_doctor)
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
    export = sub.add_parser("label-export", help="write real matched pairs to label (CSV + a keyboard labelling page)")
    export.add_argument("--out", required=True, help="folder for pairs-<matcher>.csv and label-<matcher>.html")
    export.add_argument("--matcher", default=None, help="a scored matcher (default: the project's)")
    export.add_argument("--split", default=None, choices=list(SPLITS), help="only this split's matches")
    export.add_argument("--n", type=int, default=400, help="pairs to export (default 400)")
    export.add_argument("--seed", type=int, default=42)
    export.set_defaults(func=_cmd_label_export)
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
    from bioreview_assets.config.loader import ConfigError, load_snapshot
    from bioreview_assets.store.artifacts import CorruptArtifact

    try:
        if args.command != "sample-data":  # every other command reads configs: all of them are checked first
            load_snapshot()
        return args.func(args)
    except (BadPredictions, TooManyBadRows, EmptySplit, FileNotFoundError, ConfigError, CorruptArtifact) as err:
        # Bad input is the user's to fix: say what and where, without a traceback (exit 1, as the harness).
        print(f"bioreview {args.command}: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
