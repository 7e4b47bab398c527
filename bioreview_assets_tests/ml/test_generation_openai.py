"""OpenAI-compatible backend against a local HTTP server on 127.0.0.1 (429, 500, retries, key secrecy)."""

from __future__ import annotations

import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from bioreview_assets.ml.generation import GenerationRequest, GenerationResult, SamplingSpec, make_backend
from bioreview_assets.ml.generation.openai_backend import APIKeyMissing, OpenAIBackend
from bioreview_assets.services.generation_runner import run_generation
from bioreview_assets.config.model import BaseModelSource, ModelConfig
from bioreview_assets.store.generation_log import GenerationLog

KEY = "sk-test-SECRET-1f9c2b7e"
ENV = "BIOREVIEW_TEST_API_KEY"


class FakeAPI:
    """Chat-completions server: scripted failures first, then answers; records what it saw."""

    def __init__(self, script: list[tuple[int, dict]] | None = None, delay: float = 0.0):
        self.script = list(script or [])
        self.delay = delay
        self.seen: list[dict] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server naming)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with api.lock:
                    api.seen.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
                    api.in_flight += 1
                    api.max_in_flight = max(api.max_in_flight, api.in_flight)
                    status, headers = api.script.pop(0) if api.script else (200, {})
                time.sleep(api.delay)
                # Out of flight before the reply is sent: once it is, the client may start its next request while
                # this thread has not yet run the lines below (counting it then overstated the client's concurrency).
                with api.lock:
                    api.in_flight -= 1
                if status == 200:
                    user = body["messages"][-1]["content"]
                    payload = {"choices": [{"message": {"role": "assistant", "content": f'[{{"text": "{user}"}}]'},
                                            "finish_reason": "stop"}],
                               "usage": {"prompt_tokens": 11, "completion_tokens": 7}}
                else:  # a careless server echoing the request's credentials in its error body
                    payload = {"error": f"failure, you sent {self.headers.get('Authorization')}"}
                data = json.dumps(payload).encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):  # keep pytest output clean
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> "FakeAPI":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def requests(n: int) -> list[GenerationRequest]:
    return [GenerationRequest(f"art:{i}", [{"role": "system", "content": "Review."},
                                           {"role": "user", "content": f"paper {i}"}]) for i in range(n)]


def config(base: str, **generation) -> ModelConfig:
    return ModelConfig(name="api-baseline", base=BaseModelSource(kind="tiny_random"),
                       generation={"backend": "openai", "api_base": base, "api_model": "gpt-test",
                                   "api_key_env": ENV, "max_new_tokens": 64, "seed": 3, **generation})


@pytest.fixture
def api_key(monkeypatch):
    monkeypatch.setenv(ENV, KEY)
    return KEY


def test_429_then_500_are_retried_and_the_key_leaks_nowhere(api_key, tmp_path: Path, caplog) -> None:
    sleeps: list[float] = []
    script = [(429, {"Retry-After": "2"}), (500, {})]
    with FakeAPI(script) as api, caplog.at_level(logging.DEBUG):
        backend = make_backend(config(api.base, concurrency=1), None, None)
        assert isinstance(backend, OpenAIBackend)
        backend._sleep = sleeps.append  # record the backoff instead of waiting it out
        log = GenerationLog(str(tmp_path / "gen"))
        table = run_generation(requests(3), backend, log, commit_every=2, extra_columns={"system": "api-baseline"})
    assert table["error"].to_list() == [None, None, None]
    assert table["text"].to_list() == [f'[{{"text": "paper {i}"}}]' for i in range(3)]
    assert table["completion_tokens"].to_list() == [7, 7, 7]
    assert len(api.seen) == 5 and backend.retries == 2  # 3 articles + one 429 + one 500
    assert sleeps[0] == 2.0 and 0.0 <= sleeps[1] <= 2.0  # Retry-After honoured, then exponential backoff
    assert all(s["auth"] == f"Bearer {KEY}" and s["path"] == "/v1/chat/completions" for s in api.seen)
    assert api.seen[-1]["body"]["seed"] == 3 and api.seen[-1]["body"]["model"] == "gpt-test"
    assert any("HTTP 500" in r.getMessage() for r in caplog.records)  # the retry was logged...
    stored = b"".join(p.read_bytes() for p in (tmp_path / "gen").iterdir())
    outputs = [stored.decode(errors="replace"), json.dumps(backend.describe()), caplog.text,
               " ".join(r.getMessage() for r in caplog.records), table.write_csv()]
    assert all(KEY not in text for text in outputs)  # ...but never with the key the server echoed


def test_non_retryable_error_is_redacted_in_results_and_exceptions(api_key) -> None:
    with FakeAPI([(401, {})] * 2) as api:
        backend = OpenAIBackend(api.base, "gpt-test", SamplingSpec(max_new_tokens=8), api_key_env=ENV)
        out: list[GenerationResult] = []
        backend.generate(requests(2), out.append)
    assert len(api.seen) == 2 and backend.retries == 0  # 401 is not retried
    assert all(r.error.startswith("RuntimeError: HTTP 401") and "***" in r.error for r in out)
    assert all(KEY not in r.error and r.text == "" for r in out)


def test_gives_up_after_max_retries(api_key) -> None:
    with FakeAPI([(503, {})] * 10) as api:
        backend = OpenAIBackend(api.base, "m", SamplingSpec(), api_key_env=ENV, max_retries=2, sleep=lambda s: None)
        out: list[GenerationResult] = []
        backend.generate(requests(1), out.append)
    assert len(api.seen) == 3
    assert "gave up after 3 attempts: HTTP 503" in out[0].error and KEY not in out[0].error


def test_concurrency_limit_is_respected(api_key) -> None:
    with FakeAPI(delay=0.05) as api:
        backend = OpenAIBackend(api.base, "m", SamplingSpec(), api_key_env=ENV, concurrency=3)
        out: list[GenerationResult] = []
        backend.generate(requests(12), out.append)
    assert sorted(r.article_id for r in out) == sorted(r.article_id for r in requests(12))
    assert 1 < api.max_in_flight <= 3


def test_missing_key_names_the_variable_only(monkeypatch) -> None:
    monkeypatch.delenv(ENV, raising=False)
    with pytest.raises(APIKeyMissing, match=ENV):
        OpenAIBackend("http://127.0.0.1:9/v1", "m", SamplingSpec(), api_key_env=ENV)


def test_describe_strips_credentials_from_the_url(api_key) -> None:
    backend = OpenAIBackend(f"https://user:{KEY}@api.example.org/v1?key={KEY}", "m", SamplingSpec(seed=9),
                            api_key_env=ENV)
    info = backend.describe()
    assert info["api_base"] == "https://api.example.org/v1" and info["api_key_env"] == ENV
    assert info["sampling"]["seed"] == 9 and info["sampling"]["repetition_penalty"] is None
    assert KEY not in json.dumps(info)
