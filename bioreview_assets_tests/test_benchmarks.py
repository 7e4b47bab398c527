"""The GPU benchmark scripts on CPU with tiny shapes of the same architectures, so the lead's GPU command runs."""

import json
import subprocess
import sys
import textwrap

import pytest

from bioreview_assets.settings import REPO_ROOT

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
