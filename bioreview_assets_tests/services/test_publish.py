"""Publishing an adapter the Hugging Face way: the folder, its card (huggingface_hub's parser), upload, loaders."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import socket
from pathlib import Path
from unittest import mock

import polars as pl
import pytest

from bioreview_assets.config import loader
from bioreview_assets.services.publish import (
    TRAINING_STATE,
    PublishError,
    assemble_published_adapter,
    is_training_state,
    upload_published_adapter,
)
from bioreview_assets.store.artifacts import ArtifactStore
from bioreview_assets.store.layout import adapter_dir as adapter_parts, benchmark_dir, corpus_dir, scores_dir

MODEL = "tiny-random"
SECRET = "hf_THIS_IS_A_TEST_TOKEN_0123456789"
TRAINED_AT = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.timezone.utc)


def _score_row(split: str, matcher: str, f1: float, scored_at: dt.datetime) -> dict:
    return {"system": MODEL, "split": split, "matcher": matcher, "matcher_id": f"{matcher}-id0123", "split_hash":
            f"{split}hash", "f1": f1, "recall": f1 + 0.05, "precision": f1 - 0.05, "null_f1": 0.11,
            "count_oracle_f1": 0.9, "f1_ci_lo": f1 - 0.1, "f1_ci_hi": f1 + 0.1, "recall_ci_lo": f1 - 0.05,
            "recall_ci_hi": f1 + 0.15, "precision_ci_lo": f1 - 0.15, "precision_ci_hi": f1 + 0.05, "n_articles": 30,
            "scored_at": scored_at.isoformat(timespec="seconds")}


@pytest.fixture
def store(tmp_path, monkeypatch, tiny_dir: Path, adapter_dir: Path) -> ArtifactStore:
    """A storage root holding what the adapter, corpus, benchmark and scores assets write for the tiny model."""
    monkeypatch.setenv("BIOREVIEW_STORAGE", str(tmp_path / "storage"))
    store = ArtifactStore()
    root = Path(store.path(*adapter_parts(MODEL)))
    shutil.copytree(adapter_dir, root / "adapter")
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        if (tiny_dir / name).exists():
            shutil.copy2(tiny_dir / name, root / "adapter" / name)
    for name in ("optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json", "training_args.bin"):
        (root / "adapter" / name).write_bytes(b"training state")  # what a probe's checkpoint copy could carry
    (root / "adapter" / "README.md").write_text("---\nlibrary_name: peft\n---\n# Model Card for Model ID\n")
    meta = {"model": MODEL, "config_hash": "cfg0123", "corpus_hash": "corpus0123", "prompt_hash": "prompt0123",
            "global_step": 6, "max_steps": 6, "train_rows": 100, "val_subset_rows": 4, "final_train_loss": 6.5,
            "final_val_loss": 6.7, "tokens_per_s": 1234.5, "device": "cpu", "gpu": None, "quantization": "nf4",
            "compute_dtype": "float32", "trainable_params": 1000, "adapter_dir": str(root / "adapter"),
            "library_versions": {"python": "3.11.7", "torch": "2.13.0+cpu", "transformers": "5.24.0",
                                 "peft": "0.21.2", "trl": "1.16.0", "bitsandbytes": "0.50.2"},
            "tracking": {"tensorboard_dir": str(root / "tensorboard"), "mlflow": None}}
    store.write_json(meta, *adapter_parts(MODEL), "adapter_meta.json")
    os.utime(root / "adapter" / "adapter_model.safetensors", (TRAINED_AT.timestamp(),) * 2)
    spec = {"builder_version": "2", "prompt_version": "v2", "system_prompt": "You are an expert peer reviewer.",
            "user_instruction": "Review the following biomedical article.", "token_budget": 1536}
    for split in ("train", "val"):
        store.write_json({"model": MODEL, "split": split, "corpus": "all_nonfig", "prompt_hash": "prompt0123",
                          "prompt_spec": spec, "corpus_hash": f"{split}corpus", "split_hash": f"{split}hash",
                          "stats": {"truncation_rate": 0.25}}, *corpus_dir(MODEL, split), "meta.json")
    for split in ("train", "val", "test"):
        store.write_json({"split": split, "content_hash": f"{split}hash", "is_sample": True},
                         *benchmark_dir(split), "meta.json")
    after, before = TRAINED_AT + dt.timedelta(minutes=5), TRAINED_AT - dt.timedelta(days=1)
    store.write_parquet(pl.DataFrame([_score_row("val", "minilm", 0.42, after),
                                      _score_row("val", "minilm-strict", 0.31, after)]),
                        *scores_dir(MODEL, "val"), "scores.parquet")
    store.write_json({"minilm": {"matcher_id": "minilm-id0123", "matcher": {"embedder": "all-MiniLM-L6-v2",
                                                                             "threshold": 0.65}},
                      "minilm-strict": {"matcher_id": "minilm-strict-id0123", "matcher": {"threshold": 0.75}}},
                     *scores_dir(MODEL, "val"), "metrics.json")
    # scored from an earlier adapter of this model: must not appear as this adapter's figures
    store.write_parquet(pl.DataFrame([_score_row("test", "minilm", 0.99, before)]),
                        *scores_dir(MODEL, "test"), "scores.parquet")
    return store


@pytest.fixture
def published(store, tmp_path):
    return assemble_published_adapter(store, loader.load_model(MODEL), loader.load_project(), tmp_path / "published")


def test_folder_holds_adapter_tokenizer_card_and_no_training_state(published, store):
    folder = published.folder
    names = {p.name for p in folder.iterdir()}
    assert {"adapter_model.safetensors", "adapter_config.json", "tokenizer.json", "tokenizer_config.json",
            "README.md", "training_config.yaml", "prompt.json", "bioreview.json",
            "requirements-inference.txt"} <= names
    tokenizer_config = json.loads((folder / "tokenizer_config.json").read_text())
    assert "chat_template.jinja" in names or "chat_template" in tokenizer_config
    assert not [n for n in names if is_training_state(n)] and published.files == sorted(names)
    assert json.loads((folder / "adapter_config.json").read_text())["base_model_name_or_path"] is None
    assert not {"is_local", "local_files_only"} & set(json.loads((folder / "tokenizer_config.json").read_text()))
    assert published.scored_splits == ["val"] and published.stale_scores == ["test"] and published.prompt_shipped
    assert json.loads((folder / "prompt.json").read_text())["prompt_hash"] == "prompt0123"
    assert "transformers==5.24.0" in (folder / "requirements-inference.txt").read_text()
    # nothing of the training machine: no storage-root paths in any text file
    for path in folder.iterdir():
        if path.suffix in (".json", ".md", ".yaml", ".txt", ".jinja"):
            assert store.root not in path.read_text(), path.name


def test_card_front_matter_validates_with_huggingface_hub(published):
    from huggingface_hub import ModelCard, ModelCardData
    from huggingface_hub.repocard import metadata_load

    card = ModelCard.load(published.folder / "README.md")  # raises on invalid front matter or model-index
    data = card.data
    assert data.library_name == "peft" and data.pipeline_tag == "text-generation"
    assert {"peft", "lora", "qlora", "trl", "bioreview", "biomedical"} <= set(data.tags)
    assert data.datasets == ["bioreview-sample/train-trainhash", "bioreview-sample/val-valhash"]
    assert data.base_model is None  # the tiny model is built offline: there is no Hub base to name
    results = {(r.dataset_split, r.metric_type): r.metric_value for r in data.eval_results}
    assert results[("val", "f1")] == 0.42 and results[("val", "null_f1")] == 0.11
    assert not any(split == "test" for split, _ in results)  # stale test scores left out
    ModelCardData(**metadata_load(published.folder / "README.md"))  # the raw YAML parses the same way
    body = card.text
    for needle in ("0.420 [0.320, 0.520]", "null F1", "count-oracle F1", "`minilm-id0123`", "corpus0123",
                   "prompt0123", "cfg0123", "trainhash", "| transformers | 5.24.0 |", "## Known limits",
                   "synthetic sample", "No optimizer, scheduler, RNG or trainer state", "learning_rate"):
        assert needle in body, needle
    assert "0.990" not in body  # the stale test score (3 decimals, as every score is shown)


def test_card_names_the_hub_base_when_the_config_has_one(store, tmp_path, monkeypatch):
    from huggingface_hub import ModelCard

    cfg = loader.load_model(MODEL).model_copy(deep=True)
    cfg.base.hub_id = "Qwen/Qwen3-8B"
    published = assemble_published_adapter(store, cfg, loader.load_project(), tmp_path / "hub")
    assert ModelCard.load(published.folder / "README.md").data.base_model == "Qwen/Qwen3-8B"
    assert json.loads((published.folder / "adapter_config.json").read_text())["base_model_name_or_path"] == \
        "Qwen/Qwen3-8B"


def test_models_without_an_adapter_are_refused(store, tmp_path):
    with pytest.raises(PublishError, match="finetune: false"):
        assemble_published_adapter(store, loader.load_model("smollm2-135m-base"), loader.load_project(), tmp_path / "x")
    with pytest.raises(PublishError, match="not materialised"):
        assemble_published_adapter(store, loader.load_model("smollm2-135m"), loader.load_project(), tmp_path / "y")


@pytest.fixture
def no_network(monkeypatch):
    """Any socket connection in the test is a failure: the upload must go through the mocked HfApi only."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args[1:]}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture
