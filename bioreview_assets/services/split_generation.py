"""One generations partition: the model's raw and parsed output for every article of a split, durable per article."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import polars as pl

from bioreview_assets.config.model import ModelConfig
from bioreview_assets.core.gt_filter import CorpusConfig
from bioreview_assets.core.parsing import PARSER_VERSION
from bioreview_assets.core.prompts import build_prompt
from bioreview_assets.store.artifacts import ArtifactStore
from bioreview_assets.store.generation_table import generations_data_version, parsed_columns
from bioreview_assets.store.layout import generations_dir, read_articles, read_eval_articles


@dataclass(frozen=True)
class SplitGeneration:
    """What a generations partition wrote, and what its materialisation shows."""

    articles: list  # the split's evaluated articles (with their reference concerns)
    table: pl.DataFrame  # generations.parquet
    folder: tuple[str, ...]
    summary: dict[str, Any]
    generated: int  # results received in this run (the rest were resumed from the log)
    resume: str
    key_hash: str
    served_weights: dict[str, Any]
    limit_note: str | None  # where max_new_tokens came from
    backend_info: dict[str, Any]
    prompt_hash: str
    data_version: str


def generate_split(store: ArtifactStore, cfg: ModelConfig, corpus: CorpusConfig, split: str,
                   eval_article_limit: int | None, backend_for: Callable, log: Callable[[str], None]) -> SplitGeneration:
    """Generate (or resume) `cfg`'s output for the split's articles and write generations.parquet and meta.json.

    `backend_for(cfg, model_dir, adapter_dir)` opens the generation backend; `log` receives progress lines.
    """
    from bioreview_assets.doctor.report import preflight
    from bioreview_assets.ml.generation import GenerationRequest
    from bioreview_assets.services.generation_runner import run_generation, summarize
    from bioreview_assets.services.serving import generation_key, resolve_max_new_tokens, resolve_serving
    from bioreview_assets.services.tokenization import model_prompt, token_counter
    from bioreview_assets.store.generation_log import KeyedGenerationLogs

    model = cfg.name
    for finding in preflight(cfg, training=False):  # a GPU pod checks itself before loading any weights
        log(f"doctor: [{finding.level}] {finding.subject}: {finding.message}")
    articles = read_eval_articles(store, split, eval_article_limit)
    tokenizer, prompt_hash, _ = model_prompt(cfg)
    count = token_counter(tokenizer)
    cfg, limit_note = resolve_max_new_tokens(cfg, corpus, read_articles(store, "train"), count)
    requests = [
        GenerationRequest(a.id, build_prompt(a, count, cfg.prompt.token_budget, cfg.prompt.version).messages)
        for a in articles
    ]
    serving = resolve_serving(store, cfg, prompt_hash)
    backend = backend_for(cfg, serving.model_dir, serving.adapter_dir)
    numerics = backend.numerics() if hasattr(backend, "numerics") else None
    key = generation_key(cfg, serving.weights, prompt_hash, numerics)
    folder = generations_dir(model, split)
    # One log per content key: a retrained adapter, new sampling settings or another compute dtype never resume the
    # old outputs.
    generation_log, key_hash, resume = KeyedGenerationLogs(store.url(*folder, "log")).open(key)
    log(f"{model}/{split}: {resume}")
    generated = 0

    def progress(done: int, pending: int) -> None:
        nonlocal generated
        generated = done
        if done == pending or done % 8 == 0:
            log(f"{model}/{split}: {done}/{pending} articles generated")

    extra = {"prompt_hash": prompt_hash, "generation_key": key_hash}
    table = run_generation(requests, backend, generation_log, extra_columns=extra, progress=progress)
    sources = {a.id: a.source for a in articles}
    table = parsed_columns(table).with_columns(
        pl.col("article_id").replace_strict(sources, return_dtype=pl.String).alias("source")
    )
    store.write_parquet(table, *folder, "generations.parquet")
    max_new = cfg.generation.max_new_tokens
    truncated = int((table["completion_tokens"] >= max_new).sum()) if len(table) else 0
    summary = {**summarize(table), "max_new_tokens": max_new, "outputs_at_token_limit": truncated}
    backend_info = backend.describe()
    data_version = generations_data_version(key_hash, table)
    store.write_json({"summary": summary, "backend": backend_info, "prompt_hash": prompt_hash,
                      "generation_key": key_hash, "key": key, "resume": resume, "data_version": data_version,
                      "parser_version": PARSER_VERSION}, *folder, "meta.json")
    return SplitGeneration(articles=articles, table=table, folder=folder, summary=summary, generated=generated,
                           resume=resume, key_hash=key_hash, served_weights=serving.weights, limit_note=limit_note,
                           backend_info=backend_info, prompt_hash=prompt_hash, data_version=data_version)
