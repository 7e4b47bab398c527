"""SFT training on CPU with the tiny random Qwen3: the real QLoRA (NF4) path, resume, guards, reload, merge."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from bioreview_assets.store.records import AdapterMeta

PROMPT_HASH = "prompt-v2-test"
CORPUS_HASH = "corpus-test"


# ------------------------------------------------------------------------------------------------ fixtures/helpers


def tiny_cfg(**training):
    """The tiny random model with small, fast training settings (independent of configs/ edits)."""
    from bioreview_assets.config.model import BaseModelSource, ModelConfig, TrainingConfig

    settings = {
        "quantization": "nf4",
        "max_length": 1024,
        "lora": {"r": 8, "alpha": 16, "dropout": 0.0},
        "epochs": 1,
        "max_steps": 8,
        "per_device_batch_size": 1,
        "gradient_accumulation_steps": 2,
        "learning_rate": 1e-3,
        "optim": "adamw_torch",
        "bf16": False,
        "logging_steps": 1,
        "save_steps": 2,
        "save_total_limit": 3,
        "eval_subset": 3,
    }
    settings.update(training)
    return ModelConfig(
        name="tiny-random", base=BaseModelSource(kind="tiny_random", seed=0), training=TrainingConfig(**settings)
    )


def chat_row(article_id: str, *, concerns: int = 1, paper_words: int = 40) -> dict:
    """A corpus row shaped like the corpus asset's (system, user, assistant JSON target)."""
    words = ["the", "mice", "were", "treated", "with", "the", "compound", "and", "the", "response", "was", "measured", "in", "each", "cohort"]
    paper = " ".join(words[i % len(words)] for i in range(paper_words))
    target = json.dumps(
        [
            {"text": f"The cohort {article_id} sample size {i} is too small", "category": "design_flaw", "severity": s}
            for i, s in zip(range(concerns), ["major", "minor", "optional"] * concerns)
        ],
        separators=(",", ":"),
    )
    return {
        "article_id": article_id,
        "source": "elife",
        "messages": [
            {"role": "system", "content": "You are an expert biomedical peer reviewer."},
            {"role": "user", "content": f"Title: study {article_id}\n\nMethods: {paper}"},
            {"role": "assistant", "content": target},
        ],
        "prompt_hash": PROMPT_HASH,
        "truncated": False,
    }


