"""`bioreview doctor`: each blocking condition found from faked machine facts, the memory plan against measured
peaks, the real probe of this (CPU) machine, and the command's exit code."""

from __future__ import annotations

import dataclasses

import pytest

from bioreview_assets.doctor.diagnose import (
    RunSpec,
    blocking,
    diagnose_machine,
    diagnose_run,
    fla_guard_fires,
)
from bioreview_assets.doctor.facts import GpuFacts, MachineFacts, probe, triton_pin_of_torch
from bioreview_assets.doctor.plan import Architecture, MemoryPlan, generation_peak_gib, training_peak_gib

H100 = GpuFacts("NVIDIA H100 80GB HBM3", (9, 0), free_gib=78.0, total_gib=79.2)
A100_40 = GpuFacts("NVIDIA A100-SXM4-40GB", (8, 0), free_gib=38.5, total_gib=39.4)
ALL_KERNELS = {"bitsandbytes": "0.50.2", "liger-kernel": "0.8.5", "fla-core": "0.6.0",
               "flash-linear-attention": "0.6.0", "causal-conv1d": None}
QWEN3_8B = Architecture.from_config(dict(hidden_size=4096, num_hidden_layers=36, num_attention_heads=32,
                                         num_key_value_heads=8, intermediate_size=12288, vocab_size=151936,
                                         head_dim=128))


def machine(gpu=H100, triton="3.7.1", **changes) -> MachineFacts:
    facts = MachineFacts(torch="2.13.0", cuda_build="13.0", gpu=gpu, triton=triton, triton_expected_by_torch="3.7.1",
                         packages=dict(ALL_KERNELS))
    return dataclasses.replace(facts, **changes)


def run(**changes) -> RunSpec:
    spec = RunSpec(model="m", gpu=True, finetune=True, quantization="nf4", liger="auto", linear_attention=False,
                   generation_backend="transformers", decode="eager", weights_error=None,
                   plan=MemoryPlan(training_gib=14.0, generation_gib=30.0))
    return dataclasses.replace(spec, **changes)


def failing(findings) -> list[str]:
    return [f.message for f in blocking(findings)]


def test_a_ready_hopper_machine_has_no_blocking_finding():
    facts = machine()
    findings = diagnose_machine(facts, [run()]) + diagnose_run(facts, run(quantization="nf4-fp8",
                                                                           linear_attention=True))
    assert failing(findings) == []


def test_fp8_modes_are_refused_below_compute_capability_8_9():
    for mode in ("fp8", "nf4-fp8"):
        messages = failing(diagnose_run(machine(gpu=A100_40), run(quantization=mode)))
        assert len(messages) == 1 and "FP8" in messages[0] and "8.0" in messages[0]
    assert failing(diagnose_run(machine(gpu=A100_40), run(quantization="nf4"))) == []
    # A model that is not fine-tuned never multiplies in FP8.
    assert failing(diagnose_run(machine(gpu=A100_40), run(quantization="fp8", finetune=False))) == []


def test_nf4_int8_runs_on_an_a100_and_is_refused_before_ampere():
    assert failing(diagnose_run(machine(gpu=A100_40), run(quantization="nf4-int8"))) == []
    t4 = dataclasses.replace(A100_40, name="Tesla T4", capability=(7, 5))  # only the capability differs
    messages = failing(diagnose_run(machine(gpu=t4), run(quantization="nf4-int8")))
    assert len(messages) == 1 and "INT8" in messages[0] and "7.5" in messages[0]


def test_bitsandbytes_without_its_cuda_library_blocks_nf4_only():
    facts = machine(bitsandbytes_cuda="bitsandbytes loaded no CUDA library (ErrorHandlerMockBNBNativeLibrary)")
    assert "no CUDA library" in failing(diagnose_run(facts, run(quantization="nf4")))[0]
    assert failing(diagnose_run(facts, run(quantization="fp8"))) == []


def test_liger_missing_fails_when_asked_for_and_warns_on_auto():
    facts = machine(packages={**ALL_KERNELS, "liger-kernel": None})
    assert failing(diagnose_run(facts, run(liger="on")))
    auto = diagnose_run(facts, run(liger="auto"))
    assert failing(auto) == [] and any(f.level == "warn" and "liger" in f.message for f in auto)
    assert not any("liger" in f.message for f in diagnose_run(facts, run(liger="off")))


def test_fla_guard_fires_on_hopper_inside_the_bad_triton_range_only():
    assert fla_guard_fires(machine(triton="3.6.0"))
    assert fla_guard_fires(machine(triton="3.4.0"))
    assert not fla_guard_fires(machine(triton="3.7.1"))
    assert not fla_guard_fires(machine(triton="3.3.1"))
    assert not fla_guard_fires(machine(gpu=A100_40, triton="3.6.0"))
    messages = failing(diagnose_run(machine(triton="3.6.0"), run(linear_attention=True)))
    assert len(messages) == 1 and "#640" in messages[0]
    # Generation only runs the forward, which the guard does not touch.
    assert failing(diagnose_run(machine(triton="3.6.0"), run(linear_attention=True, finetune=False))) == []


def test_linear_attention_without_fla_is_blocking():
    facts = machine(packages={**ALL_KERNELS, "fla-core": None, "flash-linear-attention": None})
    assert "flash-linear-attention" in failing(diagnose_run(facts, run(linear_attention=True)))[0]


