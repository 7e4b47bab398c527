"""Padding-free packing keeps each row to itself: the loss of a row inside a packed sequence equals its loss alone.

The packed batch is what the trainer feeds the model (trl's padding-free collator: one sequence, position_ids restarting
per row, cu_seq_lens / seq_idx for varlen kernels, no attention mask). A model that lets a row see the row before it
gives that row another loss; a refused combination (ml/training/packing.py) must be one that really leaks.
"""

from __future__ import annotations

import pytest
import torch

from bioreview_assets.ml.training.packing import PackingLeaks, check_packing_keeps_rows_apart

# Rows of uneven lengths, each with a supervised tail, as in Corpus A (a long prompt, a shorter answer).
ROW_LENGTHS = (37, 64, 21, 50)


def tiny_model(kind: str, attention: str = "sdpa"):
    import transformers

    common = dict(vocab_size=512, hidden_size=64, intermediate_size=128, num_attention_heads=2, num_key_value_heads=1,
                  head_dim=32, max_position_embeddings=512, use_cache=False, tie_word_embeddings=False,
                  attn_implementation=attention)
    if kind == "qwen3":
        config = transformers.Qwen3Config(num_hidden_layers=2, **common)
    else:  # Qwen3.5's hybrid: Gated DeltaNet (linear attention) layers and a full-attention one
        config = transformers.Qwen3_5TextConfig(
            num_hidden_layers=4, linear_conv_kernel_dim=4, linear_key_head_dim=16, linear_value_head_dim=16,
            linear_num_key_heads=2, linear_num_value_heads=4, **common)
    torch.manual_seed(0)
    return transformers.AutoModelForCausalLM.from_config(config).eval()


def rows() -> list[dict]:
    generator = torch.Generator().manual_seed(1)
    out = []
    for length in ROW_LENGTHS:
        ids = torch.randint(5, 512, (length,), generator=generator).tolist()
        supervised = length // 3
        out.append({"input_ids": ids, "labels": [-100] * (length - supervised) + ids[length - supervised:]})
    return out


def row_loss(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean next-token cross-entropy of one row's supervised tokens (logits and labels of that row only)."""
    return float(torch.nn.functional.cross_entropy(logits[:-1].float(), labels[1:], ignore_index=-100))


def per_row_losses(model, examples: list[dict], keys: tuple[str, ...] | None = None) -> tuple[list[float], list[float]]:
    """(each row's loss alone, each row's loss inside one padding-free packed sequence of all of them).

    keys: the collator's outputs passed to the model (default: all of them, as the trainer passes them).
    """
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    with torch.no_grad():
        alone = [row_loss(model(input_ids=torch.tensor([row["input_ids"]])).logits[0], torch.tensor(row["labels"]))
                 for row in examples]
        batch = DataCollatorForLanguageModeling(pad_token_id=0, padding_free=True)(examples)
        assert "attention_mask" not in batch and batch["input_ids"].shape == (1, sum(ROW_LENGTHS))
        labels = batch.pop("labels")[0]
        logits = model(**{k: v for k, v in batch.items() if keys is None or k in keys}).logits[0]
    packed, start = [], 0
    for length in ROW_LENGTHS:
        packed.append(row_loss(logits[start:start + length], labels[start:start + length]))
        start += length
    return alone, packed


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_full_attention_keeps_packed_rows_apart(attention):
    # transformers 5 turns position_ids that restart into a block-diagonal causal mask (masking_utils'
    # find_packed_sequence_indices), so SDPA and eager attention separate the rows without flash-attn's varlen.
    model = tiny_model("qwen3", attention)
    check_packing_keeps_rows_apart(model)  # allowed
    alone, packed = per_row_losses(model, rows())
    assert all(loss > 1 for loss in alone)
    torch.testing.assert_close(packed, alone, rtol=1e-5, atol=1e-5)


def test_a_plain_causal_mask_would_leak_so_the_comparison_can_fail():
    # The same packed ids with position_ids that do not restart: one causal mask over all rows. Every row after the
    # first then reads the rows before it and its loss moves - what the test above would catch.
    model = tiny_model("qwen3")
    examples = rows()
    alone, _ = per_row_losses(model, examples)
    ids = torch.tensor([[t for row in examples for t in row["input_ids"]]])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0]
    start, leaked = ROW_LENGTHS[0], []
    for row, length in zip(examples[1:], ROW_LENGTHS[1:]):
        leaked.append(row_loss(logits[start:start + length], torch.tensor(row["labels"])))
        start += length
    assert all(abs(a - b) > 1e-3 for a, b in zip(leaked, alone[1:]))