def corpus(n_train: int = 10, n_val: int = 5) -> tuple[list[dict], list[dict]]:
    train = [chat_row(f"t{i}", concerns=1 + i % 3, paper_words=30 + 7 * i) for i in range(n_train)]
    val = [chat_row(f"v{i}", concerns=1 + i % 2) for i in range(n_val)]
    return train, val


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture(scope="module")
def tiny_env(tiny_cache, tmp_path_factory):
    """Model cache and storage in temp folders; the tiny model is built once per session."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BIOREVIEW_MODEL_CACHE", str(tiny_cache))
        patch.setenv("BIOREVIEW_STORAGE", str(tmp_path_factory.mktemp("storage")))
        patch.setenv("TOKENIZERS_PARALLELISM", "false")
        from bioreview_assets.ml.models import resolve_base_model

        resolve_base_model(tiny_cfg())
        yield


@pytest.fixture(scope="module")
def trained(tiny_env, tmp_path_factory):
    """One finished NF4 run (8 steps, checkpoints at 2, 4, 6, 8; the last 3 kept) shared by the tests below."""
    from bioreview_assets.ml.training import train_adapter

    train, val = corpus()
    events: list[dict] = []
    out = tmp_path_factory.mktemp("adapter")
    run = train_adapter(
        tiny_cfg(), train, val, out, prompt_hash=PROMPT_HASH, corpus_hash=CORPUS_HASH, progress=events.append
    )
    return run, out, events


def _logits(model, input_ids):
    import torch

    with torch.no_grad():
        return model(input_ids=torch.tensor([input_ids])).logits.float()


# ------------------------------------------------------------------------------------------------------- tests


def test_nf4_qlora_runs_on_cpu_and_records_its_metadata(trained):
    run, out, events = trained
    meta = run.meta.to_json()

    assert json.loads((out / "adapter_meta.json").read_text()) == json.loads(json.dumps(meta, default=str))
    assert AdapterMeta.read(out) == run.meta  # the record reads back what it wrote
    assert (out / "adapter" / "adapter_model.safetensors").exists()
    targets = json.loads((out / "adapter" / "adapter_config.json").read_text())["target_modules"]
    assert targets == sorted(targets) and len(targets) == 7  # in a fixed order: the same weights, the same hash
    assert meta["quantization"] == "nf4" and meta["global_step"] == 8
    wrapped = meta["lora_modules"]["full_attention"]["wrapped"]
    assert set(wrapped) == {f"self_attn.{p}_proj" for p in "qkvo"} | {f"mlp.{p}_proj" for p in ("gate", "up", "down")}
    assert set(wrapped.values()) == {"Linear4bit"}  # LoRA sits on bitsandbytes NF4 layers
    assert meta["trainable_params"] == meta["lora_modules"]["full_attention"]["trainable_params"] > 0
    assert [step for step, _ in meta["loss_history"]["val"]] == [2, 4, 6, 8]  # a val loss at every checkpoint
    assert len(meta["loss_history"]["train"]) == 8
    assert 0.0 < meta["masked_token_fraction"] < 1.0
    assert meta["tokens_per_s"] > 0 and meta["wall_time_s"] > 0
    assert (meta["corpus_hash"], meta["prompt_hash"]) == (CORPUS_HASH, PROMPT_HASH)
    assert meta["library_versions"]["trl"] and meta["config_hash"] == tiny_cfg().config_hash()
    assert any("loss" in e and e["tokens_per_s"] for e in events) and any("eval_loss" in e for e in events)


def test_training_writes_tensorboard_event_files_beside_the_checkpoints(trained):
    """transformers' TensorBoardCallback writes the run; TensorBoard's own event reader reads it back."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run, out, _ = trained
    logdir = out / "tensorboard"
    assert run.meta.tracking == {"tensorboard_dir": str(logdir), "mlflow": None}
    assert list(logdir.glob("events.out.tfevents.*"))
    events = EventAccumulator(str(logdir), size_guidance={"scalars": 0})
    events.Reload()
    scalars = {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}
    assert {"train/loss", "train/learning_rate", "train/grad_norm", "train/tokens_per_s", "eval/loss"} <= set(scalars)
    assert [step for step, _ in scalars["train/loss"]] == list(range(1, 9))
    assert [v for _, v in scalars["train/loss"]] == pytest.approx([v for _, v in run.meta.train_losses])
    assert [step for step, _ in scalars["eval/loss"]] == [2, 4, 6, 8]
    assert all(v > 0 for _, v in scalars["train/tokens_per_s"])
    assert not any(tag.startswith("train/gpu_") for tag in scalars)  # CUDA memory only where there is CUDA
    assert "args" in "".join(events.Tags()["tensors"])  # the training arguments as text, as transformers logs them
    # the checkpoints' own log is unchanged by what the monitor adds for TensorBoard
    state = json.loads((out / "checkpoints" / "checkpoint-8" / "trainer_state.json").read_text())
    assert not any("tokens_per_s" in entry for entry in state["log_history"])


def test_monitor_adds_interval_throughput_and_cuda_memory_to_the_logs(monkeypatch):
    import torch

    from bioreview_assets.ml.training.monitoring import TrainingMonitor

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda: 3 * 2**30)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda: 5 * 2**30)
    monitor = TrainingMonitor(None)
    state = type("State", (), {"global_step": 1, "max_steps": 2})()
    monitor.train_seconds = 2.0
    first = {"loss": 1.0, "num_tokens": 100}
    monitor.on_log(None, state, None, logs=first)
    monitor.train_seconds = 3.0
    second = {"loss": 0.9, "num_tokens": 400}
    monitor.on_log(None, state, None, logs=second)
    assert first["tokens_per_s"] == 50.0 and second["tokens_per_s"] == 300.0  # since the previous log, not overall
    assert second["gpu_memory_gib"] == 3.0 and second["gpu_peak_memory_gib"] == 5.0


def test_trl_trains_on_our_labels_unchanged(trained, tiny_env):
    from bioreview_assets.ml.models import load_tokenizer
    from bioreview_assets.ml.training.features import featurize_rows

    run, _, _ = trained
    train, _ = corpus()
    features, _ = featurize_rows(load_tokenizer(tiny_cfg()), train, tiny_cfg().training.max_length)
    ours = {tuple(f.input_ids): f.labels for f in features}
    dataset = run.trainer.train_dataset

    assert len(dataset) == len(features)
    for row in dataset:
        assert row["labels"] == ours[tuple(row["input_ids"])]  # not re-tokenised, not re-masked
    batch = run.trainer.data_collator([dataset[0]])
    assert batch["labels"][0].tolist() == dataset[0]["labels"]


