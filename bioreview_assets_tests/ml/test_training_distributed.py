"""Data-parallel training on CPU ranks (torchrun + gloo): 2 ranks train what 1 rank trains, a killed rank fails the
step by name, the re-run resumes; the launcher's command, environment, guards and failure report.

Tolerance: none. With gradient_accumulation_steps 2 on one rank and 1 on each of two ranks, the optimizer step sums
the same two micro-batch gradients (a + b on one rank, an all-reduce of a and b on two: IEEE addition of two terms
is commutative), the loss is scaled by 2 and the gradients divided by 2 (exact in binary), and every other operation
is the same per row in the same global order. So the loss curve and the adapter are bit-identical, and a wrong
effective batch, data order or resume shows as an inequality. With more micro-batches per step the sums are
reassociated across ranks and the results can differ at fp32 rounding level (not tested here).

One exception, measured: after a resume, the steps after the first resumed one differ from the uninterrupted run in
the last bits on one CPU class (an Intel Xeon with AVX-512 but no avx512_bf16: 1.3e-7 relative on the loss from step 4
on, the same at a316d59, before any change of session 12), while they were bit-identical on the AMD EPYC machines.
The cause is not found (the resumed step itself matches exactly); the resumed run is compared within 1e-6 relative,
and its adapter within 1e-2 in relative norm per tensor (measured 9.2e-4: Adam amplifies last-bit gradient
differences in near-zero weights). A wrong data order, batch or resume point still fails: the
steps up to the first resumed one are compared bit for bit, and another row in a step changes its loss far beyond 1e-6
(the rows differ in length and content).
"""

from __future__ import annotations

import json
import time

import pytest

from bioreview_assets.store.records import AdapterMeta

from bioreview_assets_tests.ml.test_training import CORPUS_HASH, PROMPT_HASH, corpus, tiny_cfg


def parallel_cfg(gpus: int, **training):
    """tiny-random, 6 optimizer steps of 2 rows each (the effective batch), checkpoints at steps 2, 4 and 6."""
    return tiny_cfg(gpus=gpus, gradient_accumulation_steps=2, max_steps=6, save_steps=2, save_total_limit=3,
                    **training)


def adapter_tensors(folder):
    from safetensors.torch import load_file

    return load_file(str(folder / "adapter" / "adapter_model.safetensors"))


def train_with_fault(cfg, train, val, out, fault):
    """train_adapter's multi-rank path (same guards and resume point), with a rank that dies on purpose."""
    from bioreview_assets.ml.runtime_env import library_versions
    from bioreview_assets.ml.training.checkpoints import run_identity
    from bioreview_assets.ml.training.launch import train_on_ranks
    from bioreview_assets.ml.training.recipe import prepare_run

    identity = run_identity(cfg, prompt_hash=PROMPT_HASH, corpus_hash=CORPUS_HASH)
    versions = library_versions()
    resume = prepare_run(cfg, out, identity, versions, allow_version_mismatch=False)
    return train_on_ranks(cfg, train, val, out, identity=identity, versions=versions, resume=resume, fault=fault)


@pytest.fixture(scope="module")
def one_rank(tmp_path_factory):
    """The reference: the same training in this process, one rank (today's path)."""
    from bioreview_assets.ml.models import resolve_base_model
    from bioreview_assets.ml.training import train_adapter

    resolve_base_model(parallel_cfg(1))  # built before the ranks start, once for both
    out = tmp_path_factory.mktemp("one-rank")
    train, val = corpus()
    run = train_adapter(parallel_cfg(1), train, val, out, prompt_hash=PROMPT_HASH, corpus_hash=CORPUS_HASH)
    return out, run.meta.to_json()


# ------------------------------------------------------------------------------------------- on two CPU ranks


