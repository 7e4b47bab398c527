"""OpenAI-compatible chat-completions backend (API baselines, remote vLLM servers) over plain HTTP.

Standard library only (urllib): the retry policy below is ours and visible, and no client library is needed
in the orchestration image. The API key is read from the environment variable named in the config (a
Kubernetes secret is mounted the same way, through `env.valueFrom.secretKeyRef`); it is sent in the
Authorization header and nowhere else: describe(), logs and error texts never contain it.
"""

from __future__ import annotations

import email.utils
import json
import logging
import os
import random
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import TYPE_CHECKING, Any, Callable, Sequence

from bioreview_assets.ml.generation.base import GenerationRequest, GenerationResult, OnResult, SamplingSpec

if TYPE_CHECKING:
    from bioreview_assets.config.model import GenerationConfig

log = logging.getLogger(__name__)

RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})


class APIKeyMissing(RuntimeError):
    """The environment variable that should hold the API key is unset or empty."""


class _Retryable(Exception):
    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class OpenAIBackend:
    """Chat completions with a bounded thread pool, retries with exponential backoff and Retry-After."""

    name = "openai"

    def __init__(
        self,
        api_base: str,
        model: str,
        sampling: SamplingSpec,
        *,
        api_key_env: str = "OPENAI_API_KEY",
        concurrency: int = 4,
        max_retries: int = 5,
        backoff_base: float = 1.0,
        backoff_max: float = 60.0,
        timeout: float = 600.0,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        self.api_base = api_base.rstrip("/")
        self.model = model
        self.sampling = sampling
        self.api_key_env = api_key_env
        self._api_key = os.environ.get(api_key_env, "")
        if not self._api_key:
            raise APIKeyMissing(f"the openai backend reads its API key from ${api_key_env}, which is unset or empty")
        self.concurrency = concurrency
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.timeout = timeout
        self._sleep = sleep
        self.retries = 0  # retries made over this backend's life (for logs and tests)

    @classmethod
    def from_config(cls, gen: "GenerationConfig", sampling: SamplingSpec) -> "OpenAIBackend":
        if not gen.api_base or not gen.api_model:
            raise ValueError("generation.backend=openai needs generation.api_base and generation.api_model")
        return cls(gen.api_base, gen.api_model, sampling, api_key_env=gen.api_key_env, concurrency=gen.concurrency)

    def describe(self) -> dict[str, Any]:
        sampling = self.sampling.describe()
        # Chat completions has no repetition_penalty (OpenAI rejects unknown fields): say it is not applied.
        sampling["repetition_penalty"] = None
        return {
            "backend": self.name,
            "api_base": _public_url(self.api_base),
            "api_model": self.model,
            "api_key_env": self.api_key_env,  # the variable's name, never its value
            "concurrency": self.concurrency,
            "max_retries": self.max_retries,
            "sampling": sampling,
        }

    def generate(self, requests: Sequence[GenerationRequest], on_result: OnResult) -> None:
        with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="openai") as pool:
            futures = {pool.submit(self._one, request): request for request in requests}
            # on_result runs in the calling thread, so callers need no locking.
            for future in as_completed(futures):
                on_result(future.result())

    def _payload(self, request: GenerationRequest) -> dict[str, Any]:
        spec = self.sampling
        payload: dict[str, Any] = {
            "model": self.model,
            "messages": request.messages,
            "max_tokens": spec.max_new_tokens,
            "temperature": spec.temperature,
            "seed": spec.seed,  # best effort on OpenAI; honoured by vLLM servers
        }
        if not spec.greedy:
            payload["top_p"] = spec.top_p
        return payload

    def _one(self, request: GenerationRequest) -> GenerationResult:
        started = time.perf_counter()
        body = json.dumps(self._payload(request)).encode()
        for attempt in range(self.max_retries + 1):
            try:
                reply = self._post(body)
                break
            except _Retryable as err:
                if attempt == self.max_retries:
                    return self._failed(request, f"gave up after {attempt + 1} attempts: {err}", started)
                delay = self._delay(attempt, err.retry_after)
                self.retries += 1
                log.warning("%s: %s; retry %d/%d in %.1fs", request.article_id, self._redact(str(err)),
                            attempt + 1, self.max_retries, delay)
                self._sleep(delay)
            except Exception as err:  # 4xx other than 408/409/429, bad JSON...: retrying would not help
                return self._failed(request, f"{type(err).__name__}: {err}", started)
        try:
            choice = reply["choices"][0]
            text = choice["message"]["content"]
            usage = reply.get("usage") or {}
        except (KeyError, IndexError, TypeError) as err:
            return self._failed(request, f"malformed response ({err!r}): {json.dumps(reply)[:300]}", started)
        if text is None:
            reason = choice.get("finish_reason")
            return self._failed(request, f"no content in response (finish_reason={reason})", started)
        return GenerationResult(
            request.article_id,
            text,
            int(usage.get("prompt_tokens") or 0),
            int(usage.get("completion_tokens") or 0),
            time.perf_counter() - started,
        )

    def _post(self, body: bytes) -> dict[str, Any]:
        http = urllib.request.Request(
            f"{self.api_base}/chat/completions",
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self._api_key}"},
        )
        try:
            with urllib.request.urlopen(http, timeout=self.timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as err:
            detail = err.read()[:300].decode(errors="replace")
            message = f"HTTP {err.code}: {detail}"
            if err.code in RETRY_STATUS:
                raise _Retryable(message, _retry_after(err.headers.get("Retry-After"))) from None
            raise RuntimeError(message) from None
        except (TimeoutError, socket.timeout, ConnectionError) as err:
            raise _Retryable(f"{type(err).__name__}: {err}") from None
        except urllib.error.URLError as err:  # connection refused/reset, DNS hiccup, timeout while connecting
            raise _Retryable(f"URLError: {err.reason}") from None

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.backoff_max)
        # Full jitter: concurrent workers that failed together do not retry together.
        return random.uniform(0, min(self.backoff_max, self.backoff_base * 2**attempt))

    def _failed(self, request: GenerationRequest, error: str, started: float) -> GenerationResult:
        result = GenerationResult.failed(request.article_id, self._redact(error))
        result.seconds = time.perf_counter() - started
        return result

    def _redact(self, text: str) -> str:
        # A server (or proxy) may echo request headers in an error body: never let the key travel further.
        return text.replace(self._api_key, "***") if self._api_key else text


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _public_url(url: str) -> str:
    """The URL without credentials or query string (someone may have put a key there)."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))
