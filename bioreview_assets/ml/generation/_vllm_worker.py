"""vLLM worker: one engine over all prompts of a run; results as JSON lines.

Imported by VLLMBackend when vllm is installed in the current interpreter, or run as a script by
`.venv-vllm/bin/python _vllm_worker.py --spec S --requests R --results O` when it is not. As a script it needs
only the standard library, vllm and transformers (never the bioreview package or the main venv).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

# vLLM accepts only these LoRA ranks as max_lora_rank; take the smallest that holds the adapter's rank.
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


def _render_functions():
    if __package__:
        from .rendering import encode_prompt, render_chat
    else:  # run as a script: the package is not importable here, but this file's folder is sys.path[0]
        from rendering import encode_prompt, render_chat
    return render_chat, encode_prompt


def _exit_with_parent() -> None:
    if __package__:
        from ._parent_watch import exit_with_parent
    else:  # run as a script: a sibling module, as for rendering
        from _parent_watch import exit_with_parent
    exit_with_parent()


def lora_rank(adapter_dir: str) -> int:
    """The max_lora_rank vLLM needs for a PEFT adapter folder."""
    rank = int(json.loads((Path(adapter_dir) / "adapter_config.json").read_text())["r"])
    for allowed in VLLM_LORA_RANKS:
        if allowed >= rank:
            return allowed
    raise ValueError(f"LoRA rank {rank} exceeds vLLM's largest supported rank {VLLM_LORA_RANKS[-1]}")


def _model_context(model_dir: str) -> int:
    config = json.loads((Path(model_dir) / "config.json").read_text())
    text_config = config.get("text_config", config)  # multimodal wrappers (Qwen3.5) nest the LM config
    return int(text_config["max_position_embeddings"])


def run(spec: dict[str, Any], requests: list[dict[str, Any]], emit: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """Generate for every request and emit one result dict each; returns engine facts for describe()."""
    import torch
    import vllm
    from transformers import AutoTokenizer
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt
    from vllm.lora.request import LoRARequest

    render_chat, encode_prompt = _render_functions()
    sampling = spec["sampling"]
    max_new = int(sampling["max_new_tokens"])
    context = _model_context(spec["model_dir"])
    tokenizer = AutoTokenizer.from_pretrained(spec["model_dir"])

    # Render with the same template call as the transformers backend, so both see identical prompt tokens.
    ready: list[tuple[str, list[int]]] = []
    for request in requests:
        try:
            ids = encode_prompt(tokenizer, render_chat(tokenizer, request["messages"], spec["enable_thinking"]))
        except Exception as err:
            emit(_failed(request["article_id"], f"prompt rendering failed: {err!r}"))
            continue
        if len(ids) + max_new > context:
            too_long = f"prompt of {len(ids)} tokens + {max_new} new exceeds the model's context of {context}"
            emit(_failed(request["article_id"], too_long, len(ids)))
            continue
        ready.append((request["article_id"], ids))
    if not ready:
        return {"vllm": vllm.__version__, "prompts": 0}

    on_gpu = torch.cuda.is_available()
    if not on_gpu:
        # One-shot CPU batch: running the engine core in this process saves a second vLLM start (~25 s on CPU).
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    dtype = spec.get("dtype") or ("bfloat16" if on_gpu else "float32")  # CPU bf16 is ~5x slower than fp32 here
    engine: dict[str, Any] = {
        "model": spec["model_dir"],
        "tokenizer": spec["model_dir"],
        "dtype": dtype,
        "max_model_len": max(len(ids) for _, ids in ready) + max_new,
        "seed": int(sampling["seed"]),
        "enable_prefix_caching": True,  # every prompt starts with the same system prompt
        "enforce_eager": not on_gpu,  # CUDA graphs do not exist on CPU
    }
    adapter = spec.get("adapter_dir")
    if adapter:
        engine.update(enable_lora=True, max_lora_rank=lora_rank(adapter), max_loras=1)
    engine.update(spec.get("engine_kwargs") or {})
    llm = LLM(**engine)
    greedy = float(sampling["temperature"]) <= 0.0
    params = SamplingParams(
        max_tokens=max_new,
        temperature=0.0 if greedy else float(sampling["temperature"]),
        top_p=1.0 if greedy else float(sampling["top_p"]),
        repetition_penalty=float(sampling["repetition_penalty"]),
        # A per-request seed makes each article's sample independent of batch composition (resumes reproduce).
        seed=None if greedy else int(sampling["seed"]),
        ignore_eos=bool(sampling.get("ignore_eos", False)),
    )
    lora = LoRARequest("adapter", 1, adapter) if adapter else None
    started = time.perf_counter()
    outputs = llm.generate(
        [TokensPrompt(prompt_token_ids=ids) for _, ids in ready], params, lora_request=lora, use_tqdm=False
    )
    seconds = (time.perf_counter() - started) / len(ready)
    for (article_id, ids), output in zip(ready, outputs):
        completion = output.outputs[0]
        emit(
            {
                "article_id": article_id,
                "text": completion.text,
                "prompt_tokens": len(ids),
                "completion_tokens": len(completion.token_ids),
                "seconds": seconds,
                "error": None,
            }
        )
    return {
        "vllm": vllm.__version__,
        "dtype": dtype,
        "device": "cuda" if on_gpu else "cpu",
        "engine": {k: v for k, v in engine.items() if k not in ("model", "tokenizer")},
        "prompts": len(ready),
        "seconds_total": seconds * len(ready),
    }


def _failed(article_id: str, error: str, prompt_tokens: int = 0) -> dict[str, Any]:
    return {"article_id": article_id, "text": "", "prompt_tokens": prompt_tokens, "completion_tokens": 0,
            "seconds": 0.0, "error": error}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", required=True)
    parser.add_argument("--requests", required=True)
    parser.add_argument("--results", required=True)
    parser.add_argument("--exit-with-parent", action="store_true",
                        help="exit when stdin closes (a data-parallel shard whose parent is gone)")
    args = parser.parse_args(argv)
    if args.exit_with_parent:
        _exit_with_parent()
    spec = json.loads(Path(args.spec).read_text())
    lines = Path(args.requests).read_text(encoding="utf-8").split("\n")  # not splitlines: U+2028 may be in a prompt
    requests = [json.loads(line) for line in lines if line.strip()]
    with open(args.results, "w", encoding="utf-8") as out:

        def emit(row: dict[str, Any]) -> None:
            out.write(json.dumps({"kind": "result", **row}, ensure_ascii=False) + "\n")
            out.flush()  # a crash later in the run keeps the rows already written

        facts = run(spec, requests, emit)
        out.write(json.dumps({"kind": "facts", **facts}, default=str) + "\n")
    return 0


if __name__ == "__main__":  # vLLM's engine core runs in a spawned process: this guard is required
    sys.exit(main())