def test_triton_other_than_torchs_pin_warns_and_blocks_compiled_decode():
    facts = machine(triton="3.7.1", triton_expected_by_torch="3.6.0")
    eager = diagnose_machine(facts, [run()])
    assert failing(eager) == [] and any(f.subject == "triton" and f.level == "warn" for f in eager)
    assert any("compile decode" in m for m in failing(diagnose_machine(facts, [run(decode="compiled")])))


def test_planned_memory_against_free_memory_of_the_gpu_given():
    small = machine(gpu=A100_40)
    assert failing(diagnose_run(small, run(plan=MemoryPlan(training_gib=14.0, generation_gib=30.0)))) == []
    messages = failing(diagnose_run(small, run(plan=MemoryPlan(training_gib=14.0, generation_gib=68.5))))
    assert len(messages) == 1 and "generation batch" in messages[0] and "38.5 GiB are free" in messages[0]
    # The 10% headroom: 35.5 GiB planned does not fit in 38.5 free.
    assert failing(diagnose_run(small, run(plan=MemoryPlan(training_gib=35.5, generation_gib=None))))


def test_no_gpu_blocks_gpu_configs_and_not_cpu_ones():
    cpu = machine(gpu=None)
    assert failing(diagnose_machine(cpu, [run(gpu=False)])) == []
    assert "m need one" in failing(diagnose_machine(cpu, [run(gpu=True)]))[0]


def test_vllm_missing_blocks_a_vllm_config_on_a_gpu():
    facts = machine(vllm="BIOREVIEW_VLLM_PYTHON=/opt/vllm/bin/python does not exist")
    assert "/opt/vllm" in failing(diagnose_machine(facts, [run(generation_backend="vllm")]))[0]
    assert failing(diagnose_machine(facts, [run(generation_backend="transformers")])) == []


def test_missing_weights_and_unwritable_storage_block():
    assert failing(diagnose_run(machine(), run(weights_error="weights for Qwen/Qwen3-8B are not here")))
    assert failing(diagnose_machine(machine(storage_error="cannot write under /data"), [run()]))


@pytest.mark.parametrize(("kept", "offload", "measured"), [(0, False, 13.24), (20, False, 15.66)])
def test_training_plan_is_within_10_percent_of_measured_peaks(kept, offload, measured):
    """Qwen3-8B shape, NF4, 16k tokens (benchmarks/results/train_throughput_h100.txt, train_fp8_h200.txt)."""
    planned = training_peak_gib(QWEN3_8B, quantization="nf4", max_length=16384, batch_size=1, kept_layers=kept,
                                offload=offload)
    assert abs(planned - measured) / measured < 0.10, planned


@pytest.mark.parametrize(("batch", "measured"), [(64, 68.5), (128, 121.8)])
def test_generation_plan_is_within_10_percent_of_measured_peaks(batch, measured):
    planned = generation_peak_gib(QWEN3_8B, batch_size=batch, prompt_tokens=4096, new_tokens=1000)
    assert abs(planned - measured) / measured < 0.10, planned


def test_hybrid_architecture_keeps_kv_cache_for_its_full_attention_layers_only():
    config = dict(hidden_size=4096, num_hidden_layers=32, num_attention_heads=16, num_key_value_heads=4,
                  intermediate_size=12288, vocab_size=248320, head_dim=256,
                  layer_types=["linear_attention"] * 3 + ["full_attention"] + ["linear_attention"] * 3
                  + ["full_attention"] + ["linear_attention", "linear_attention", "linear_attention",
                                          "full_attention"] * 6)
    assert Architecture.from_config({"text_config": config}).full_attention_layers == 8


def test_probe_of_this_machine(tmp_path):
    facts = probe(storage_root=str(tmp_path / "store"), vllm_python=None, want_vllm=False)
    assert facts.torch and facts.storage_error is None and facts.vllm is None
    bad = probe(storage_root="/dev/null/store", vllm_python=None, want_vllm=True)
    assert "cannot write under /dev/null/store" in bad.storage_error
    assert "BIOREVIEW_VLLM_PYTHON is unset" in bad.vllm
    assert triton_pin_of_torch() is None or triton_pin_of_torch()[0].isdigit()


def test_cli_exit_code(capsys):
    from bioreview_assets.cli.main import main

    assert main(["doctor"]) == 0
    assert "ready to run" in capsys.readouterr().out
    assert main(["doctor", "qwen3-8b"]) == 1
    out = capsys.readouterr().out
    assert "[FAIL] qwen3-8b" in out and "blocking problem" in out


def test_gpu_steps_check_their_pod_before_loading_anything():
    """adapter and generations run the doctor's checks for their own model first: on this CPU machine a GPU config
    stops with the findings, a CPU config passes through."""
    from bioreview_assets.doctor.report import PreflightFailed, preflight
    from bioreview_assets.config.model import BaseModelSource, ModelConfig

    gpu_config = ModelConfig(name="tiny-on-gpu", base=BaseModelSource(kind="tiny_random"), gpu=True)
    for training in (True, False):
        with pytest.raises(PreflightFailed, match="no CUDA GPU visible: tiny-on-gpu need one"):
            preflight(gpu_config, training=training)
    assert preflight(gpu_config.model_copy(update={"gpu": False}), training=True) == []