def test_gradient_checkpointing_recomputes_each_layer(trained):
    run, _, _ = trained
    model = run.trainer.model
    layers = model.get_base_model().model.layers
    calls = []
    # A pre-hook on the layer's first block: transformers checkpoints the layer's forward (inside the layer's own
    # hooks), and the recompute stops early once the last saved tensor is rebuilt (before later blocks return).
    hooks = [layer.self_attn.register_forward_pre_hook(lambda *_: calls.append(1)) for layer in layers]
    try:
        model.train()
        batch = run.trainer.data_collator([run.trainer.train_dataset[0]])
        run.trainer.compute_loss(model, batch).backward()
    finally:
        for hook in hooks:
            hook.remove()
        model.zero_grad()
    assert len(calls) == 2 * len(layers)  # forward + recompute in backward: checkpointing is really on


def test_reloaded_adapter_gives_identical_logits(trained):
    import torch

    from bioreview_assets.ml.training import load_adapter_model

    run, out, _ = trained
    input_ids = run.trainer.train_dataset[0]["input_ids"]
    in_memory = _logits(run.trainer.model.eval(), input_ids)
    reloaded = _logits(load_adapter_model(tiny_cfg(), out / "adapter"), input_ids)
    with run.trainer.model.disable_adapter():
        base_only = _logits(run.trainer.model, input_ids)

    assert torch.equal(in_memory, reloaded)
    assert not torch.equal(in_memory, base_only)  # the adapter changed something