@pytest.mark.slow
def test_two_ranks_killed_then_resumed_train_the_one_rank_adapter(one_rank, tmp_path):
    import torch

    from bioreview_assets.ml.training import train_adapter
    from bioreview_assets.ml.training.checkpoints import CHECKPOINT_MARKER, WorldSizeChangeError
    from bioreview_assets.ml.training.launch import DistributedTrainingError, RankFault

    reference_dir, reference = one_rank
    train, val = corpus()
    out = tmp_path / "adapter"
    kwargs = {"prompt_hash": PROMPT_HASH, "corpus_hash": CORPUS_HASH}

    # rank 1 dies after optimizer step 3 (no exception, as a killed process): the step fails naming rank 1
    started = time.time()
    with pytest.raises(DistributedTrainingError) as failed:
        train_with_fault(parallel_cfg(2), train, val, out, RankFault(rank=1, after_step=3, exit_code=17))
    killed_s = time.time() - started
    assert failed.value.rank == 1 and failed.value.failures[0].exitcode == 17
    message = str(failed.value)
    assert message.startswith("training failed on rank 1 of 2: rank 1 (local rank 1) exited with code 17")
    assert "resumes from the last one" in message
    checkpoints = out / "checkpoints"
    complete = sorted(p.parent.name for p in checkpoints.glob(f"checkpoint-*/{CHECKPOINT_MARKER}"))
    assert complete == ["checkpoint-2"]
    marker = json.loads((checkpoints / "checkpoint-2" / CHECKPOINT_MARKER).read_text())
    assert (marker["world_size"], marker["strategy"]) == (2, "ddp")
    assert {p.name for p in (checkpoints / "checkpoint-2").glob("rng_state*")} == {"rng_state_0.pth",
                                                                                  "rng_state_1.pth"}
    assert not (out / "adapter_meta.json").exists() and not (out / "adapter").exists()

    # the same checkpoints with another number of ranks: refused before anything is touched
    with pytest.raises(WorldSizeChangeError, match=r"training on 2 rank\(s\); this run has training.gpus=1"):
        train_adapter(parallel_cfg(1), train, val, out, **kwargs)
    assert (checkpoints / "checkpoint-2" / CHECKPOINT_MARKER).exists()

    # materialising again (what the adapter asset calls) resumes on 2 ranks from step 2
    events: list[dict] = []
    started = time.time()
    run = train_adapter(parallel_cfg(2), train, val, out, progress=events.append, **kwargs)
    resumed_s = time.time() - started
    assert run.trainer is None  # the trainer lived in the rank processes
    assert run.meta == AdapterMeta.read(out)
    meta = run.meta.to_json()
    assert (meta["resumed_from_step"], meta["global_step"], meta["steps_this_run"]) == (2, 6, 4)
    assert (meta["world_size"], meta["strategy"], meta["gradient_accumulation_per_rank"]) == (2, "ddp", 1)
    assert meta["effective_batch"] == reference["effective_batch"] == 2 and reference["world_size"] == 1
    assert len(meta["tokens_per_s_per_rank"]) == 2 and all(v > 0 for v in meta["tokens_per_s_per_rank"])
    assert meta["tokens_per_s"] > max(meta["tokens_per_s_per_rank"])  # the total counts both ranks' tokens
    # what one rank trains uninterrupted, to fp32 rounding after the resume (module docstring: why 1e-6)
    for kind in ("train", "val"):
        ours_curve, theirs_curve = meta["loss_history"][kind], reference["loss_history"][kind]
        assert [step for step, _ in ours_curve] == [step for step, _ in theirs_curve]
        assert [loss for _, loss in ours_curve] == pytest.approx([loss for _, loss in theirs_curve], rel=1e-6, abs=0)
    assert [step for step, _ in meta["loss_history"]["train"]] == [1, 2, 3, 4, 5, 6]
    # up to the resume point and the first resumed step, bit for bit
    assert meta["loss_history"]["train"][:3] == reference["loss_history"]["train"][:3]
    ours, theirs = adapter_tensors(out), adapter_tensors(reference_dir)
    assert ours.keys() == theirs.keys()
    # Adam divides by sqrt(v): last-bit gradient differences flip the early updates of weights whose gradients are
    # near zero, so the adapter drifts far more than the loss (measured: 9.2e-4 relative norm on the Xeon).
    drift = max(float((ours[k] - theirs[k]).norm() / theirs[k].norm().clamp_min(1e-12)) for k in ours)
    assert drift <= 1e-2, f"adapter differs from the uninterrupted run by {drift:.2e} (relative norm)"
    assert any(k.endswith("lora_B.weight") and ours[k].abs().max() > 0 for k in ours)  # it did train
    # rank 0 alone reports: each resumed step once, relayed to this process
    assert [e["step"] for e in events if "loss" in e] == [3, 4, 5, 6]
    assert [e["step"] for e in events if "eval_loss" in e] == [4, 6]
    assert len(list((out / "tensorboard").glob("events.out.tfevents.*"))) >= 1
    print(f"killed run {killed_s:.1f} s, resumed run {resumed_s:.1f} s")


