"""The asset graph on a GPU, through Dagster: every asset of the demo's chain materialised with the real configs,
stores, checks and DuckDB refresh, with per-asset wall time and peak GPU memory.

Two chains, one Dagster instance (DAGSTER_HOME under --work):
  (a) `qwen3-8b-shape`: configs/models/qwen3-8b.yaml's training settings (NF4 or --quantization, 16k rows, its
      selective checkpointing) on a checkpoint with the Qwen3-8B shape and random weights, written by this script to a
      local folder that the config names as base.path, like a real checkpoint (the tokenizer is the tiny model's: no
      hub is reachable). Its articles are the sample's, each lengthened with other articles' sections so that the
      prompt fills the config's 15,000-token budget. The adapter is first trained in a subprocess that is stopped
      (SIGTERM) after its first checkpoint, then materialised again through the graph, which resumes it.
      Generation with the transformers backend at the config's batch (vLLM is not on the borrowed machine).
  (b) the demo's SmolLM2-135M with a GPU recipe (every training article, several epochs) on the bundled sample,
      beside its base model and BM25, through the same chain.
The doctor runs first for each chain. Output: a report on stdout (benchmarks/results/graph_gpu_<gpu>.txt).

Run (GPU, with the stack of benchmarks/device_stack/ on PYTHONPATH):
    python benchmarks/graph_gpu.py                       # both chains
    python benchmarks/graph_gpu.py --chain b             # SmolLM2 only
    python benchmarks/graph_gpu.py --shape tiny --chain a --train-steps 4 --save-steps 2   (CPU dry run)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

QWEN3_8B = {"hidden_size": 4096, "num_hidden_layers": 36, "num_attention_heads": 32, "num_key_value_heads": 8,
            "intermediate_size": 12288, "vocab_size": 151936, "head_dim": 128, "max_position_embeddings": 40960,
            "rope_theta": 1_000_000.0}
TINY = {"hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1,
        "intermediate_size": 256, "vocab_size": 2048, "head_dim": 64, "max_position_embeddings": 40960}
SHAPES = {"qwen3-8b": QWEN3_8B, "tiny": TINY}


def write_random_checkpoint(shape: str, folder: Path, tokenizer_dir: Path) -> None:
    """A Qwen3 checkpoint of this shape with random bf16 weights and the tiny model's tokenizer, as save_pretrained
    writes one (config.json + safetensors + tokenizer files)."""
    import torch
    from transformers import AutoTokenizer, Qwen3Config, Qwen3ForCausalLM

    if (folder / "config.json").exists():
        return
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    config = Qwen3Config(**SHAPES[shape], tie_word_embeddings=False, torch_dtype="bfloat16",
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    with torch.device(device):
        model = Qwen3ForCausalLM(config).to(torch.bfloat16)
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp), max_shard_size="5GB")
    tokenizer.save_pretrained(str(tmp))
    tmp.rename(folder)
    del model
    if device == "cuda":
        torch.cuda.empty_cache()


def lengthened_sample(folder: Path, factor: int) -> None:
    """The sample's splits with each article's sections followed by those of the next factor-1 articles of its split
    (its own title, abstract and concerns unchanged): long papers for a 16k-token training row."""
    from bioreview_assets.sample.generator import generate_sample_splits

    folder.mkdir(parents=True, exist_ok=True)
    for split, rows in generate_sample_splits().items():
        with open(folder / f"{split}.jsonl", "w") as out:
            for i, row in enumerate(rows):
                sections = dict(row["paper_text_sections"])
                for j in range(1, factor):
                    other = rows[(i + j) % len(rows)]["paper_text_sections"]
                    sections.update({f"{name} ({j})": text for name, text in other.items()})
                out.write(json.dumps({**row, "paper_text_sections": sections}) + "\n")


def chain_configs(chain: str, work: Path, args: argparse.Namespace) -> Path:
    """A configs/ copy whose project runs this chain's models only (and the model configs it adds)."""
    folder = work / f"configs-{chain}"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(REPO / "configs", folder)
    project = yaml.safe_load((folder / "project.yaml").read_text())
    models_dir = folder / "models"
    if chain == "a":
        model = yaml.safe_load((models_dir / "qwen3-8b.yaml").read_text())
        model["description"] = f"Qwen3-8B shape, random weights ({args.shape}), the qwen3-8b config's training"
        model["base"] = {"kind": "hub", "hub_id": "random/qwen3-8b-shape", "path": str(work / f"{args.shape}-random")}
        model["corpus"] = "all_nonfig"
        training = model["training"]
        # Random weights learn little in a few steps at the config's learning rate (the tiny dry run's loss fell
        # 0.4% in 4 steps at 2e-4), and the blocking train_loss_fell check asks for a fall of 0.5%: a higher rate
        # makes the fall visible, so the check judges the run instead of the shape's randomness.
        training.update(max_steps=args.train_steps, save_steps=args.save_steps, logging_steps=1,
                        gradient_accumulation_steps=1, eval_subset=2, save_total_limit=4,
                        learning_rate=args.lr, warmup_ratio=0.0)
        if args.quantization:
            training["quantization"] = args.quantization
        if args.shape == "tiny":
            training.update(max_length=4096, quantization="none", bf16=False, optim="adamw_torch")
            model["prompt"]["token_budget"] = 3500
            model["gpu"] = False
        # The transformers backend keeps a dense KV cache: 16 prompts of 15k tokens (36 GiB of cache) fit an 80 GB
        # card beside the bf16 weights, the config's 64 (vLLM's paged batch) would not (the doctor says so).
        model["generation"] = {"backend": "transformers", "max_new_tokens": args.new_tokens, "temperature": 0.0,
                               "repetition_penalty": 1.05, "batch_size": args.gen_batch}
        (models_dir / "qwen3-8b-shape.yaml").write_text(yaml.safe_dump(model, sort_keys=False))
        names = ["qwen3-8b-shape"]
    else:
        tuned = yaml.safe_load((models_dir / "smollm2-135m.yaml").read_text())
        base = yaml.safe_load((models_dir / "smollm2-135m-base.yaml").read_text())
        tuned["description"] = "SmolLM2-135M-Instruct, LoRA fine-tuned on a GPU (every training article, epochs)"
        tuned["gpu"] = base["gpu"] = True
        tuned["base_system"] = "smollm2-135m-base-gpu"
        tuned["training"].update(max_steps=-1, epochs=args.smollm_epochs, bf16=True, save_steps=1000,
                                 logging_steps=10, learning_rate=args.smollm_lr, lr_scheduler="cosine")
        (models_dir / "smollm2-135m-gpu.yaml").write_text(yaml.safe_dump(tuned, sort_keys=False))
        (models_dir / "smollm2-135m-base-gpu.yaml").write_text(yaml.safe_dump(base, sort_keys=False))
        names = ["smollm2-135m-gpu", "smollm2-135m-base-gpu"]
    project.update(models=names, demo_models=names, sweeps=[], probes=[], ensembles=[])
    (folder / "project.yaml").write_text(yaml.safe_dump(project, sort_keys=False))
    return folder


