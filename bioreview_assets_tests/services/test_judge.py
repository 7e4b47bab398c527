"""The LLM-judge matcher against a loopback fake judge: pre-filter, Hungarian on verdicts, cache, loud failures."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from bioreview_assets.core.judge import JudgeError, parse_verdict, prompt_hash
from bioreview_assets.core.matcher_spec import EmbedderSpec, JudgeSpec, MatcherSpec
from bioreview_assets.core.sampling import SamplingSpec
from bioreview_assets.core.scoring import score_split
from bioreview_assets.ml.generation.openai_backend import OpenAIBackend
from bioreview_assets.services.judge import CachedJudge
from bioreview_assets.store.artifacts import ArtifactStore
from bioreview_assets_tests.core.test_scoring import IDENTITY, ref

ENV = "BIOREVIEW_TEST_JUDGE_KEY"
E = np.eye(4)
VECTORS = {
    "sample size is small": E[0], "no multiple comparison correction": E[1], "cell lines unauthenticated": E[2],
    "sample of too few mice": 0.8 * E[0] + 0.6 * E[2], "methods are unclear": E[3],
    "cell authentication missing": 0.6 * E[2] + 0.8 * E[3],
}
ARTICLES = [ref("elife:1", "elife", ["sample size is small", "no multiple comparison correction"]),
            ref("elife:2", "elife", ["cell lines unauthenticated"])]
PREDICTIONS = {"elife:1": [{"text": "sample of too few mice"}, {"text": "methods are unclear"}],
               "elife:2": [{"text": "cell authentication missing"}]}


def encode(texts):
    return np.array([VECTORS[t] for t in texts], dtype=np.float32)


class FakeJudge:
    """Chat-completions server that says yes when both concerns start with the same word (or a scripted reply)."""

    def __init__(self, status: int = 200, answer: str | None = None):
        self.questions: list[tuple[str, str]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                a, b = re.search(r"Concern A: (.*)\nConcern B: (.*)\n", body["messages"][-1]["content"]).groups()
                fake.questions.append((a, b))
                text = answer if answer is not None else ("Yes." if a.split()[0] == b.split()[0] else "no")
                payload = {"choices": [{"message": {"content": text}, "finish_reason": "stop"}]} if status == 200 \
                    else {"error": "judge down"}
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def close(self):
        self.server.shutdown()


@pytest.fixture
def judge_server(monkeypatch):
    monkeypatch.setenv(ENV, "sk-judge-test")
    servers = []

    def start(**kwargs):
        servers.append(FakeJudge(**kwargs))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def spec_for(base: str) -> MatcherSpec:
    embedder = EmbedderSpec(name="fake", kind="sentence_transformers", model_id="test/fake", pooling="mean")
    return MatcherSpec(name="judge", method="llm_judge", embedder=embedder, threshold=0.5,
                       judge=JudgeSpec(api_base=base, api_model="fake-judge", api_key_env=ENV, prefilter_threshold=0.4))


def judge_of(spec, store):
    backend = OpenAIBackend(spec.judge.api_base, spec.judge.api_model, SamplingSpec(max_new_tokens=8),
                            api_key_env=ENV, concurrency=2, max_retries=0)
    return CachedJudge(spec.judge, store, backend=backend)


def test_judge_matches_prefiltered_pairs_and_a_rerun_asks_nothing(judge_server, tmp_path):
    server = judge_server()
    spec, store = spec_for(server.base), ArtifactStore(str(tmp_path / "storage"))
    result = score_split(ARTICLES, PREDICTIONS, encode, spec, bootstrap_n=20, embedder_identity=IDENTITY,
                         judge=judge_of(spec, store))
    # Asked: only pairs with cosine >= 0.4. Own articles: (too few mice, sample size) 0.8 -> yes; (cell
    # authentication, cell lines) 0.6 -> yes. Null (article 1's concerns vs article 2's references): (too few mice,
    # cell lines) 0.6 -> no. "methods are unclear" is never asked (cosine 0 to every reference).
    assert sorted(server.questions) == [("cell authentication missing", "cell lines unauthenticated"),
                                        ("sample of too few mice", "cell lines unauthenticated"),
                                        ("sample of too few mice", "sample size is small")]
    m = result.metrics
    assert (m["n_matched"], m["n_tool"], m["n_gt"]) == (2, 3, 3) and m["f1_micro"] == pytest.approx(2 / 3)
    assert m["null"]["n_matched"] == 0
    assert result.article_scores[0].pairs[0][2] == pytest.approx(0.5 + 0.8 / 2)  # judged score: 0.5 + cosine / 2
    judge_id = m["matcher"]["judge"]
    assert judge_id["api_model"] == "fake-judge" and judge_id["prompt_hash"] == prompt_hash()
    assert judge_id["prefilter_threshold"] == 0.4 and "sk-" not in json.dumps(m["matcher"])
    # A fresh judge on the same storage: every answer comes from the cache, the server hears nothing.
    again = judge_of(spec, store)
    rerun = score_split(ARTICLES, PREDICTIONS, encode, spec, bootstrap_n=20, embedder_identity=IDENTITY, judge=again)
    assert len(server.questions) == 3 and again.asked == 0 and again.hits == 3
    assert rerun.metrics["f1_micro"] == m["f1_micro"] and rerun.metrics["matcher_id"] == m["matcher_id"]


def test_a_failing_judge_is_an_error_never_a_silent_no(judge_server, tmp_path):
    server = judge_server(status=500)
    spec, store = spec_for(server.base), ArtifactStore(str(tmp_path / "storage"))
    with pytest.raises(JudgeError, match="fake-judge failed on"):
        score_split(ARTICLES, PREDICTIONS, encode, spec, bootstrap_n=20, embedder_identity=IDENTITY,
                    judge=judge_of(spec, store))
    assert not store.exists("judge_cache", "fake-judge.jsonl")  # nothing cached from a failure


def test_an_answer_that_is_not_yes_or_no_is_an_error(judge_server, tmp_path):
    server = judge_server(answer="It depends on the context.")
    spec = spec_for(server.base)
    with pytest.raises(JudgeError, match="not yes or no"):
        score_split(ARTICLES, PREDICTIONS, encode, spec, bootstrap_n=20, embedder_identity=IDENTITY,
                    judge=judge_of(spec, ArtifactStore(str(tmp_path / "storage"))))
    assert parse_verdict("YES, the same issue") and not parse_verdict(" no.")


def test_a_judge_matcher_needs_its_judge_and_a_judge_threshold():
    spec = spec_for("http://127.0.0.1:9/v1")
    with pytest.raises(ValueError, match="pass `judge`"):
        score_split(ARTICLES, PREDICTIONS, encode, spec, bootstrap_n=20, embedder_identity=IDENTITY)
    with pytest.raises(ValueError, match="0.5"):
        MatcherSpec.model_validate({**spec.model_dump(), "threshold": 0.65})