# ------------------------------------------------------------------------------------- the guards, no training


def test_training_config_divides_the_effective_batch_across_ranks():
    from bioreview_assets.ml.training.distributed import accumulation_per_rank
    from bioreview_assets.config.model import TrainingConfig

    training = TrainingConfig(gpus=4, gradient_accumulation_steps=8, per_device_batch_size=1)
    assert accumulation_per_rank(training, 4) == 2
    with pytest.raises(RuntimeError, match="one of 2 ranks but training.gpus=4"):
        accumulation_per_rank(training, 2)
    with pytest.raises(ValueError, match="gradient_accumulation_steps=8 is not divisible by training.gpus=3"):
        TrainingConfig(gpus=3, gradient_accumulation_steps=8)
    with pytest.raises(ValueError, match="greater than or equal to 1"):
        TrainingConfig(gpus=0)
    with pytest.raises(ValueError, match="strategy=fsdp .* needs training.gpus > 1"):
        TrainingConfig(strategy="fsdp")
    with pytest.raises(ValueError, match="selective_checkpointing_layers and activation_offloading work with ddp"):
        TrainingConfig(gpus=2, strategy="fsdp", activation_offloading=True)


def test_ranks_do_not_change_the_run_identity_and_size_the_pod():
    one = tiny_cfg(gradient_accumulation_steps=4)
    four = tiny_cfg(gradient_accumulation_steps=4, gpus=4, strategy="fsdp", allow_world_size_change=True)
    # same adapter, computed by more processes: checkpoints keep their identity (the world-size guard decides)
    assert one.config_hash() == four.config_hash() != tiny_cfg(learning_rate=5e-4).config_hash()
    assert one.config_hash() != tiny_cfg(gradient_accumulation_steps=2).config_hash()
    assert (one.gpus_needed("adapter"), four.gpus_needed("adapter"), four.gpus_needed("merged_model")) == (1, 4, 1)
    assert four.model_copy(update={"gpu": False}).gpus_needed("adapter") == 0


def test_generation_and_labels_do_not_change_the_run_identity_but_training_inputs_do(tmp_path):
    from bioreview_assets.ml.runtime_env import library_versions
    from bioreview_assets.ml.training.checkpoints import CHECKPOINT_MARKER, prepare_checkpoints, run_identity

    cfg = tiny_cfg()
    edited = cfg.model_copy(update={
        "description": "renamed", "gpu": False, "base_system": "other",
        "generation": cfg.generation.model_copy(update={"batch_size": 3, "max_new_tokens": 17, "temperature": 0.7}),
    })
    assert edited.config_hash() == cfg.config_hash()
    assert cfg.model_copy(update={"corpus": "other"}).config_hash() != cfg.config_hash()
    assert cfg.model_copy(update={"prompt": cfg.prompt.model_copy(update={"token_budget": 999})}).config_hash() \
        != cfg.config_hash()
    # What it protects: checkpoints of a run survive a generation edit before the resume.
    folder = tmp_path / "checkpoints"
    ids = dict(prompt_hash="p", corpus_hash="c")
    prepare_checkpoints(folder, run_identity(cfg, **ids), {}, allow_version_mismatch=False)
    (folder / "checkpoint-4").mkdir()
    marker = {"versions": library_versions(), "world_size": 1}
    (folder / "checkpoint-4" / CHECKPOINT_MARKER).write_text(json.dumps(marker))
    resumed = prepare_checkpoints(folder, run_identity(edited, **ids), {}, allow_version_mismatch=False)
    assert (resumed.step, resumed.discarded) == (4, [])