def hf_api(monkeypatch, no_network):
    """huggingface_hub.HfApi replaced by a mock recording its calls (HF_TOKEN holds a fake secret)."""
    import huggingface_hub

    monkeypatch.setenv("HF_TOKEN", SECRET)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    api = mock.MagicMock()
    api.upload_folder.return_value = mock.Mock(commit_url="https://huggingface.co/me/bioreview-tiny/commit/abc")
    cls = mock.MagicMock(return_value=api)
    monkeypatch.setattr(huggingface_hub, "HfApi", cls)
    return cls, api


def test_upload_is_private_by_default_with_the_environment_token(published, hf_api):
    cls, api = hf_api
    url = upload_published_adapter(published.folder, "me/bioreview-tiny")
    assert url.endswith("/commit/abc")
    cls.assert_called_once_with(token=SECRET)
    api.create_repo.assert_called_once_with("me/bioreview-tiny", repo_type="model", private=True, exist_ok=True)
    kwargs = api.upload_folder.call_args.kwargs
    assert kwargs["repo_id"] == "me/bioreview-tiny" and kwargs["folder_path"] == str(published.folder)
    assert kwargs["repo_type"] == "model" and set(TRAINING_STATE) <= set(kwargs["ignore_patterns"])
    for path in published.folder.rglob("*"):  # the token is used, never written
        assert not path.is_file() or SECRET.encode() not in path.read_bytes(), path


