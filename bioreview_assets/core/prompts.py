"""The one prompt builder: chat messages for training rows AND inference prompts, with a content hash (W5, W6, W7)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Callable, Sequence

from bioreview_assets.core.schema import SCORED_CATEGORIES, SEVERITIES, Article, ScorableConcern

BUILDER_VERSION = "2"  # bump when the layout or the fitting rules below change

_CATEGORY_LIST = ", ".join(SCORED_CATEGORIES)
_SEVERITY_LIST = ", ".join(SEVERITIES)

# v2 deliberately uses the upstream REVIEWER_SYSTEM rules (docs/reference.md: harness §4; the reference
# README claimed but did not train on them, W6) with an object output format, so training target and instruction agree.
SYSTEM_PROMPTS: dict[str, str] = {
    "v2": (
        "You are an expert peer reviewer for biomedical research papers published in high-impact journals such as "
        "eLife, Nature, and Science. Identify the specific scientific concerns a careful reviewer would raise.\n\n"
        "CONCERN CATEGORIES:\n"
        "- design_flaw: problems with the experimental or study design\n"
        "- statistical_methodology: inappropriate or insufficient statistics\n"
        "- missing_experiment: controls or experiments needed to support the claims\n"
        "- prior_art_novelty: overlooked prior work or overstated novelty\n"
        "- writing_clarity: unclear, incomplete or inconsistent reporting\n"
        "- reagent_method_specificity: missing detail on reagents, methods or protocols\n"
        "- interpretation: conclusions not supported by the data\n"
        "- other: anything else\n\n"
        "RULES:\n"
        "1. Generate 10-15 specific, actionable scientific concerns.\n"
        "2. Each concern is a clear, self-contained statement of 1-3 sentences.\n"
        "3. Cover diverse types: design, methodology, statistics, interpretation, clarity, reagents.\n"
        "4. Do NOT raise concerns about figures: you cannot see them.\n"
        "5. No praise, vague criticism or stylistic preferences.\n"
        "6. Be specific enough for the authors to address each concern.\n"
        "7. Prioritise major issues over minor ones.\n"
        "8. Do not repeat the same concern for several figures, sections or experiments.\n\n"
        "OUTPUT FORMAT: Return a JSON array of concern objects, nothing else.\n"
        f'Each item must be: {{"text": string, "category": one of [{_CATEGORY_LIST}], '
        f'"severity": one of [{_SEVERITY_LIST}]}}.'
    ),
    # For small models trained on a CPU: the same task and output format in a tenth of v2's tokens, so that a
    # training row is mostly article and answer (v2's instructions are about a third of a SmolLM2 row).
    "compact": (
        "You are an expert peer reviewer of biomedical research articles. Return the specific scientific concerns "
        'a careful reviewer would raise as a JSON array of {"text", "category", "severity"} objects; '
        f"category is one of {_CATEGORY_LIST}; severity is one of {_SEVERITY_LIST}."
    ),
}

USER_INSTRUCTION = (
    "Review the following biomedical article.\n\n"
    "Return ONLY a JSON array of objects with keys: `text`, `category`, `severity`.\n"
    f"Allowed category values: {_CATEGORY_LIST}.\n"
    f"Allowed severity values: {_SEVERITY_LIST}.\n\n"
)
# The text that opens the user turn, per prompt version (the compact system prompt already states the format).
USER_INSTRUCTIONS: dict[str, str] = {"v2": USER_INSTRUCTION, "compact": "Review this article.\n\n"}

# Budget priority: earlier = protected longer. A section matches the first group whose keyword its name contains.
SECTION_PRIORITY: tuple[tuple[str, ...], ...] = (
    ("method", "materials", "procedure", "statistic", "protocol"),
    ("result",),
    ("introduction", "intro", "background"),
    ("discussion", "conclusion"),
)
TRUNCATION_MARKER = "\n[... truncated for length]"
OMITTED_MARKER = "[section omitted for length]"
MIN_SECTION_TOKENS = 32  # below this a cut section is replaced by the omission marker

CountTokens = Callable[[str], int]


@dataclass
class BuiltPrompt:
    messages: list[dict[str, str]]  # system + user (no assistant)
    user_tokens: int
    truncated: bool
    cut_sections: list[str] = field(default_factory=list)
    omitted_sections: list[str] = field(default_factory=list)


def normalise_whitespace(text: str) -> str:
    """Strip, drop trailing spaces, collapse 3+ newlines to 2 (same text for every counter)."""
    lines = [line.rstrip() for line in text.strip().splitlines()]
    out = "\n".join(lines)
    while "\n\n\n" in out:
        out = out.replace("\n\n\n", "\n\n")
    return out


def section_rank(name: str) -> int:
    """Priority rank of a section name (0 = methods ... 4 = other)."""
    lowered = name.lower()
    for rank, keywords in enumerate(SECTION_PRIORITY):
        if any(keyword in lowered for keyword in keywords):
            return rank
    return len(SECTION_PRIORITY)


def prompt_spec(version: str, token_budget: int, tokenizer_id: str) -> dict:
    """Everything that determines a prompt; its hash is stored with corpora, adapters and generations."""
    if version not in SYSTEM_PROMPTS:
        raise KeyError(f"unknown prompt version {version!r}; known: {sorted(SYSTEM_PROMPTS)}")
    return {
        "builder_version": BUILDER_VERSION,
        "prompt_version": version,
        "system_prompt": SYSTEM_PROMPTS[version],
        "user_instruction": USER_INSTRUCTIONS[version],
        "section_priority": [list(group) for group in SECTION_PRIORITY],
        "token_budget": token_budget,
        "tokenizer": tokenizer_id,
    }


def build_prompt(article: Article, count_tokens: CountTokens, token_budget: int, version: str = "v2") -> BuiltPrompt:
    """System + user messages for an article, the user turn fitted to `token_budget` tokens of the model."""
    header = [f"# {normalise_whitespace(article.title)}", f"## Abstract\n{normalise_whitespace(article.abstract)}"]
    sections = [
        (name, normalise_whitespace(text)) for name, text in article.paper_text_sections.items() if text.strip()
    ]
    fitted = fit_sections(USER_INSTRUCTIONS[version], header, sections, count_tokens, token_budget)
    messages = [
        {"role": "system", "content": SYSTEM_PROMPTS[version]},
        {"role": "user", "content": fitted.text},
    ]
    return BuiltPrompt(
        messages=messages,
        user_tokens=fitted.tokens,
        truncated=bool(fitted.cut or fitted.omitted),
        cut_sections=fitted.cut,
        omitted_sections=fitted.omitted,
    )


@dataclass
class _Fitted:
    text: str
    tokens: int
    cut: list[str]
    omitted: list[str]


def fit_sections(
    prefix: str,
    header: Sequence[str],
    sections: Sequence[tuple[str, str]],
    count_tokens: CountTokens,
    budget: int,
) -> _Fitted:
    """Keep sections in document order; when over budget, cut the lowest-priority section first, marking each cut."""
    bodies = {name: text for name, text in sections}
    cut: list[str] = []
    omitted: list[str] = []

    def render() -> str:
        blocks = list(header)
        for name, _ in sections:
            body = OMITTED_MARKER if name in omitted else bodies[name]
            blocks.append(f"## {name}\n{body}")
        return prefix + "\n\n".join(blocks)

    # Lowest priority first; among equals, the later section goes first (the start of a paper is kept longest).
    cut_order = sorted(range(len(sections)), key=lambda i: (-section_rank(sections[i][0]), -i))
    text = render()
    for index in cut_order:
        over = count_tokens(text) - budget
        if over <= 0:
            break
        name, full = sections[index]
        keep = _largest_prefix(full, count_tokens(bodies[name]) - over, count_tokens)
        if keep is None:
            omitted.append(name)
        else:
            bodies[name] = keep
            cut.append(name)
        text = render()
    if count_tokens(text) > budget:
        # Header alone (title + abstract) exceeds the budget: hard cap with a marker, never over budget.
        text = _largest_prefix(text, budget, count_tokens, min_tokens=1) or ""
        cut.append("header")
    return _Fitted(text=text, tokens=count_tokens(text), cut=cut, omitted=omitted)


def _largest_prefix(text: str, max_tokens: int, count_tokens: CountTokens, min_tokens: int = MIN_SECTION_TOKENS):
    """Longest character prefix (+ marker) whose token count is <= max_tokens; None if below min_tokens."""
    if max_tokens < min_tokens:
        return None
    lo, hi = 0, len(text)
    best = None
    while lo <= hi:
        mid = (lo + hi) // 2
        candidate = text[:mid].rstrip() + TRUNCATION_MARKER
        if count_tokens(candidate) <= max_tokens:
            best, lo = candidate, mid + 1
        else:
            hi = mid - 1
    return best


def target_text(concerns: Sequence[ScorableConcern]) -> str:
    """The assistant target: compact JSON array of {text, category, severity} in reviewer order."""
    items = [{"text": c.text, "category": c.category, "severity": c.severity} for c in concerns]
    return json.dumps(items, ensure_ascii=False)