def _checkpoint(folder, step: int, world_size: int, strategy: str, identity: dict, versions: dict):
    from bioreview_assets.ml.training.checkpoints import CHECKPOINT_MARKER, RUN_FILE

    (folder / f"checkpoint-{step}").mkdir(parents=True)
    (folder / RUN_FILE).write_text(json.dumps({"identity": identity, "versions": versions}))
    (folder / f"checkpoint-{step}" / CHECKPOINT_MARKER).write_text(json.dumps(
        {"identity": identity, "versions": versions, "step": step, "world_size": world_size, "strategy": strategy}))


def test_resume_with_another_world_size_only_when_allowed(tmp_path):
    from bioreview_assets.ml.runtime_env import library_versions
    from bioreview_assets.ml.training.checkpoints import WorldSizeChangeError, prepare_checkpoints

    identity, versions = {"model": "m", "config_hash": "h"}, library_versions()
    _checkpoint(tmp_path, 4, 2, "ddp", identity, versions)
    guard = {"allow_version_mismatch": False}
    with pytest.raises(WorldSizeChangeError, match="training on 2 rank.*training.gpus=4.*allow_world_size_change"):
        prepare_checkpoints(tmp_path, identity, versions, world_size=4, **guard)
    resume = prepare_checkpoints(tmp_path, identity, versions, world_size=4, allow_world_size_change=True, **guard)
    assert (resume.step, resume.world_size) == (4, 2)
    assert prepare_checkpoints(tmp_path, identity, versions, world_size=2, **guard).step == 4
    with pytest.raises(WorldSizeChangeError, match="strategy=ddp, this run uses fsdp"):
        prepare_checkpoints(tmp_path, identity, versions, world_size=2, strategy="fsdp", **guard)
    # a checkpoint from before multi-GPU training (no world size recorded) was written by one process
    old = tmp_path / "old"
    _checkpoint(old, 2, 1, "single", identity, versions)
    marker = old / "checkpoint-2" / "bioreview_checkpoint.json"
    marker.write_text(json.dumps({k: v for k, v in json.loads(marker.read_text()).items()
                                  if k not in ("world_size", "strategy")}))
    assert prepare_checkpoints(old, identity, versions, world_size=1, **guard).step == 2
    with pytest.raises(WorldSizeChangeError):
        prepare_checkpoints(old, identity, versions, world_size=2, **guard)


def test_torchrun_command_and_rank_environment(tmp_path, monkeypatch):
    import sys

    from bioreview_assets.ml.training.launch import PACKAGE_ROOT, WORKER, rank_environment, torchrun_command

    command = torchrun_command(4, tmp_path / "spec.json", tmp_path / "failures.json")
    assert command[:4] == [sys.executable, "-m", "bioreview_assets.ml.training.launch", str(tmp_path / "failures.json")]
    assert {"--standalone", "--nnodes=1", "--nproc-per-node=4", "--max-restarts=0"} <= set(command)
    assert command[-3:] == ["-m", WORKER, str(tmp_path / "spec.json")]

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setenv("NCCL_NVLS_ENABLE", "1")  # whatever the pod says, multicast stays off for the ranks
    env = rank_environment(tiny_cfg(gpus=2))
    assert (env["NCCL_NVLS_ENABLE"], env["TORCH_SYMM_MEM_DISABLE_MULTICAST"], env["NVSHMEM_DISABLE_NVLS"]) == \
        ("0", "1", "1")
    assert env["PYTHONUNBUFFERED"] == "1" and int(env["OMP_NUM_THREADS"]) >= 1
    assert env["PYTHONPATH"].split(":")[0] == str(PACKAGE_ROOT) and (PACKAGE_ROOT / "bioreview_assets").is_dir()
    assert "ACCELERATE_USE_FSDP" not in env
    fsdp = rank_environment(tiny_cfg(gpus=2, strategy="fsdp"))
    assert (fsdp["ACCELERATE_USE_FSDP"], fsdp["FSDP_CPU_RAM_EFFICIENT_LOADING"]) == ("true", "true")


