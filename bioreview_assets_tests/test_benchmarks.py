"""The GPU benchmark scripts on CPU with tiny shapes of the same architectures, so the lead's GPU command runs."""

import json
import subprocess
import sys
import textwrap

import pytest

from bioreview_assets.config.loader import REPO_ROOT

pytestmark = pytest.mark.slow


def test_qwen35_generation_with_and_without_fla(tmp_path):
    out = tmp_path / "gen.txt"
    command = [sys.executable, "benchmarks/generation_throughput.py", "--shape", "tiny-qwen3.5", "--variants", "static",
               "--reference-articles", "0", "--compare-no-fla", "--out", str(out)]
    subprocess.run(command, cwd=REPO_ROOT, check=True, capture_output=True, timeout=600)
    report = out.read_text()
    assert "linear attention: " in report and "linear attention [no fla]: torch reference path" in report
    assert "static cache, eager [no fla]" in report and "static cache, eager (steady)" in report


def test_qwen35_training_step_runs_without_pydantic(tmp_path):
    """The GPU box has no pydantic: the script's training path must not need it."""
    runner = tmp_path / "no_pydantic.py"
    runner.write_text(textwrap.dedent("""
        import runpy, sys

        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("pydantic", "dagster"):
                    raise ImportError("blocked " + name)

        sys.meta_path.insert(0, Block())
        sys.argv = sys.argv[1:]
        runpy.run_path(sys.argv[0], run_name="__main__")
    """))
    command = [sys.executable, str(runner), "benchmarks/train_throughput.py", "--shape", "tiny-qwen3.5", "--variants",
               "ours-nf4lin", "--warmup", "1", "--steps", "1", "--profile", "", "--child"]
    done = subprocess.run(command, cwd=REPO_ROOT, check=True, capture_output=True, text=True, timeout=600)
    (line,) = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    result = json.loads(line.removeprefix("RESULT "))
    assert "error" not in result, result
    assert result["tokens_per_s"] > 0 and result["kept_bf16"] == ["linear_attn"]


def test_training_step_under_torchrun(tmp_path):
    """`--gpus N` runs the setup under torchrun (here 1 CPU rank): the path the lead compares with the default one."""
    out = tmp_path / "train.json"
    command = [sys.executable, "benchmarks/train_throughput.py", "--tiny", "--gpus", "1", "--warmup", "1", "--steps",
               "1", "--profile", "", "--json", str(out)]
    done = subprocess.run(command, cwd=REPO_ROOT, check=True, capture_output=True, text=True, timeout=600)
    (result,) = json.loads(out.read_text())["results"]
    assert "error" not in result, result
    assert result["setup"] == "ours x1" and result["gpus"] == 1
    (rank,) = result["ranks"]
    assert rank["rank"] == 0 and rank["world_size"] == 1 and rank["tokens_per_s"] > 0
    assert result["tokens_per_s_per_rank"] == [rank["tokens_per_s"]] == [result["tokens_per_s"]]
    assert "under torchrun with 1 rank(s)" in done.stdout and "  rank 0 " in done.stdout