def test_cli_publish_writes_the_folder_and_uploads_public_on_request(store, tmp_path, hf_api, capsys):
    from bioreview_assets.cli.main import main

    _, api = hf_api
    assert main(["publish", MODEL, "--out", str(tmp_path / "cli"), "--repo-id", "me/tiny", "--public"]) == 0
    assert (tmp_path / "cli" / "README.md").exists()
    assert api.create_repo.call_args.kwargs["private"] is False
    out = capsys.readouterr().out
    assert "uploaded: https://huggingface.co/" in out and SECRET not in out
    assert not any(SECRET.encode() in p.read_bytes() for p in (tmp_path / "cli").iterdir())


def test_upload_needs_a_token_and_online_mode(published, monkeypatch, no_network):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with pytest.raises(PublishError, match="HF_TOKEN"):
        upload_published_adapter(published.folder, "me/x")
    monkeypatch.setenv("HF_TOKEN", SECRET)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(PublishError, match="HF_HUB_OFFLINE"):
        upload_published_adapter(published.folder, "me/x")


def test_published_folder_loads_with_plain_peft(published, tiny_dir, adapter_dir):
    """What a user elsewhere does: base model + PeftModel.from_pretrained(folder), tokenizer from the folder."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    def logits(adapter: Path):
        base = AutoModelForCausalLM.from_pretrained(str(tiny_dir), dtype=torch.float32)
        model = PeftModel.from_pretrained(base, str(adapter)).eval()
        with torch.no_grad():
            return model(input_ids=torch.tensor([ids])).logits

    tokenizer = AutoTokenizer.from_pretrained(str(published.folder))
    ids = tokenizer.apply_chat_template([{"role": "user", "content": "The sample size is small."}],
                                        add_generation_prompt=True, tokenize=True, return_dict=False)
    assert len(ids) > 3
    assert torch.equal(logits(published.folder), logits(adapter_dir))
    base = AutoModelForCausalLM.from_pretrained(str(tiny_dir), dtype=torch.float32).eval()
    with torch.no_grad():
        assert not torch.equal(base(input_ids=torch.tensor([ids])).logits, logits(published.folder))


@pytest.mark.vllm
@pytest.mark.slow
def test_published_folder_is_accepted_by_vllms_lora_loader(published, tiny_dir, adapter_dir):
    from bioreview_assets.ml.generation import make_backend
    from bioreview_assets.ml.generation.transformers_backend import TransformersBackend
    from bioreview_assets.ml.generation.vllm_backend import vllm_in_process, vllm_python
    from bioreview_assets_tests.ml.test_generation_vllm import SPEC, requests, texts, tiny_config

    if vllm_python() is None and not vllm_in_process():
        pytest.skip("VLLM LORA LOADER NOT TESTED: no .venv-vllm (run `make vllm-env`)")
    reqs = requests()
    got = texts(make_backend(tiny_config(), tiny_dir, published.folder), reqs)
    want = texts(TransformersBackend.from_dirs(tiny_dir, adapter_dir, SPEC, merge_adapter=False, dtype="float32"), reqs)
    assert got == want