def test_failure_report_names_the_rank_that_failed_first(tmp_path):
    from bioreview_assets.ml.training.launch import failure_error

    failures = tmp_path / "failures.json"
    peer = "RuntimeError: [gloo/transport/tcp/pair.cc:553] Connection closed by peer [127.0.0.1]:4000"
    failures.write_text(json.dumps([
        {"rank": 0, "local_rank": 0, "exitcode": 1, "message": peer, "traceback": "Traceback ...\n" + peer,
         "timestamp": 100},
        {"rank": 3, "local_rank": 3, "exitcode": 1, "message": "ValueError: no training row fits max_length=8",
         "traceback": "Traceback (most recent call last):\nValueError: no training row fits max_length=8",
         "timestamp": 100},
    ]))
    error = failure_error(4, failures, 1, [])
    assert error.rank == 3
    assert str(error).startswith("training failed on rank 3 of 4: rank 3 (local rank 3) raised ValueError: no "
                                 "training row fits max_length=8\nTraceback")
    assert "then: rank 0 (local rank 0) raised RuntimeError" in str(error)

    # A rank that exits without a traceback, and the rank torchrun then stopped (SIGTERM) within the same second.
    failures.write_text(json.dumps([
        {"rank": 0, "local_rank": 0, "exitcode": -15, "message": "was killed by SIGTERM (no Python traceback)",
         "traceback": None, "timestamp": 100},
        {"rank": 1, "local_rank": 1, "exitcode": 17, "message": "exited with code 17 without a Python traceback",
         "traceback": None, "timestamp": 100},
    ]))
    error = failure_error(2, failures, 1, [])
    assert error.rank == 1 and error.failures[0].exitcode == 17
    assert "then: rank 0 (local rank 0) was killed by SIGTERM" in str(error)

    missing = failure_error(2, tmp_path / "none.json", 2, ["usage: torchrun ...", "error: unrecognized arguments"])
    assert missing.rank is None and "torchrun exited 2 before any rank reported" in str(missing)
    assert "unrecognized arguments" in str(missing)


