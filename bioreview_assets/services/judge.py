"""The LLM judge over an OpenAI-compatible API, with answers cached by content hash (a rerun asks nothing again).

Every failure is a JudgeError that stops the score (after the backend's own retries): a matcher that silently
treated a failed question as "different" would lower every F1 without saying so.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence

from bioreview_assets.core.judge import JudgeError, cache_key, judge_messages, parse_verdict
from bioreview_assets.core.sampling import SamplingSpec
from bioreview_assets.store.artifacts import ArtifactStore

CACHE_DIR = "judge_cache"


class CachedJudge:
    """judge(pairs) -> verdicts: cached answers first, the rest asked in one concurrent batch and cached."""

    def __init__(self, spec, store: ArtifactStore, backend=None):
        from bioreview_assets.ml.generation.openai_backend import OpenAIBackend

        self.spec = spec
        self.backend = backend or OpenAIBackend(
            spec.api_base, spec.api_model, SamplingSpec(max_new_tokens=spec.max_tokens, temperature=0.0),
            api_key_env=spec.api_key_env, concurrency=spec.concurrency)
        self.store = store
        self.parts = (CACHE_DIR, f"{_safe(spec.api_model)}.jsonl")
        self.cache: dict[str, bool] = {}
        if store.exists(*self.parts):
            for line in store.read_bytes(*self.parts).decode().splitlines():
                row = json.loads(line)
                self.cache[row["key"]] = row["same"]
        self.asked = 0  # questions sent to the API over this judge's life (tests, logs)
        self.hits = 0
        self._lock = threading.Lock()

    def __call__(self, pairs: Sequence[tuple[str, str]]) -> list[bool]:
        from bioreview_assets.ml.generation.base import GenerationRequest

        keys = [cache_key(self.spec.api_model, a, b) for a, b in pairs]
        missing = {k: pair for k, pair in zip(keys, pairs) if k not in self.cache}
        self.hits += len(keys) - len(missing)
        if missing:
            answers: dict[str, str] = {}
            errors: list[str] = []

            def on_result(result) -> None:
                if result.error:
                    errors.append(f"{result.article_id[:12]}: {result.error}")
                else:
                    answers[result.article_id] = result.text

            self.backend.generate([GenerationRequest(k, judge_messages(a, b)) for k, (a, b) in missing.items()],
                                  on_result)
            self.asked += len(missing)
            if errors:
                raise JudgeError(f"the judge {self.spec.api_model} failed on {len(errors)} of {len(missing)} "
                                 f"questions (no score without its verdicts): {errors[0]}")
            verdicts = {k: parse_verdict(answers[k]) for k in missing}  # a non-yes/no answer raises here
            with self._lock:
                self.cache.update(verdicts)
                lines = "".join(json.dumps({"key": k, "same": v}) + "\n" for k, v in sorted(self.cache.items()))
                self.store.write_bytes(lines.encode(), *self.parts)
        return [self.cache[k] for k in keys]


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-._" else "_" for c in name)
