"""Packed-GQA attention for compiled decoding: same numbers as repeat-K/V attention, one graph under compile."""

import pytest
import torch
from transformers import AttentionInterface, Qwen3Config, Qwen3ForCausalLM

from bioreview_assets.ml.generation.base import SamplingSpec
from bioreview_assets.ml.generation.decode_attention import ATTENTION_NAME, packed_gqa_sdpa, use_packed_gqa_attention
from bioreview_assets.ml.generation.transformers_backend import TransformersBackend


class _Layer:
    num_key_value_groups = 4


def _inputs():
    generator = torch.Generator().manual_seed(0)
    query = torch.randn(3, 8, 1, 16, generator=generator)
    key = torch.randn(3, 2, 30, 16, generator=generator)
    value = torch.randn(3, 2, 30, 16, generator=generator)
    mask = torch.ones(3, 1, 1, 30, dtype=torch.bool)
    mask[0, ..., :7] = False  # left padding of the first row
    return query, key, value, mask


def _repeated_kv_attention(query, key, value, mask):
    """What transformers computes under compilation: K/V repeated to every query head."""
    out = torch.nn.functional.scaled_dot_product_attention(
        query, key.repeat_interleave(4, dim=1), value.repeat_interleave(4, dim=1), attn_mask=mask
    )
    return out.transpose(1, 2)


def test_packed_attention_equals_attention_over_repeated_heads():
    query, key, value, mask = _inputs()
    out, weights = packed_gqa_sdpa(_Layer(), query, key, value, mask)
    assert weights is None and out.shape == (3, 1, 8, 16)
    torch.testing.assert_close(out, _repeated_kv_attention(query, key, value, mask), atol=1e-6, rtol=1e-5)


def test_packed_attention_compiles_as_one_graph():
    query, key, value, mask = _inputs()
    compiled = torch.compile(lambda *a: packed_gqa_sdpa(_Layer(), *a)[0], fullgraph=True, backend="eager")
    torch.testing.assert_close(compiled(query, key, value, mask), _repeated_kv_attention(query, key, value, mask),
                               atol=1e-6, rtol=1e-5)


def _tiny_model():
    torch.manual_seed(0)
    config = Qwen3Config(hidden_size=64, num_hidden_layers=2, num_attention_heads=8, num_key_value_heads=2,
                         head_dim=16, intermediate_size=128, vocab_size=500, attn_implementation="sdpa")
    return Qwen3ForCausalLM(config).eval()


def test_switched_model_decodes_exactly_what_sdpa_decodes():
    model = _tiny_model()
    ids = torch.randint(0, 500, (3, 20), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[0, :5] = 0
    options = dict(max_new_tokens=12, do_sample=False, cache_implementation="static", disable_compile=True,
                   pad_token_id=0)
    query_lengths = []

    def counting(module, query, *args, **kwargs):  # the registered function, counting what reaches it
        query_lengths.append(query.shape[2])
        return packed_gqa_sdpa(module, query, *args, **kwargs)

    with torch.inference_mode():
        before = model.generate(input_ids=ids, attention_mask=mask, **options)
        use_packed_gqa_attention(model)
        use_packed_gqa_attention(model)  # idempotent
        assert model.config._attn_implementation == ATTENTION_NAME
        AttentionInterface.register(ATTENTION_NAME, counting)
        try:
            after = model.generate(input_ids=ids, attention_mask=mask, **options)
        finally:
            AttentionInterface.register(ATTENTION_NAME, packed_gqa_sdpa)
    assert torch.equal(before, after)
    # Every layer's prefill (20 query tokens) and 11 decode steps of one query token went through it.
    assert query_lengths.count(20) == 2 and query_lengths.count(1) == 2 * 11


@pytest.mark.parametrize("generate_kwargs, switched", [
    ({"cache_implementation": "static"}, True),  # transformers may compile the decode steps
    ({"cache_implementation": "static", "disable_compile": True}, False),
    ({}, False),  # dynamic cache: never compiled
])
def test_backend_switches_attention_only_when_decoding_may_compile(generate_kwargs, switched):
    class _Tokenizer:  # the backend only reads pad/eos ids when it is built
        pad_token_id, eos_token_id, padding_side = 0, 1, "right"

    model = _tiny_model()
    backend = TransformersBackend(model, _Tokenizer(), SamplingSpec(), generate_kwargs=generate_kwargs)
    assert (model.config._attn_implementation == ATTENTION_NAME) is switched
    assert backend.describe()["attention"] == model.config._attn_implementation


def test_flash_decoding_is_refused_with_the_reason_where_it_cannot_run():
    model = _tiny_model()  # on the CPU
    with pytest.raises(RuntimeError, match="needs a CUDA model and Triton; the model is on cpu"):
        use_packed_gqa_attention(model, flash_decoding=True)
    assert model.config._attn_implementation == "sdpa"  # nothing switched


def test_automatic_choice_on_a_cpu_model_is_packed_sdpa_and_can_switch_back_and_forth():
    model = _tiny_model()
    assert use_packed_gqa_attention(model) == ATTENTION_NAME
    assert use_packed_gqa_attention(model, flash_decoding=False) == ATTENTION_NAME
    model.set_attn_implementation("eager")
    assert use_packed_gqa_attention(model) is None  # a non-sdpa model is left alone
    assert model.config._attn_implementation == "eager"