def test_merged_model_matches_adapter_on_unquantised_base(trained, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    from bioreview_assets.ml.merge import merge_adapter
    from bioreview_assets.ml.training import load_adapter_model

    run, out, _ = trained
    merged_dir = merge_adapter(tiny_cfg(), out / "adapter", tmp_path / "merged")
    input_ids = run.trainer.train_dataset[1]["input_ids"]
    merged = _logits(AutoModelForCausalLM.from_pretrained(str(merged_dir)), input_ids)
    reference = load_adapter_model(tiny_cfg(), out / "adapter", quantized=False)
    for name, param in reference.named_parameters():
        if "lora_" in name:  # the merge adds the LoRA product in fp32: compare with an fp32 LoRA branch
            param.data = param.data.float()
    unmerged = _logits(reference, input_ids)

    assert (merged_dir / "tokenizer_config.json").exists() and (merged_dir / "merge_meta.json").exists()
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no temp folder left behind
    torch.testing.assert_close(merged, unmerged, atol=1e-4, rtol=1e-4)


def test_resume_continues_from_the_checkpoint_of_a_killed_run(trained, tmp_path):
    import torch
    from safetensors.torch import load_file

    from bioreview_assets.ml.training import train_adapter
    from bioreview_assets.ml.training.checkpoints import CHECKPOINT_MARKER

    cfg = tiny_cfg()
    train, val = corpus()
    (tmp_path / "rows.json").write_text(json.dumps({"train": train, "val": val}))
    script = tmp_path / "train.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import json, sys, time
            from pathlib import Path
            import torch
            # this process's thread count: the killed run's steps must be bit for bit those of the test process
            torch.set_num_threads({torch.get_num_threads()})
            from bioreview_assets.config.model import ModelConfig
            from bioreview_assets.ml.training import train_adapter

            cfg = ModelConfig.model_validate_json({cfg.model_dump_json()!r})
            rows = json.loads(Path({str(tmp_path / "rows.json")!r}).read_text())
            # slow steps, so that the parent kills this process between two checkpoints
            train_adapter(cfg, rows["train"], rows["val"], Path({str(tmp_path / "out")!r}),
                          prompt_hash={PROMPT_HASH!r}, corpus_hash={CORPUS_HASH!r},
                          progress=lambda event: time.sleep(0.4))
            """
        )
    )
    proc = subprocess.Popen([sys.executable, str(script)], start_new_session=True)
    checkpoints = tmp_path / "out" / "checkpoints"
    try:
        deadline = time.time() + 150
        while not list(checkpoints.glob(f"checkpoint-*/{CHECKPOINT_MARKER}")):
            assert proc.poll() is None, "training exited before its first checkpoint"
            assert time.time() < deadline, "no checkpoint within 150 s"
            time.sleep(0.05)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (tmp_path / "out" / "adapter_meta.json").exists()
    done = max(int(p.parent.name.split("-")[1]) for p in checkpoints.glob(f"checkpoint-*/{CHECKPOINT_MARKER}"))
    assert done < 8

    meta = train_adapter(cfg, train, val, tmp_path / "out", prompt_hash=PROMPT_HASH, corpus_hash=CORPUS_HASH).meta.to_json()

    assert meta["resumed_from_step"] == done
    assert meta["global_step"] == 8 and meta["steps_this_run"] == 8 - done
    train_steps = [step for step, _ in meta["loss_history"]["train"]]
    assert train_steps[: done] == list(range(1, done + 1))  # history of the killed run kept
    assert train_steps[-1] == 8
    # same data order, optimizer and RNG state: bit for bit the adapter of the uninterrupted run
    resumed = load_file(str(tmp_path / "out" / "adapter" / "adapter_model.safetensors"))
    uninterrupted = load_file(str(trained[1] / "adapter" / "adapter_model.safetensors"))
    assert resumed.keys() == uninterrupted.keys()
    assert all(torch.equal(resumed[key], uninterrupted[key]) for key in resumed)
    # TensorBoard shows one curve: what the killed run logged past its checkpoint is superseded by the resumed run.
    from bioreview_assets_tests.tensorboard import read_scalars

    curve = read_scalars(tmp_path / "out" / "tensorboard")["train/loss"]
    assert [step for step, _ in curve] == list(range(1, 9))
    assert [loss for _, loss in curve] == pytest.approx([loss for _, loss in meta["loss_history"]["train"]])


def test_resume_refuses_other_library_versions(trained, tmp_path):
    from bioreview_assets.ml.runtime_env import VersionMismatchError
    from bioreview_assets.ml.training import train_adapter
    from bioreview_assets.ml.training.checkpoints import CHECKPOINT_MARKER

    _, out, _ = trained
    crashed = tmp_path / "out"
    shutil.copytree(out / "checkpoints", crashed / "checkpoints")  # a run that died after its last checkpoint
    marker = crashed / "checkpoints" / "checkpoint-8" / CHECKPOINT_MARKER
    recorded = json.loads(marker.read_text())
    recorded["versions"]["transformers"] = "4.40.0"
    marker.write_text(json.dumps(recorded))
    train, val = corpus()
    kwargs = {"prompt_hash": PROMPT_HASH, "corpus_hash": CORPUS_HASH}

    with pytest.raises(VersionMismatchError, match="transformers 4.40.0 ->"):
        train_adapter(tiny_cfg(), train, val, crashed, **kwargs)
    assert not (crashed / "adapter").exists()

    meta = train_adapter(tiny_cfg(), train, val, crashed, allow_version_mismatch=True, **kwargs).meta.to_json()
    assert meta["resumed_from_step"] == 8 and meta["steps_this_run"] == 0  # finished run: restored, not retrained
    assert meta["resume_version_differences"]["transformers"][0] == "4.40.0"


def test_checkpoints_of_another_corpus_are_not_resumed(trained, tmp_path):
    from bioreview_assets.ml.runtime_env import library_versions
    from bioreview_assets.ml.training.checkpoints import prepare_checkpoints, run_identity

    _, out, _ = trained
    shutil.copytree(out / "checkpoints", tmp_path / "checkpoints")
    (tmp_path / "checkpoints" / "checkpoint-10").mkdir()  # a save cut short: no marker
    same = run_identity(tiny_cfg(), prompt_hash=PROMPT_HASH, corpus_hash=CORPUS_HASH)
    other = run_identity(tiny_cfg(), prompt_hash=PROMPT_HASH, corpus_hash="another-corpus")

    resume = prepare_checkpoints(tmp_path / "checkpoints", same, library_versions(), allow_version_mismatch=False)
    assert resume.step == 8 and resume.discarded == ["checkpoint-10"]  # partial checkpoint removed, not resumed

    resume = prepare_checkpoints(tmp_path / "checkpoints", other, library_versions(), allow_version_mismatch=False)
    assert resume.path is None and resume.discarded == ["checkpoint-4", "checkpoint-6", "checkpoint-8"]


def test_prompt_hash_of_rows_must_match(tiny_env, tmp_path):
    from bioreview_assets.ml.training import train_adapter

    train, val = corpus(3, 1)
    train[1]["prompt_hash"] = "stale-prompt"
    with pytest.raises(ValueError, match="stale-prompt"):
        train_adapter(tiny_cfg(), train, val, tmp_path, prompt_hash=PROMPT_HASH, corpus_hash=CORPUS_HASH)


def test_packed_rows_do_not_attend_to_each_other(tiny_env, tmp_path):
    import torch

    from bioreview_assets.ml.models import load_tokenizer, resolve_base_model
    from bioreview_assets.ml.training import build_trainer, load_training_model
    from bioreview_assets.ml.training.features import featurize_rows

    cfg = tiny_cfg(quantization="none", packing=True)
    train, _ = corpus(4, 0)
    features, _ = featurize_rows(load_tokenizer(cfg), train, cfg.training.max_length)
    model = load_training_model(cfg, resolve_base_model(cfg))
    trainer = build_trainer(model, load_tokenizer(cfg), cfg.training, features, [], tmp_path)
    packed = trainer.data_collator([trainer.train_dataset[0]])
    lengths = trainer.train_dataset[0]["seq_lengths"]
    assert len(lengths) > 1 and "attention_mask" not in packed  # several rows in one sequence, padding-free

    peft_model = trainer.model.eval()
    with torch.no_grad():
        together = peft_model(input_ids=packed["input_ids"], position_ids=packed["position_ids"]).logits[0]
        start = 0
        for length in lengths:
            alone = peft_model(input_ids=packed["input_ids"][:, start : start + length]).logits[0]
            torch.testing.assert_close(together[start : start + length], alone, atol=1e-5, rtol=1e-5)
            start += length


def test_liger_on_is_an_error_without_a_gpu(tiny_env):
    from bioreview_assets.ml.models import resolve_base_model
    from bioreview_assets.ml.training import load_training_model
    from bioreview_assets.ml.training.liger import LigerUnavailableError, apply_liger

    model = load_training_model(tiny_cfg(quantization="none"), resolve_base_model(tiny_cfg()))
    assert apply_liger(model, "auto") == [] and apply_liger(model, "off") == []
    with pytest.raises(LigerUnavailableError, match="no CUDA device"):
        apply_liger(model, "on")


def test_liger_is_asked_only_for_the_kernels_it_has_for_the_model_type():
    from bioreview_assets.ml.training.liger import LIGER_KERNELS, liger_kernels_for

    # Liger 0.8.5 raises NotImplementedError for RoPE on Qwen3.5 (it failed every Qwen3.5 step on the H100)
    assert liger_kernels_for("qwen3_5_text") == {"rope": False, "rms_norm": True, "swiglu": True,
                                                 "cross_entropy": False}
    assert liger_kernels_for("qwen3") == LIGER_KERNELS


def test_selective_checkpointing_switches_only_the_configured_layers(tiny_env):
    import torch

    from bioreview_assets.ml.training.activation_memory import selective_checkpointing_callback

    layers = torch.nn.ModuleList(torch.nn.Linear(2, 2) for _ in range(4))
    for layer in layers:
        layer.gradient_checkpointing = True
    selective_checkpointing_callback(n_layers=3).on_train_begin(None, None, None, model=layers)
    assert [hasattr(layer, "_gradient_checkpointing_func") for layer in layers] == [True, True, True, False]
    with pytest.raises(RuntimeError, match="no layer has checkpointing on"):
        selective_checkpointing_callback().on_train_begin(None, None, None, model=torch.nn.Linear(2, 2))


def test_gpu_memory_trade_offs_are_off_on_cpu(tiny_env):
    from bioreview_assets.ml.training.activation_memory import selective_checkpointing_layers, use_activation_offloading

    training = tiny_cfg().training.model_copy(update={"selective_checkpointing_layers": "all",
                                                      "activation_offloading": True})
    assert selective_checkpointing_layers(training) == 0 and not use_activation_offloading(training)


def test_upcast_norms_are_detected(tiny_env):
    import torch
    from transformers import AutoModelForCausalLM

    from bioreview_assets.ml.models import resolve_base_model
    from bioreview_assets.ml.training.precision import check_no_upcast

    model = AutoModelForCausalLM.from_pretrained(str(resolve_base_model(tiny_cfg())), dtype=torch.bfloat16)
    check_no_upcast(model, torch.bfloat16)
    model.model.layers[0].input_layernorm.float()  # what prepare_model_for_kbit_training does to every norm
    with pytest.raises(RuntimeError, match="input_layernorm"):
        check_no_upcast(model, torch.bfloat16)


def test_loss_curve_png():
    from bioreview_assets.reporting.plots import loss_curve_png

    png = loss_curve_png({"train": [[1, 2.0], [2, 1.5], [3, 1.2]], "val": [[2, 1.7]]})
    empty = loss_curve_png({"train": [], "val": []})
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and empty.startswith(b"\x89PNG")
    assert len(png) > len(empty)  # the curves were drawn


@pytest.mark.parametrize("quantization", ["none", "nf4"])
def test_fused_lora_forward_matches_peft(tiny_env, quantization):
    import torch
    from peft import LoraConfig, get_peft_model

    from bioreview_assets.ml.models import resolve_base_model
    from bioreview_assets.ml.training import load_training_model
    from bioreview_assets.ml.training.fused_lora import fused_lora_forward

    cfg = tiny_cfg(quantization=quantization)
    base = load_training_model(cfg, resolve_base_model(cfg))
    lora = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False)  # B != 0
    model = get_peft_model(base, lora).train()
    ids = torch.tensor([list(range(5, 69))])

    def loss_and_grads():
        loss = model(input_ids=ids, labels=ids).loss
        grads = torch.autograd.grad(loss, [p for p in model.parameters() if p.requires_grad])
        return loss, grads

    reference_loss, reference_grads = loss_and_grads()
    with fused_lora_forward(model) as patched:
        fused_loss, fused_grads = loss_and_grads()
    assert patched == 14  # 7 projections x 2 layers
    assert not any("forward" in vars(m) for m in model.modules())  # peft's forward is back
    tolerance = {"atol": 1e-5, "rtol": 1e-4} if quantization == "none" else {"atol": 2e-3, "rtol": 2e-2}
    torch.testing.assert_close(fused_loss, reference_loss, **tolerance)
    for fused, reference in zip(fused_grads, reference_grads):
        torch.testing.assert_close(fused, reference, **tolerance)


def test_recompute_stops_before_the_last_base_matmul(trained):
    from bioreview_assets.ml.training.fused_lora import fused_lora_forward

    run, _, _ = trained
    model = run.trainer.model
    layers = model.get_base_model().model.layers
    calls = {"up": 0, "down": 0}
    hooks = [
        hook
        for layer in layers
        for hook in (
            layer.mlp.up_proj.base_layer.register_forward_hook(lambda *_: calls.__setitem__("up", calls["up"] + 1)),
            layer.mlp.down_proj.base_layer.register_forward_hook(
                lambda *_: calls.__setitem__("down", calls["down"] + 1)
            ),
        )
    ]
    try:
        model.train()
        batch = run.trainer.data_collator([run.trainer.train_dataset[0]])
        with fused_lora_forward(model):
            run.trainer.compute_loss(model, batch).backward()
    finally:
        for hook in hooks:
            hook.remove()
        model.zero_grad()
    # up_proj: forward + recompute; down_proj (LoRA branch first, NF4 base saves nothing): forward only
    assert calls == {"up": 2 * len(layers), "down": len(layers)}


def test_diverged_training_fails_and_saves_no_adapter(tiny_env, tmp_path):
    """A learning rate of 1e20 makes every LoRA weight NaN: the step fails instead of publishing a NaN adapter."""
    from bioreview_assets.ml.training import train_adapter
    from bioreview_assets.ml.training.divergence import TrainingDiverged

    train, val = corpus(4, 1)
    with pytest.raises(TrainingDiverged,
                       match=r"training of tiny-random diverged: loss nan .*trainable tensors hold NaN"):
        train_adapter(tiny_cfg(learning_rate=1e20, max_steps=3, save_steps=10, eval_subset=0), train, val, tmp_path,
                      prompt_hash=PROMPT_HASH, corpus_hash=CORPUS_HASH)
    assert not (tmp_path / "adapter").exists() and not (tmp_path / "adapter_meta.json").exists()


def test_adapter_config_target_modules_are_written_in_a_fixed_order(tmp_path):
    """peft writes target_modules in set order (it follows the string-hash seed): two trainings of bit-identical
    weights wrote different adapter_config.json bytes, so different weights hashes."""
    from bioreview_assets.ml.training.metadata import sort_target_modules

    config = tmp_path / "adapter_config.json"
    config.write_text(json.dumps({"r": 16, "target_modules": ["v_proj", "down_proj", "q_proj"]}))
    sort_target_modules(config)
    assert json.loads(config.read_text()) == {"r": 16, "target_modules": ["down_proj", "q_proj", "v_proj"]}