def test_guard_compares_window_means_against_the_first_curve():
    import importlib.util

    spec = importlib.util.spec_from_file_location("train_throughput", REPO_ROOT / "benchmarks/train_throughput.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    reference = [4.0] * 20 + [2.0] * 20
    curves = {"bf16": reference, "close": [4.02] * 20 + [2.0] * 20, "far": [4.0] * 20 + [2.1] * 20}
    means, deviations = module.guard_deviations(curves, window=20)
    assert means["bf16"] == [4.0, 2.0]
    assert deviations["close"] == pytest.approx(0.005) and deviations["close"] <= module.GUARD_LIMIT
    assert deviations["far"] == pytest.approx(0.05) and deviations["far"] > module.GUARD_LIMIT
    assert "bf16" not in deviations


def train_throughput_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("train_throughput", REPO_ROOT / "benchmarks/train_throughput.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_corpus_a_rows_have_the_reference_corpus_lengths_for_a_seed():
    module = train_throughput_module()
    pairs = module.corpus_a_lengths(4000, 16384, seed=1)
    assert pairs == module.corpus_a_lengths(4000, 16384, seed=1) != module.corpus_a_lengths(4000, 16384, seed=2)
    prompts, targets = [p for p, _ in pairs], [t for _, t in pairs]
    real_per_counted, system = module.CORPUS_A["real_per_counted"], module.CORPUS_A["system_tokens"]
    counted = [(p - system) / real_per_counted for p in prompts]  # back to the corpus's "chars/3" tokens
    # docs/reference.md, reference pipeline §1.5: mean 12.4k counted tokens, 52.8% of prompts cut at the 15,000
    # budget, none over it.
    assert abs(sum(counted) / len(counted) - 12_412) < 150
    assert abs(sum(c >= 14_500 for c in counted) / len(counted) - 0.528) < 0.03 and max(counted) <= 15_001
    assert 8_500 < sum(prompts) / len(prompts) < 10_000  # ~9-11k real tokens of user turn, plus the system prompt
    # Targets: a few hundred to a few thousand tokens (14.1 concerns of ~70 tokens on average; reference pipeline
    # §1.8).
    assert min(targets) >= 150 and max(targets) <= 2_250 and 900 < sum(targets) / len(targets) < 1_100
    assert all(p + t <= 16384 for p, t in pairs)
    tiny = module.corpus_a_lengths(50, 256, seed=1)  # --tiny: the same shape at 1/64
    assert all(p + t <= 256 for p, t in tiny) and abs(tiny[0][0] - pairs[0][0] / 64) <= 1


def test_real_tokens_per_s_over_uneven_steps_and_the_pack_suffix():
    module = train_throughput_module()
    result = module.summarise("x", [9.0, 1.0, 2.0, 3.0], [100, 1000, 3000, 2000], warmup=1, extra={})
    assert result["tokens_per_s"] == 1000.0 and result["real_tokens_per_step"] == [1000, 3000, 2000]
    assert module.parse_variant("ours-nf4int8+sac+pack") == ("ours-nf4int8", "all", False, False, True)
    assert module.OURS["ours-nf4int8"][0] == "nf4-int8"


def test_corpus_a_rows_packed_on_the_int8_path_smoke(tmp_path):
    """--rows corpus-a with +pack: packed steps carry more real tokens than any one row, counted without padding."""
    module = train_throughput_module()
    command = [sys.executable, "benchmarks/train_throughput.py", "--tiny", "--rows", "corpus-a", "--variants",
               "ours-nf4int8+pack", "--warmup", "1", "--steps", "4", "--profile", "", "--child"]
    done = subprocess.run(command, cwd=REPO_ROOT, check=True, capture_output=True, text=True, timeout=600)
    (line,) = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    result = json.loads(line.removeprefix("RESULT "))
    assert "error" not in result, result
    assert result["packing"] is True and result["quantization"] == "nf4-int8" and result["tokens_per_s"] > 0
    # Each step is one of trl's bfd bins of the same 15 rows (3 x (warmup + steps)), counted to the token: no padding.
    from datasets import Dataset
    from trl.data_utils import pack_dataset

    rows = module.corpus_a_features(15, 256, 2048, seed=1)
    bins = pack_dataset(Dataset.from_list([f.as_row() for f in rows]), 256, strategy="bfd")
    assert len(bins) < len(rows)  # some bin holds two rows
    totals = {sum(lengths) for lengths in bins["seq_lengths"]}
    assert len(result["real_tokens_per_step"]) == 4 and set(result["real_tokens_per_step"]) <= totals


def test_int8_matmul_benchmark_runs_its_calls_on_cpu():
    command = [sys.executable, "benchmarks/int8_matmul.py", "--tiny", "--repeats", "1"]
    done = subprocess.run(command, cwd=REPO_ROOT, check=True, capture_output=True, text=True, timeout=600)
    assert "(128, 64)" in done.stdout and "per step (2 layers" in done.stdout and "nf4-int8" in done.stdout
