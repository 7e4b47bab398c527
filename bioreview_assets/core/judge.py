"""The LLM-judge matcher's pure parts: the prompt, its hash, the cache key, the verdict parser, the score matrix.

A candidate pair (embedding cosine >= the pre-filter) is asked "do these two concerns raise the same issue?"; the
answer must start with yes or no (anything else is an error, never a guess). A "yes" scores 0.5 + cosine / 2 and a
"no", or a pair the pre-filter left out, 0: Hungarian matching at threshold 0.5 then pairs as many judged-same
concerns as it can, the closer ones first.
"""

from __future__ import annotations

import hashlib
import json
import re
import urllib.parse
from collections.abc import Callable, Sequence

import numpy as np

JUDGE_PROMPT_VERSION = "same-issue-v1"
JUDGE_SYSTEM = ("You compare two concerns that peer reviewers raised about a biomedical article. Answer with one word: "
                "yes if both raise the same issue (the same problem with the work, even in other words or at another "
                "level of detail), no otherwise.")
JUDGE_USER = "Concern A: {a}\nConcern B: {b}\nDo A and B raise the same issue? Answer yes or no."
_VERDICT = re.compile(r"^\W*(yes|no)\b", re.IGNORECASE)

Judge = Callable[[Sequence[tuple[str, str]]], list[bool]]


class JudgeError(RuntimeError):
    """The judge failed or answered something that is not yes/no: the score is not computed (no fallback)."""


def judge_messages(a: str, b: str) -> list[dict]:
    return [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": JUDGE_USER.format(a=a, b=b)}]


def prompt_hash() -> str:
    """Hash of the judge prompt (system + user template + version): part of the matcher identity and cache key."""
    return hashlib.sha256(json.dumps([JUDGE_PROMPT_VERSION, JUDGE_SYSTEM, JUDGE_USER]).encode()).hexdigest()[:16]


def judge_identity(spec) -> dict:
    """What determines the judge's answers: model, endpoint (no credentials), prompt hash, pre-filter, decoding."""
    parts = urllib.parse.urlsplit(spec.api_base)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return {"api_model": spec.api_model, "api_base": urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", "")),
            "prompt_version": JUDGE_PROMPT_VERSION, "prompt_hash": prompt_hash(),
            "prefilter_threshold": spec.prefilter_threshold, "temperature": 0.0, "max_tokens": spec.max_tokens}


def cache_key(api_model: str, a: str, b: str) -> str:
    """Content hash of one question: the model, the prompt and the two texts (in the order asked)."""
    return hashlib.sha256(json.dumps([api_model, prompt_hash(), a, b]).encode()).hexdigest()


def parse_verdict(text: str) -> bool:
    """yes -> True, no -> False; anything else raises JudgeError."""
    found = _VERDICT.match(text or "")
    if not found:
        raise JudgeError(f"the judge answered {text[:80]!r}, not yes or no")
    return found.group(1).lower() == "yes"


def judged_matrix(cosines: np.ndarray, tool_texts: Sequence[str], gt_texts: Sequence[str], prefilter: float,
                  judge: Judge) -> np.ndarray:
    """(n_tool x n_gt) scores: 0.5 + cosine / 2 where the judge said same, 0 elsewhere; only pre-filtered pairs
    are asked (one call to `judge` with all of them)."""
    cos = np.asarray(cosines, dtype=np.float64)
    rows, cols = np.nonzero(cos >= prefilter)
    out = np.zeros(cos.shape, dtype=np.float64)
    if rows.size:
        verdicts = judge([(tool_texts[i], gt_texts[j]) for i, j in zip(rows.tolist(), cols.tolist())])
        if len(verdicts) != rows.size:
            raise JudgeError(f"the judge returned {len(verdicts)} verdicts for {rows.size} pairs")
        yes = np.asarray(verdicts, dtype=bool)
        out[rows[yes], cols[yes]] = 0.5 + cos[rows[yes], cols[yes]] / 2
    return out
