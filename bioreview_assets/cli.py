"""`bioreview` command: demo, sample-data, sql (thin wrappers over the same code the assets use)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _cmd_sample_data(args: argparse.Namespace) -> int:
    from bioreview_assets.sample.generator import write_sample

    for split, path in write_sample(Path(args.out), seed=args.seed).items():
        print(f"{split}: {path}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from bioreview_assets.demo import run_demo
    from bioreview_assets.summary import print_demo_summary

    run_demo()
    print_demo_summary()
    return 0


def _cmd_sql(args: argparse.Namespace) -> int:
    from bioreview_assets.store.catalog import query_table

    print(query_table(args.query, max_rows=args.max_rows))
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
    sql = sub.add_parser("sql", help="run SQL against the DuckDB catalog (<storage>/bioreview.duckdb)")
    sql.add_argument("query")
    sql.add_argument("--max-rows", type=int, default=50)
    sql.set_defaults(func=_cmd_sql)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "seed", 0) is None:
        from bioreview_assets.sample.generator import SEED

        args.seed = SEED
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
