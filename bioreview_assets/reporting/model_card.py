"""The model card (README.md) of a published adapter: Hub front matter, then training, scores and limits."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from bioreview_assets.core.quantization import NF4_STORED
from bioreview_assets.reporting.formatting import markdown_table, number, with_ci
from bioreview_assets.store.records import AdapterMeta, ScoreRow

CARD_TAGS = ["peft", "lora", "trl", "sft", "bioreview", "biomedical", "peer-review"]
SCORE_NOTE = (
    "F1, recall and precision are micro-averaged over reference concerns, with 95% bootstrap intervals over "
    "articles. **null F1** scores the same concerns against another article of the same source: an F1 close to it "
    "comes from emitting plausible generic concerns, not from reading the paper. **count-oracle F1** is the F1 "
    "that matching min(#generated, #reference) pairs would give. Scores are only comparable under one matcher "
    "identity (embedder, weights hash, pooling, threshold, algorithm)."
)


@dataclass
class CardInputs:
    """Everything a card says, gathered from the stored artefacts (services/publish.py)."""

    model: str
    description: str
    base: dict  # BaseModelSource as JSON
    training: dict  # TrainingConfig as JSON
    generation: dict  # GenerationConfig as JSON
    prompt_config: dict  # PromptConfig as JSON (version, token budget)
    meta: AdapterMeta
    corpora: dict[str, dict] = field(default_factory=dict)  # split -> sft_corpus meta
    splits: dict[str, dict] = field(default_factory=dict)  # split -> benchmark_split meta
    scores: list[ScoreRow] = field(default_factory=list)  # every eval split and matcher
    matchers: dict[str, dict] = field(default_factory=dict)  # matcher name -> identity dict
    prompt: dict | None = None  # the prompt spec the corpus was built with, when its hash is the adapter's
    default_matcher: str | None = None
    files: list[str] = field(default_factory=list)


def hub_base_model(base: dict) -> str | None:
    """The Hub id of the base weights when the config names one (a random or packaged base has none)."""
    return base.get("hub_id")


def dataset_ids(inputs: CardInputs) -> list[str]:
    """The training data named by content hash: the benchmark has no Hub id (the sample, or an authorised copy)."""
    ids = []
    for split, corpus in sorted(inputs.corpora.items()):
        split_hash = corpus.get("split_hash") or inputs.splits.get(split, {}).get("content_hash")
        ids.append(f"{_data_label(inputs, split)}/{split}-{split_hash}")
    return ids


def _data_label(inputs: CardInputs, split: str) -> str:
    return "bioreview-sample" if inputs.splits.get(split, {}).get("is_sample", True) else "bioreview-benchmark"


def card_data(inputs: CardInputs):
    """huggingface_hub's ModelCardData of the front matter (model-index carries the default matcher's scores)."""
    from huggingface_hub import EvalResult, ModelCardData

    tags = list(CARD_TAGS)
    if inputs.training.get("quantization") in NF4_STORED:
        tags.insert(2, "qlora")
    results = []
    for row in inputs.scores:
        if row.matcher != inputs.default_matcher:
            continue
        for metric, name in (("f1", "micro F1"), ("recall", "micro recall"), ("precision", "micro precision"),
                             ("null_f1", "null F1 (shuffled articles)")):
            if getattr(row, metric) is None:
                continue
            results.append(EvalResult(
                task_type="text-generation", task_name="biomedical peer-review concerns",
                dataset_type=_data_label(inputs, row.split), dataset_name=f"{_data_label(inputs, row.split)} "
                f"({row.split})", dataset_split=row.split, dataset_revision=row.split_hash,
                metric_type=metric, metric_name=f"{name}, matcher {row.matcher}",
                metric_value=round(getattr(row, metric), 4), metric_config=row.matcher_id,
            ))
    return ModelCardData(
        base_model=hub_base_model(inputs.base),
        library_name="peft",
        pipeline_tag="text-generation",
        language=["en"],
        tags=tags,
        datasets=dataset_ids(inputs) or None,
        model_name=f"bioreview-{inputs.model}" if results else None,
        eval_results=results or None,
    )


def render_model_card(inputs: CardInputs) -> str:
    """README.md text: YAML front matter (huggingface_hub's own serialisation) and the markdown body."""
    front = card_data(inputs).to_yaml()
    return f"---\n{front}\n---\n\n{_body(inputs)}"


def _fmt(value: Any, digits: int = 3) -> str:
    return number(value, digits, missing="-")


def _ci(row: ScoreRow, name: str) -> str:
    return with_ci(getattr(row, name), row.interval(name), missing="-")


SCORE_COLUMNS = ["split", "matcher", "F1 [95% CI]", "recall [95% CI]", "precision [95% CI]", "null F1",
                 "count-oracle F1", "articles", "matcher identity"]


def _scores_section(inputs: CardInputs) -> list[str]:
    lines = ["## Scores", ""]
    if not inputs.scores:
        return lines + ["Not scored yet: materialise `scores` for this model's system, then publish again.", ""]
    rows = sorted(inputs.scores, key=lambda r: (r.split != "val", r.split, r.matcher))
    lines += markdown_table(SCORE_COLUMNS, [
        [row.split, row.matcher, _ci(row, "f1"), _ci(row, "recall"), _ci(row, "precision"), _fmt(row.null_f1),
         _fmt(row.count_oracle_f1), str(row.n_articles), f"`{row.matcher_id}`"] for row in rows]).split("\n")
    lines += ["", SCORE_NOTE, ""]
    for name, identity in sorted(inputs.matchers.items()):
        lines.append(f"* matcher `{name}`: `{yaml.safe_dump(identity, default_flow_style=True, width=10**6).strip()}`")
    return lines + [""]


def _limits(inputs: CardInputs) -> list[str]:
    meta, base = inputs.meta, inputs.base
    limits = []
    if base.get("kind") == "tiny_random":
        limits.append("The base model is a tiny randomly initialised network built offline for tests: this adapter "
                      "demonstrates the pipeline and raises no meaningful concerns.")
    if base.get("kind") == "gguf_package":
        limits.append(f"The base weights are the GGUF file `{base.get('gguf_file')}` of the Python package "
                      f"`{base.get('package')}`, dequantised: on the original full-precision weights the adapter "
                      "computes slightly different outputs.")
    if any(split.get("is_sample", True) for split in inputs.splits.values()) or not inputs.splits:
        limits.append("Trained and scored on bioreview's bundled synthetic sample benchmark (articles whose concerns "
                      "follow from their text), not on real peer reviews.")
    rows = {split: corpus.get("stats", {}) for split, corpus in inputs.corpora.items()}
    train_stats = rows.get("train") or {}
    if train_stats.get("truncation_rate") is not None:
        limits.append(f"Papers are fitted to a {_budget(inputs)}-token "
                      f"user turn (methods and results kept longest); {100 * train_stats['truncation_rate']:.0f}% "
                      "of training prompts were cut.")
    for row in inputs.scores:
        if row.null_f1 is not None and row.f1 and row.null_f1 >= 0.5 * row.f1:
            limits.append(f"On {row.split} under matcher `{row.matcher}` the null F1 ({_fmt(row.null_f1)}) is "
                          f"at least half the F1 ({_fmt(row.f1)}): that F1 owes much to generic concerns.")
    limits += [
        "Concerns about figures are excluded from training targets and from scoring: the model never sees figures.",
        "The prompt must come from bioreview's prompt builder (`prompt.json`; its hash under Training); other "
        "prompts are out of distribution.",
        f"The validation loss is measured on a fixed subset of {meta.val_subset_rows} validation rows.",
        "F1 depends on the matcher: compare it with the null F1 beside it, and only across rows of one matcher "
        "identity.",
        "Generated concerns can be generic, wrong or unsupported by the paper: this is a research artefact, not a "
        "substitute for peer review.",
    ]
    return limits


def _budget(inputs: CardInputs) -> Any:
    return inputs.prompt_config.get("token_budget", "?")


def _usage(inputs: CardInputs) -> list[str]:
    base_ref = hub_base_model(inputs.base) or "<local folder of the base model>"
    rank = inputs.training.get("lora", {}).get("r")
    gen = inputs.generation
    lines = [
        "## Use", "",
        "```python",
        "from peft import PeftModel",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        "",
        f'base = AutoModelForCausalLM.from_pretrained("{base_ref}")',
        'model = PeftModel.from_pretrained(base, "<this repo or folder>")',
        'tokenizer = AutoTokenizer.from_pretrained("<this repo or folder>")  # with the chat template used in training',
        "```", "",
        f"vLLM: `LLM(model=\"{base_ref}\", enable_lora=True, max_lora_rank={rank})` and "
        "`llm.chat(messages, params, lora_request=LoRARequest(\"bioreview\", 1, \"<folder>\"))`.", "",
        f"Generation as scored: temperature {gen.get('temperature')}, top_p {gen.get('top_p')}, repetition penalty "
        f"{gen.get('repetition_penalty')}, at most {gen.get('max_new_tokens')} new tokens. The answer is a JSON "
        'array of `{"text", "category", "severity"}` objects.', "",
    ]
    if inputs.prompt:
        lines += ["Messages: the system prompt of `prompt.json`, then a user turn of its `user_instruction` followed "
                  f"by the article (title, abstract, sections), fitted to {inputs.prompt.get('token_budget')} tokens "
                  "of this tokenizer.", ""]
    else:
        lines += ["`prompt.json` is missing: the prompt builder's hash no longer equals the one this adapter was "
                  "trained with, so the current prompt is not shipped as this adapter's.", ""]
    return lines


def _body(inputs: CardInputs) -> str:
    meta, train_corpus = inputs.meta, inputs.corpora.get("train", {})
    title = f"# bioreview adapter: {inputs.model}"
    lines = [
        title, "",
        f"{inputs.description or inputs.model}. A LoRA adapter trained with [trl](https://github.com/huggingface/trl) "
        "SFT (loss on the answer tokens only) to list the concerns a biomedical peer reviewer would raise about a "
        "paper, built and scored by the bioreview Dagster asset graph.", "",
        *_usage(inputs),
        *_scores_section(inputs),
        "## Training", "",
        f"* base: `{yaml.safe_dump(inputs.base, default_flow_style=True, width=10**6).strip()}`",
        f"* corpus `{train_corpus.get('corpus', '?')}`: {meta.train_rows} training rows "
        f"({meta.train_rows_dropped_over_length} dropped over max length), "
        f"{meta.supervised_tokens_total} supervised of {meta.train_tokens_total} tokens",
        f"* corpus hash `{meta.corpus_hash}`, prompt hash `{meta.prompt_hash}`, "
        f"config hash `{meta.config_hash}`",
        *[f"* {split} split hash `{corpus.get('split_hash')}` (corpus `{corpus.get('corpus_hash')}`)"
          for split, corpus in sorted(inputs.corpora.items())],
        f"* {meta.global_step} optimizer steps; final train loss {_fmt(meta.final_train_loss, 4)}, "
        f"val loss {_fmt(meta.final_val_loss, 4)}; {_fmt(meta.tokens_per_s, 1)} tokens/s on "
        f"{meta.gpu or meta.device}",
        f"* {meta.quantization} base, compute {meta.compute_dtype}, attention "
        f"{meta.attn_implementation}, {meta.trainable_params} trainable parameters",
        *([f"* checkpoint probe: step {meta.global_step} of `{meta.probe_of}`"] if meta.probe_of else []),
        "", "```yaml", yaml.safe_dump({"training": inputs.training}, sort_keys=False).strip(), "```", "",
        "## Library versions", "",
        "| package | version |", "|---|---|",
        *[f"| {name} | {version} |" for name, version in (meta.library_versions or {}).items() if version],
        "",
        "## Known limits", "",
        *[f"* {limit}" for limit in _limits(inputs)],
        "",
        "## Files", "",
        *[f"* `{name}`" for name in inputs.files],
        "",
        "No optimizer, scheduler, RNG or trainer state is included.",
    ]
    return "\n".join(lines) + "\n"