def test_linear_attention_without_its_varlen_kernels_leaks_and_packing_is_refused():
    # Qwen3.5's Gated DeltaNet layers on transformers' torch path: torch_chunk_gated_delta_rule ignores cu_seqlens and
    # the torch causal conv1d ignores seq_idx, so the recurrent state and the conv window run on from one row into
    # the next. Only flash-linear-attention's kernel and causal-conv1d's take the row boundaries.
    import importlib.util

    if importlib.util.find_spec("fla") or importlib.util.find_spec("causal_conv1d"):
        pytest.skip("flash-linear-attention / causal-conv1d installed: the torch reference path is not the one used")
    model = tiny_model("qwen3.5")
    # transformers 5.24 itself stops a torch-path layer that is handed seq_idx / cu_seqlens (at the first forward,
    # mid-run); older releases (the GPU image's 5.17) do not, and drop them.
    with pytest.raises(ValueError, match="can't keep packed sequences apart"):
        per_row_losses(model, rows())
    # What those layers compute when the boundaries are dropped: the full-attention layer still separates the rows
    # (position_ids), the Gated DeltaNet layers do not.
    alone, packed = per_row_losses(model, rows(), keys=("input_ids", "position_ids"))
    torch.testing.assert_close(packed[0], alone[0], rtol=1e-5, atol=1e-5)  # the first row has nothing before it
    assert all(abs(a - b) > 1e-4 for a, b in zip(packed[1:], alone[1:]))  # every later row leaks
    # Refused before any step, with the reason.
    with pytest.raises(PackingLeaks, match=r"(?s)linear-attention.*flash-linear-attention.*causal-conv1d"):
        check_packing_keeps_rows_apart(model)


def test_attention_that_cannot_separate_rows_is_refused():
    model = tiny_model("qwen3")
    model.config._attn_implementation = "flash_attention_3_but_unknown"  # an implementation nobody verified
    with pytest.raises(PackingLeaks, match="attention implementation 'flash_attention_3_but_unknown'"):
        check_packing_keeps_rows_apart(model)


def test_build_trainer_refuses_packing_for_a_model_that_would_leak(tmp_path):
    # The check sits in build_trainer, before trl packs anything: training.packing on a hybrid model without its
    # varlen kernels fails at once with the reason, not mid-run (or, on older transformers, silently).
    import importlib.util

    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    from bioreview_assets.ml.training import build_trainer
    from bioreview_assets.ml.training.features import Features
    from bioreview_assets.config.model import TrainingConfig

    if importlib.util.find_spec("fla") or importlib.util.find_spec("causal_conv1d"):
        pytest.skip("flash-linear-attention / causal-conv1d installed")
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(models.WordLevel({"<pad>": 0, "<eos>": 1, "<unk>": 2}, unk_token="<unk>")),
        pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")
    features = [Features(input_ids=r["input_ids"], labels=r["labels"], prompt_tokens=0, end_marker="") for r in rows()]
    training = TrainingConfig(quantization="none", packing=True, max_length=256, optim="adamw_torch", bf16=False,
                              max_steps=1, gradient_accumulation_steps=1, eval_subset=0,
                              lora={"target_modules": ["q_proj", "v_proj"]})
    with pytest.raises(PackingLeaks, match="linear-attention"):
        build_trainer(tiny_model("qwen3.5").train(), tokenizer, training, features, [], tmp_path)
    trainer = build_trainer(tiny_model("qwen3").train(), tokenizer, training, features, [], tmp_path)
    assert trainer.args.packing and trainer.padding_free  # trl turns bfd packing padding-free itself
    batch = trainer.data_collator([trainer.train_dataset[0]])
    assert "attention_mask" not in batch and "position_ids" in batch  # padding-free, rows told apart by position
