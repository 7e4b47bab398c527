"""One sft_corpus partition: chat rows for supervised fine-tuning of a model, built with its own tokenizer."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable

import polars as pl

from bioreview_assets.config.model import ModelConfig
from bioreview_assets.core.corpus import build_corpus
from bioreview_assets.core.gt_filter import CorpusConfig
from bioreview_assets.core.hashing import stable_hash
from bioreview_assets.store.artifacts import ArtifactStore
from bioreview_assets.store.layout import corpus_dir, read_articles, read_split_meta


@dataclass(frozen=True)
class SftCorpus:
    """What an sft_corpus partition wrote (rows.parquet, meta.json), and what its materialisation shows and checks."""

    articles: list  # the split's articles the rows were built from
    rows: list[dict]
    frame: pl.DataFrame  # rows.parquet
    summary: dict[str, Any]  # the corpus statistics
    prompt_hash: str
    corpus_hash: str
    folder: tuple[str, ...]


def build_sft_corpus(store: ArtifactStore, cfg: ModelConfig, corpus_cfg: CorpusConfig, split: str,
                     log: Callable[[str], None]) -> SftCorpus:
    """Build `cfg`'s chat rows for the split and write them with their meta (prompt, hashes, statistics) as a unit."""
    from bioreview_assets.services.tokenization import chat_renderer, model_prompt, token_counter

    model = cfg.name
    articles = read_articles(store, split)
    tokenizer, prompt_hash, spec = model_prompt(cfg)
    rows, stats = build_corpus(
        articles,
        corpus_cfg,
        token_counter(tokenizer),
        cfg.prompt.token_budget,
        cfg.prompt.version,
        chat_renderer(tokenizer, cfg),
        prompt_hash,
    )
    frame = pl.DataFrame(
        [{**r, "messages": json.dumps(r["messages"], ensure_ascii=False)} for r in rows],
        schema_overrides={"cut_sections": pl.List(pl.String)},
    )
    corpus_hash = stable_hash(frame["text"].to_list())
    folder = corpus_dir(model, split)
    with store.partition(*folder) as staged:  # committed as a unit: all new files or all old ones
        store.write_parquet(frame, *staged, "rows.parquet")
        meta = {
            "model": model,
            "split": split,
            "corpus": corpus_cfg.name,
            "prompt_hash": prompt_hash,
            "prompt_spec": spec,
            "corpus_hash": corpus_hash,
            "split_hash": read_split_meta(store, split)["content_hash"],
            "stats": stats.to_dict(),
        }
        store.write_json(meta, *staged, "meta.json")
    summary = stats.to_dict()
    log(f"{model}/{split}: kept {summary['kept_articles']}/{summary['total_articles']} articles")
    return SftCorpus(articles=articles, rows=rows, frame=frame, summary=summary, prompt_hash=prompt_hash,
                     corpus_hash=corpus_hash, folder=folder)
