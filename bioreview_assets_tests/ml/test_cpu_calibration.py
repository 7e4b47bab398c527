"""CPU thread calibration, the demo's time estimate, and the generation key naming the numerics it ran with."""

import torch

from bioreview_assets.config import loader
from bioreview_assets.core.hashing import stable_hash
from bioreview_assets.ml.cpu_calibration import Calibration, calibrate_threads, estimate_demo_minutes
from bioreview_assets.services.serving import generation_key


def test_calibration_sets_the_fastest_decode_count_it_measured():
    before = torch.get_num_threads()
    try:
        cal = calibrate_threads(max_threads=2, rounds=1)
        assert set(cal.decode_ms) == {1, 2} and set(cal.train_gflops) == {1, 2}
        assert cal.threads == min(cal.decode_ms, key=cal.decode_ms.get)
        assert torch.get_num_threads() == cal.threads
        assert all(ms > 0 for ms in cal.decode_ms.values()) and all(g > 0 for g in cal.train_gflops.values())
        assert f"{cal.threads} torch thread(s)" in cal.explain()
    finally:
        torch.set_num_threads(before)


def test_estimate_follows_the_token_limit_and_the_measured_rates():
    cal = Calibration(1, {1: 50.0}, {1: 100.0})
    args = dict(train_rows=64, train_tokens_per_row=750, generation_runs=4, prompt_tokens=500, articles=30,
                dtype="float32")
    short, long = (estimate_demo_minutes(cal, max_new_tokens=n, **args) for n in (264, 528))
    assert short.training_min == long.training_min > 0
    # Decode steps are 50 ms x 10 x 1.3 each: 264 more steps in each of 4 runs is 4 x 264 x 0.65 s.
    assert abs((long.generation_min - short.generation_min) * 60 - 4 * 264 * 0.65) < 1e-6
    faster = estimate_demo_minutes(Calibration(1, {1: 25.0}, {1: 200.0}), max_new_tokens=528, **args)
    assert faster.total_min < long.total_min


def test_generation_key_names_dtype_and_cache_only_when_the_backend_reports_them():
    cfg = loader.load_model("smollm2-135m")
    weights = {"kind": "base", "base": "h"}
    plain = generation_key(cfg, weights, "p")
    fp32 = generation_key(cfg, weights, "p", {"device": "cpu", "dtype": "float32", "kv_cache": "static"})
    bf16 = generation_key(cfg, weights, "p", {"device": "cpu", "dtype": "bfloat16", "kv_cache": "static"})
    assert "numerics" not in plain and fp32["numerics"]["dtype"] == "float32"
    assert stable_hash(fp32) != stable_hash(bf16) != stable_hash(plain)


def test_a_second_calibration_still_tries_every_count_after_the_first_lowered_it():
    import os

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)  # what a first calibration that chose one thread leaves behind
        cal = calibrate_threads(rounds=1)
        cores = len(os.sched_getaffinity(0))
        assert max(cal.decode_ms) == cores and (cores == 1 or 2 in cal.decode_ms)
    finally:
        torch.set_num_threads(before)


def test_training_estimate_is_the_measured_share_of_the_probe_rate():
    """A demo training step reaches only a share of the matmul probe's rate (0.07 in bf16 on the Xeon: 443.9 s
    measured where the bare probe rate said 30 s): the estimate divides by it, per dtype."""
    from bioreview_assets.ml.cpu_calibration import TRAIN_EFFICIENCY

    args = dict(train_rows=64, train_tokens_per_row=710, generation_runs=4, prompt_tokens=500, articles=30,
                max_new_tokens=624)
    bf16 = estimate_demo_minutes(Calibration(1, {1: 24.0}, {1: 1156.0}), dtype="bfloat16", **args)
    fp32 = estimate_demo_minutes(Calibration(1, {1: 34.0}, {1: 194.0}), dtype="float32", **args)
    bare = 64 * 6 * 135e6 * 710 / 1156e9 / 60
    assert abs(bf16.training_min - bare / TRAIN_EFFICIENCY["bfloat16"]) < 1e-9
    # The two measured demos: 443.9 s (bf16) and 800.7 s (fp32) of training; the estimates land within 15%.
    assert abs(bf16.training_min * 60 - 443.9) / 443.9 < 0.15
    assert abs(fp32.training_min * 60 - 800.7) / 800.7 < 0.15