def chain_env(chain: str, work: Path, args: argparse.Namespace) -> dict[str, str]:
    env = dict(os.environ, DAGSTER_HOME=str(work / "dagster_home"), BIOREVIEW_STORAGE=str(work / f"storage-{chain}"),
               BIOREVIEW_CONFIG_DIR=str(chain_configs(chain, work, args)),
               BIOREVIEW_MODEL_CACHE=str(work / "model_cache"), HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    if chain == "a":
        env["BIOREVIEW_DATA_DIR"] = str(work / "data-long")
    else:
        env.pop("BIOREVIEW_DATA_DIR", None)
    return env


class StepMeter:
    """Wall time and peak GPU memory (allocated and reserved, from each step's own start) of every plan step."""

    def __init__(self) -> None:
        self.rows: list[dict] = []

    @contextlib.contextmanager
    def __call__(self, step):
        import torch

        cuda = torch.cuda.is_available()
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        t0 = time.monotonic()
        try:
            yield
        finally:
            row = {"step": step.label, "wall_s": round(time.monotonic() - t0, 1)}
            if cuda:
                torch.cuda.synchronize()
                row["peak_alloc_gib"] = round(torch.cuda.max_memory_allocated() / 1024**3, 2)
                row["peak_reserved_gib"] = round(torch.cuda.max_memory_reserved() / 1024**3, 2)
            self.rows.append(row)


def run_chain_inside(chain: str) -> int:
    """In the chain's own process (its env set): doctor, then the plan, then the leaderboard and check verdicts."""
    from bioreview_assets.cli.main import main as cli_main
    from bioreview_assets.cli.demo import demo_plan, run_demo
    from bioreview_assets.orchestration.resources import StorageResource
    from bioreview_assets.store.records import AdapterMeta
    from bioreview_assets.cli.summary import print_demo_summary

    print(f"\n==== chain {chain}: doctor ====", flush=True)
    cli_main(["doctor"])  # reported, not a gate: the run shows what a blocking finding would have stopped
    plan = [step for step in demo_plan() if step.assets[0] != "published_adapter"]
    meter = StepMeter()
    results = run_demo(plan, observe=meter, stop_on_failure=False)
    print(f"\n==== chain {chain}: per-asset wall time, peak GPU memory, status ====")
    print(f"{'step':58s} {'status':8s} {'wall s':>8s} {'peak alloc GiB':>15s} {'peak reserved GiB':>18s}")
    for (step, result), row in zip(results, meter.rows):
        status = "SUCCESS" if result.success else "FAILURE"
        print(f"{row['step']:58s} {status:8s} {row['wall_s']:8.1f} {row.get('peak_alloc_gib', float('nan')):15.2f} "
              f"{row.get('peak_reserved_gib', float('nan')):18.2f}")
        if not result.success:
            for event in result.all_events:
                if event.event_type_value == "STEP_FAILURE":
                    error = event.event_specific_data.error
                    print("    " + (error.to_string() if error else str(event.message))[-3000:].replace("\n", "\n    "))
    print(json.dumps({"chain": chain, "steps": meter.rows,
                      "failed": [s.label for s, r in results if not r.success]}))
    store = StorageResource().store()
    for meta_path in sorted(Path(store.root, "adapter").glob(f"*/{AdapterMeta.FILE}")):
        meta = AdapterMeta.read(meta_path.parent).to_json()
        keys = ("model", "device", "gpu", "quantization", "selective_checkpointing_layers", "activation_offloading",
                "liger_kernels", "speed_kernels", "train_rows", "train_tokens_total", "global_step", "max_steps",
                "resumed_from_step", "steps_this_run", "tokens_per_s", "peak_gpu_memory_gib", "final_train_loss",
                "final_val_loss", "train_time_s")
        print("adapter_meta: " + json.dumps({k: meta.get(k) for k in keys}))
    print_demo_summary(store, results)
    return 0 if all(r.success for _, r in results) else 1


def interrupted_training(env: dict[str, str], work: Path, timeout_s: float) -> None:
    """Train chain a's adapter in a subprocess and SIGTERM it once its first checkpoint is written."""
    checkpoints = Path(env["BIOREVIEW_STORAGE"]) / "adapter" / "qwen3-8b-shape" / "checkpoints"
    code = ("from bioreview_assets.cli.demo import demo_plan, run_demo; "
            "plan = [s for s in demo_plan() if s.assets[0] in ('benchmark_split', 'sft_corpus', 'adapter')]; "
            "run_demo(plan)")
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, cwd=str(REPO), start_new_session=True)
    t0 = time.monotonic()
    while proc.poll() is None and time.monotonic() - t0 < timeout_s:
        done = [p for p in checkpoints.glob("checkpoint-*") if (p / "trainer_state.json").exists()]
        if done:
            time.sleep(2)  # let the checkpoint callback finish its own files
            print(f"interrupt: {done[0].name} written after {time.monotonic() - t0:.0f}s; sending SIGTERM", flush=True)
            os.killpg(proc.pid, signal.SIGTERM)
            break
        time.sleep(1)
    rc = proc.wait(timeout=300)
    kept = sorted(p.name for p in checkpoints.glob("checkpoint-*"))
    print(f"interrupt: training process exited with {rc}; checkpoints kept: {kept}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chain", choices=["a", "b", "both"], default="both")
    parser.add_argument("--shape", choices=sorted(SHAPES), default="qwen3-8b")
    parser.add_argument("--quantization", default=None, help="override qwen3-8b.yaml's training.quantization")
    parser.add_argument("--train-steps", type=int, default=8)
    parser.add_argument("--save-steps", type=int, default=3)
    parser.add_argument("--lr", type=float, default=2e-3, help="chain a's learning rate (random weights)")
    parser.add_argument("--new-tokens", type=int, default=256, help="chain a: random weights ramble to the limit")
    parser.add_argument("--lengthen", type=int, default=48,
                        help="chain a: sections of this many articles per paper (48: about 15k tokens of the tiny "
                             "tokenizer, the config's prompt budget)")
    parser.add_argument("--gen-batch", type=int, default=16, help="chain a: generation.batch_size")
    parser.add_argument("--smollm-epochs", type=float, default=3)
    parser.add_argument("--smollm-lr", type=float, default=1e-3)
    parser.add_argument("--no-interrupt", action="store_true")
    parser.add_argument("--work", default="/tmp/graph_gpu")
    parser.add_argument("--inside", choices=["a", "b"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inside:
        return run_chain_inside(args.inside)

    work = Path(args.work)
    (work / "dagster_home").mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "k8s" / "dagster.local.yaml", work / "dagster_home" / "dagster.yaml")
    from bioreview_assets.ml.runtime_env import library_versions

    print(json.dumps({"versions": library_versions(), "argv": sys.argv[1:]}), flush=True)
    status = 0
    for chain in (["a", "b"] if args.chain == "both" else [args.chain]):
        env = chain_env(chain, work, args)
        t0 = time.monotonic()
        if chain == "a":
            lengthened_sample(work / "data-long", args.lengthen)
            tokenizer_dir = _tiny_tokenizer_dir(env)
            write_random_checkpoint(args.shape, work / f"{args.shape}-random", tokenizer_dir)
            print(f"chain a: {args.shape} random checkpoint ready after {time.monotonic() - t0:.0f}s", flush=True)
            if not args.no_interrupt:
                interrupted_training(env, work, timeout_s=900)
        done = subprocess.run([sys.executable, __file__, "--inside", chain, *sys.argv[1:]], env=env, cwd=str(REPO))
        print(f"chain {chain}: exit {done.returncode} after {time.monotonic() - t0:.0f}s", flush=True)
        status |= done.returncode
    return status


def _tiny_tokenizer_dir(env: dict[str, str]) -> Path:
    """The tiny random model's folder (built once into the model cache): its tokenizer serves the random shapes."""
    code = ("from bioreview_assets.config import loader; from bioreview_assets.ml.models import resolve_base_model; "
            "print(resolve_base_model(loader.load_model('tiny-random')))")
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=str(REPO), capture_output=True, text=True,
                         check=True)
    return Path(out.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    sys.exit(main())
