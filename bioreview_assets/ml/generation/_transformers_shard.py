"""One shard of a data-parallel transformers generation (sharding.py starts one per GPU and reads its results).

Run as `python -m bioreview_assets.ml.generation._transformers_shard --spec S --batches B --results R`, with
CUDA_VISIBLE_DEVICES naming this shard's one GPU (empty on a CPU machine). It loads the model like the one-GPU
backend (TransformersBackend.from_dirs), generates exactly the batches it was given, in order, and writes one JSON
line per article (flushed at once, so what it finished survives a crash), after a first `facts` line.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from bioreview_assets.ml.generation._parent_watch import exit_with_parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", required=True)
    parser.add_argument("--batches", required=True)
    parser.add_argument("--results", required=True)
    args = parser.parse_args(argv)
    exit_with_parent()
    spec = json.loads(Path(args.spec).read_text())
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format=f"[shard {spec['rank']}] %(asctime)s %(name)s: %(message)s")

    import torch

    from bioreview_assets.ml.generation.base import SamplingSpec
    from bioreview_assets.ml.generation.transformers_backend import Prompt, TransformersBackend

    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))  # a CPU shard uses its share of the cores, not all of them
    backend = TransformersBackend.from_dirs(
        Path(spec["model_dir"]),
        Path(spec["adapter_dir"]) if spec.get("adapter_dir") else None,
        SamplingSpec.from_dict(spec["sampling"]),
        batch_size=int(spec["batch_size"]),
        enable_thinking=bool(spec["enable_thinking"]),
        generate_kwargs=spec.get("generate_kwargs") or None,
        dtype=spec.get("dtype"),
        compiled_decode=bool(spec.get("compiled_decode")),
    )
    lines = Path(args.batches).read_text(encoding="utf-8").split("\n")  # not splitlines: see sharding._LineReader
    batches = [[Prompt(p["article_id"], p["ids"]) for p in json.loads(line)] for line in lines if line.strip()]
    with open(args.results, "w", encoding="utf-8") as out:

        def emit(row: dict) -> None:
            out.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
            out.flush()

        emit({"kind": "facts", **backend.describe(), "rank": spec["rank"]})
        backend.run_batches(batches, lambda result: emit({"kind": "result", **result.to_dict()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