def test_fsdp_settings_follow_the_qlora_recipe(monkeypatch):
    import torch

    from bioreview_assets.ml.training import loading, trainer
    from bioreview_assets.ml.training.launch import check_devices

    fsdp = tiny_cfg(gpus=2, gradient_accumulation_steps=2, strategy="fsdp")
    settings = trainer.parallel_settings(fsdp.training, True, ["Qwen3DecoderLayer"])
    assert (settings["ddp_backend"], settings["ddp_find_unused_parameters"]) == ("nccl", False)
    assert settings["fsdp"] is True and settings["gradient_checkpointing"] is False
    assert settings["fsdp_config"] == {
        "version": 2, "auto_wrap_policy": "TRANSFORMER_BASED_WRAP", "transformer_layer_cls_to_wrap": ["Qwen3DecoderLayer"],
        "cpu_ram_efficient_loading": True, "state_dict_type": "FULL_STATE_DICT", "reshard_after_forward": True,
        "activation_checkpointing": True}
    ddp = trainer.parallel_settings(parallel_cfg(2).training, False, ["Qwen3DecoderLayer"])
    assert ddp == {"ddp_backend": "gloo", "ddp_timeout": 1800, "ddp_find_unused_parameters": False}
    with pytest.raises(ValueError, match="no decoder layer class"):
        trainer.parallel_settings(fsdp.training, True, [])
    # 4-bit weights stored in the compute dtype, so that FSDP can shard them with the rest of each layer
    assert loading.nf4_config(torch.bfloat16, quant_storage=torch.bfloat16).bnb_4bit_quant_storage == torch.bfloat16
    assert loading.nf4_config(torch.bfloat16).bnb_4bit_quant_storage == torch.uint8
    # each rank loads on its own GPU; an unquantised FSDP base on the CPU (rank 0's weights, shards moved later)
    monkeypatch.setattr(loading, "cuda_available", lambda: True)
    monkeypatch.setenv("RANK", "3"), monkeypatch.setenv("LOCAL_RANK", "1"), monkeypatch.setenv("WORLD_SIZE", "4")
    assert loading.training_device_map(parallel_cfg(2)) == {"": 1}
    assert loading.training_device_map(fsdp) == {"": 1}
    assert loading.training_device_map(tiny_cfg(gpus=2, gradient_accumulation_steps=2, strategy="fsdp",
                                                quantization="none")) == {"": "cpu"}
    # accelerate shards on GPUs only: on CPU ranks the same settings would silently train DDP
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="strategy=fsdp needs CUDA GPUs"):
        check_devices(2, "fsdp")
    check_devices(2, "ddp")


def test_ranks_read_torchrun_environment(monkeypatch):
    from bioreview_assets.ml.training import distributed

    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    assert distributed.current() == distributed.Ranks(0, 0, 1) and distributed.is_main_process()
    assert distributed.gather({"x": 1}) == [{"x": 1}]  # one process: no process group needed
    monkeypatch.setenv("RANK", "1"), monkeypatch.setenv("LOCAL_RANK", "1"), monkeypatch.setenv("WORLD_SIZE", "2")
    assert distributed.current() == distributed.Ranks(1, 1, 2) and not distributed.is_main_process()
    monkeypatch.delenv("LOCAL_RANK")
    with pytest.raises(RuntimeError, match=r"\['LOCAL_RANK'\] unset"):
        distributed.current()


# ----------------------------------------------------------------------------------- on GPUs (the lead's machine)


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_gpus_train_what_one_gpu_trains(strategy, tmp_path):
    """Needs 2 CUDA GPUs (FSDP cannot run on CPU ranks). GPU kernels reduce in their own orders, so a tolerance."""
    import torch

    if torch.cuda.device_count() < 2:
        pytest.skip("needs 2 CUDA GPUs (nvidia-h200-x2); the CPU ranks above cover DDP")
    from bioreview_assets.ml.training import train_adapter

    train, val = corpus()
    kwargs = {"prompt_hash": PROMPT_HASH, "corpus_hash": CORPUS_HASH}
    one = train_adapter(parallel_cfg(1), train, val, tmp_path / "one", **kwargs).meta.to_json()
    two = train_adapter(parallel_cfg(2, strategy=strategy), train, val, tmp_path / "two", **kwargs).meta.to_json()
    assert (two["world_size"], two["strategy"]) == (2, strategy)
    if strategy == "fsdp":
        assert two["fsdp_sharded_params"]["sharded"] == two["fsdp_sharded_params"]["of"]  # 4-bit weights included
    losses = [[loss for _, loss in meta["loss_history"]["train"]] for meta in (one, two)]
    assert losses[1] == pytest.approx(losses[0], rel=1e-3)
    ours, theirs = adapter_tensors(tmp_path / "two"), adapter_tensors(tmp_path / "one")
    for key in theirs:
        torch.testing.assert_close(ours[key], theirs[key], atol=1e-3, rtol=1e-2)
