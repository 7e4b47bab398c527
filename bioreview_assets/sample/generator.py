"""Deterministic generator of the bundled sample benchmark: articles whose reviewer concerns follow from their text.

Each article is built from a random topic and a random set of "flaws". A flaw inserts a tell-tale sentence into one
section (e.g. methods: "compared with an unpaired t-test without a normality check") and yields the concern a reviewer
would raise about it, in one of several phrasings. So a model can learn the text -> concern mapping, and a scorer can
tell a right concern (about a flaw the article has) from a wrong one (about a flaw it does not have).
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import random
import uuid
from dataclasses import dataclass
from pathlib import Path

SEED = 20261125
# Share of an article's flaws that a second reviewer raises too, in other words (articles with >= 2 reviewers). Real
# reviewers overlap: Liang et al. (NEJM AI 2024) measured 28.58% human-human overlap; at this rate about 30% of a
# sample reviewer's scorable concerns are raised by another reviewer as well (test_generator measures it).
SECOND_REVIEWER_RATE = 0.2
SPLIT_SIZES = {"train": 120, "val": 30, "test": 30}
# Realistic proportions (v4 totals: f1000 39 %, elife 26 %, plos 25 %, nature 7 %, peerj 3.5 %).
SOURCE_WEIGHTS = {"f1000": 0.36, "elife": 0.26, "plos": 0.24, "nature": 0.08, "peerj": 0.06}
# Concerns per article differ by source as in the benchmark (eLife few, PeerJ/PLOS many).
CONCERN_RANGE = {"elife": (3, 7), "f1000": (7, 14), "plos": (8, 15), "nature": (6, 13), "peerj": (9, 15)}

GENES = ["TP53", "KRAS", "MYC", "PTEN", "BRCA1", "EGFR", "SOX2", "NOTCH1", "FOXO3", "HIF1A", "STAT3", "YAP1"]
TISSUES = ["liver", "hippocampus", "pancreatic islets", "intestinal crypts", "skeletal muscle", "retina", "kidney"]
DISEASES = ["fibrosis", "type 2 diabetes", "colorectal cancer", "neurodegeneration", "sepsis", "heart failure"]
ORGANISMS = ["mice", "zebrafish", "rats", "human organoids", "Drosophila", "patients"]
OUTCOMES = ["cell proliferation", "insulin secretion", "survival", "inflammatory cytokine levels", "gait speed",
            "tumour volume", "synaptic density", "glucose tolerance"]
TREATMENTS = ["metformin", "a small-molecule inhibitor", "resistance training", "a ketogenic diet", "rapamycin",
              "an antisense oligonucleotide"]
FILLER = {
    "introduction": [
        "{gene} is a regulator of {outcome} in the {tissue}.",
        "Altered {gene} signalling has been linked to {disease}.",
        "How {treatment} affects {outcome} remains debated.",
        "Here we examine the role of {gene} in {organism}.",
    ],
    "methods": [
        "{organism} were housed under standard conditions with free access to food and water.",
        "{treatment} was administered daily for four weeks.",
        "Tissue from the {tissue} was collected at the end of the study.",
        "{outcome} was measured at baseline and at week four.",
    ],
    "results": [
        "{treatment} changed {outcome} relative to control.",
        "Expression of {gene} increased in the {tissue}.",
        "The effect was observed in both sexes.",
        "Loss of {gene} reduced {outcome}.",
    ],
    "discussion": [
        "Our findings place {gene} upstream of {outcome}.",
        "These data suggest a new therapeutic angle for {disease}.",
        "Future work should address long-term effects of {treatment}.",
    ],
}


@dataclass(frozen=True)
class Flaw:
    key: str
    category: str
    severity: str
    section: str  # where the tell-tale sentence goes
    evidence: str
    concerns: tuple[str, ...]  # alternative reviewer phrasings
    figure: bool = False


FLAWS: tuple[Flaw, ...] = (
    Flaw("t_test_normality", "statistical_methodology", "major", "methods",
         "Group differences in {outcome} were compared with an unpaired t-test without a normality check.",
         ("The authors compare {outcome} with a t-test but never check normality; a normality test or a "
          "non-parametric alternative is needed.",
          "Statistical analysis of {outcome} relies on t-tests without verifying the normality assumption.")),
    Flaw("multiple_comparisons", "statistical_methodology", "major", "results",
         "We tested {n} outcomes and report those with P < 0.05 without correction.",
         ("No correction for multiple comparisons is applied across the {n} outcomes tested.",
          "The authors test {n} outcomes without adjusting for multiple testing, so several findings may be false "
          "positives.")),
    Flaw("small_n", "design_flaw", "major", "methods",
         "Each group contained {small} {organism}.",
         ("With only {small} {organism} per group the study is underpowered; a power calculation should be provided.",
          "The sample size of {small} per group is too small to support the conclusions about {outcome}.")),
    Flaw("no_blinding", "design_flaw", "major", "methods",
         "Outcome assessors were not blinded to group allocation.",
         ("Outcome assessors were not blinded, which may bias the measurement of {outcome}.",
          "The lack of blinding of assessors to treatment group is a source of bias for {outcome}.")),
    Flaw("no_rescue", "missing_experiment", "major", "results",
         "Knockdown of {gene} with a single shRNA reduced {outcome}.",
         ("A rescue experiment re-expressing {gene} is needed to exclude off-target effects of the single shRNA.",
          "Only one shRNA against {gene} was used; a second independent shRNA or a rescue experiment is required.")),
    Flaw("no_vehicle_control", "missing_experiment", "major", "methods",
         "Control animals received no injection.",
         ("A vehicle-injected control group is missing; untreated animals do not control for the injection of "
          "{treatment}.",
          "The control group should receive vehicle injections rather than no treatment.")),
    Flaw("novelty_claim", "prior_art_novelty", "minor", "introduction",
         "To our knowledge this is the first study of {gene} in the {tissue}.",
         ("The claim that this is the first study of {gene} in the {tissue} overlooks earlier work that should be "
          "cited and discussed.",
          "Novelty is overstated: previous studies have examined {gene} in the {tissue}.")),
    Flaw("undefined_abbrev", "writing_clarity", "minor", "results",
         "{abbr} levels were higher in treated {organism}.",
         ("The abbreviation {abbr} is used without being defined.",
          "Please define {abbr} at first use; the text never explains it.")),
    Flaw("as_described", "writing_clarity", "minor", "methods",
         "Samples were processed as described previously.",
         ("The methods say samples were processed 'as described previously' without a citation or details.",
          "Sample processing is described only as 'as described previously'; the protocol must be given or "
          "cited.")),
    Flaw("antibody_details", "reagent_method_specificity", "minor", "methods",
         "Antibodies against {gene} were obtained from a commercial supplier.",
         ("Catalogue numbers, clones and dilutions of the {gene} antibodies should be reported.",
          "The {gene} antibody is not identified (supplier, catalogue number, validation).")),
    Flaw("cell_line_auth", "reagent_method_specificity", "minor", "methods",
         "Cell lines were obtained from a colleague.",
         ("The source and authentication of the cell lines (STR profiling, mycoplasma testing) are not reported.",
          "Cell lines from a colleague need authentication and mycoplasma testing details.")),
    Flaw("causal_claim", "interpretation", "major", "discussion",
         "These results demonstrate that {gene} causes {disease}.",
         ("The conclusion that {gene} causes {disease} is not supported by the correlational data presented.",
          "Causality between {gene} and {disease} is overstated; the data only show an association.")),
    Flaw("overgeneralise", "interpretation", "major", "discussion",
         "Our findings in {organism} directly apply to human {disease}.",
         ("Extrapolating from {organism} to human {disease} is not justified without further evidence.",
          "The authors generalise from {organism} to patients without supporting data.")),
    Flaw("data_availability", "other", "optional", "data_availability",
         "Data are available from the authors upon request.",
         ("Data should be deposited in a public repository rather than available on request.",)),
    Flaw("figure_error_bars", "figure_issue", "minor", "results",
         "Quantification of {outcome} is shown in Figure {fig}.",
         ("Figure {fig} lacks error bars and the y-axis is not labelled.",
          "In Figure {fig} the individual data points should be shown."), figure=True),
)

ODD_SECTION_NAMES = {"methods": ["materials_and_methods", "experimental_procedures", "statistical_analysis"],
                     "results": ["results_and_observations"], "discussion": ["conclusions"]}


def _fill(template: str, topic: dict) -> str:
    text = template.format(**topic)
    return text[0].upper() + text[1:]


def _topic(rng: random.Random) -> dict:
    gene = rng.choice(GENES)
    return {
        "gene": gene,
        "tissue": rng.choice(TISSUES),
        "disease": rng.choice(DISEASES),
        "organism": rng.choice(ORGANISMS),
        "outcome": rng.choice(OUTCOMES),
        "treatment": rng.choice(TREATMENTS),
        "n": rng.choice([6, 8, 12, 20]),
        "small": rng.choice([3, 4, 5]),
        "abbr": rng.choice(["pSTAT", "ROS", "MDA", "AUC-G", "NLR"]),
        "fig": f"{rng.randint(1, 6)}{rng.choice('ABCD')}",
    }


def _article(rng: random.Random, source: str, index: int, split: str, second_reviewer_rate: float) -> dict:
    topic = _topic(rng)
    lo, hi = CONCERN_RANGE[source]
    n_flaws = min(rng.randint(lo, hi), len(FLAWS))
    flaws = rng.sample(FLAWS, n_flaws)
    sections: dict[str, list[str]] = {name: [] for name in ("introduction", "methods", "results", "discussion")}
    for name, templates in FILLER.items():
        sections[name] += [_fill(t, topic) for t in rng.sample(templates, k=min(3, len(templates)))]
    for flaw in flaws:
        sections.setdefault(flaw.section, []).append(_fill(flaw.evidence, topic))
    for body in sections.values():
        rng.shuffle(body)
    named = _rename_sections(rng, source, sections)
    native = _native_id(rng, source, index, split)
    doi = f"10.{rng.randint(1000, 9999)}/{source}.{native}"
    article_id = f"{source}:{native}"
    reviewers = rng.randint(1, 3)
    concerns = []
    per_reviewer: dict[int, int] = {}
    for flaw in flaws:
        reviewer = rng.randint(1, reviewers)
        per_reviewer[reviewer] = per_reviewer.get(reviewer, 0) + 1
        stance = rng.choices(["no_response", "conceded", "partial", "rebutted"], [0.7, 0.15, 0.1, 0.05])[0]
        concerns.append({
            "concern_id": f"{article_id}:R{reviewer}C{per_reviewer[reviewer]}",
            "reviewer_num": reviewer,
            "concern_text": _fill(rng.choice(flaw.concerns), topic),
            "category": flaw.category,
            "severity": flaw.severity,
            "author_response_text": None if stance == "no_response" else "We thank the reviewer and revised the text.",
            "author_stance": stance,
            "evidence_of_change": None if stance == "no_response" else stance != "rebutted",
            "resolution_confidence": 0.1 if stance == "no_response" else round(rng.uniform(0.5, 1.0), 2),
            "raised_by_multiple": rng.random() < 0.1,
            "requires_figure_reading": flaw.figure,
            "extraction_trace_id": str(uuid.UUID(int=rng.getrandbits(128))),
            "extraction_manifest_id": "em-sample-v1",
            "source": source,
            "article_doi": doi,
        })
    concerns += _second_reviewers(article_id, reviewers, concerns, flaws, per_reviewer, topic, second_reviewer_rate)
    concerns.sort(key=lambda c: (c["reviewer_num"], int(c["concern_id"].rsplit("C", 1)[1])))
    title = f"{topic['gene']} controls {topic['outcome']} in the {topic['tissue']} of {topic['organism']}"
    abstract = (
        f"We investigated how {topic['gene']} shapes {topic['outcome']} in {topic['organism']} and whether "
        f"{topic['treatment']} modifies this effect. Our results link {topic['gene']} to {topic['disease']}."
    )
    return {
        "id": article_id,
        "source": source,
        "doi": doi,
        "title": title,
        "abstract": abstract,
        "subjects": [rng.choice(["Cell Biology", "Neuroscience", "Medicine", "Genetics"])],
        "editorial_decision": rng.choice(["accept", "major_revision", "minor_revision", "unknown"]),
        "revision_round": 1,
        "published_date": (dt.date(2022, 1, 1) + dt.timedelta(days=rng.randint(0, 1200))).isoformat(),
        "review_format": "reviewed_preprint" if source == "elife" and rng.random() < 0.4 else "journal",
        "has_author_response": any(c["author_stance"] != "no_response" for c in concerns),
        "paper_text_sections": named,
        "structured_references": [],
        "decision_letter_raw": "",
        "author_response_raw": "",
        "concerns": concerns,
        "extraction_manifest_id": "em-sample-v1",
        "schema_version": "1.1",
    }


def _second_reviewers(article_id: str, reviewers: int, concerns: list[dict], flaws: list[Flaw],
                      per_reviewer: dict[int, int], topic: dict, rate: float) -> list[dict]:
    """The same flaw raised again by another reviewer of the article, in another of its phrasings.

    Drawn from a generator of its own (seeded by the article id), so every earlier draw, concern and id of the sample
    stays as it was: the overlap only adds concerns.
    """
    if reviewers < 2:
        return []
    rng = random.Random(f"second-reviewer:{article_id}")
    added = []
    for flaw, first in zip(flaws, list(concerns)):
        other_phrasings = [p for p in flaw.concerns if _fill(p, topic) != first["concern_text"]]
        if not other_phrasings or rng.random() >= rate:
            continue
        reviewer = rng.choice([r for r in range(1, reviewers + 1) if r != first["reviewer_num"]])
        per_reviewer[reviewer] = per_reviewer.get(reviewer, 0) + 1
        first["raised_by_multiple"] = True
        added.append({**first, "concern_id": f"{article_id}:R{reviewer}C{per_reviewer[reviewer]}",
                      "reviewer_num": reviewer, "concern_text": _fill(rng.choice(other_phrasings), topic),
                      "raised_by_multiple": True,
                      "extraction_trace_id": str(uuid.UUID(int=rng.getrandbits(128)))})
    return added


def _rename_sections(rng: random.Random, source: str, sections: dict[str, list[str]]) -> dict[str, str]:
    """Real exports differ: PDF-derived Nature rows are one `body`; some use odd slugs."""
    joined = {name: " ".join(body) for name, body in sections.items() if body}
    if source == "nature" and rng.random() < 0.5:
        return {"body": "\n\n".join(joined.values())}
    renamed = {}
    for name, text in joined.items():
        if name in ODD_SECTION_NAMES and rng.random() < 0.3:
            name = rng.choice(ODD_SECTION_NAMES[name])
        renamed[name] = text
    return renamed


def _native_id(rng: random.Random, source: str, index: int, split: str) -> str:
    number = {"train": 10000, "val": 20000, "test": 30000}[split] + index
    return {
        "elife": str(80000 + number),
        "plos": f"10.1371/journal.pbio.{number:07d}",
        "f1000": f"10.12688_f1000research.{number}.1",
        "nature": f"s41467-024-{number}-x",
        "peerj": str(number),
    }[source]


def _sources_for(rng: random.Random, n: int) -> list[str]:
    """Proportional allocation with every source present at least once."""
    counts = {s: max(1, round(w * n)) for s, w in SOURCE_WEIGHTS.items()}
    while sum(counts.values()) > n:
        counts[max(counts, key=counts.get)] -= 1
    while sum(counts.values()) < n:
        counts["f1000"] += 1
    sources = [s for s, c in counts.items() for _ in range(c)]
    rng.shuffle(sources)
    return sources


def generate_sample_splits(seed: int = SEED, sizes: dict[str, int] | None = None,
                           second_reviewer_rate: float = SECOND_REVIEWER_RATE) -> dict[str, list[dict]]:
    """All splits of the sample benchmark as lists of JSON-ready rows (deterministic for a seed).

    second_reviewer_rate 0 gives the sample without the second reviewers' concerns, draw for draw the same otherwise
    (the tiny models' tokenizer is trained on that text, so adding reviewers did not change any tiny model).
    """
    rng = random.Random(seed)
    out: dict[str, list[dict]] = {}
    for split, size in (sizes or SPLIT_SIZES).items():
        out[split] = [_article(rng, source, i, split, second_reviewer_rate)
                      for i, source in enumerate(_sources_for(rng, size))]
    return out


def write_sample(out_dir: Path, seed: int = SEED, compress: bool = False) -> dict[str, Path]:
    """Write `{train,val,test}.jsonl` (or `.jsonl.gz`) into out_dir; returns the written paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for split, rows in generate_sample_splits(seed).items():
        payload = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode()
        path = out_dir / f"{split}.jsonl{'.gz' if compress else ''}"
        # mtime=0 keeps the bundled files byte-identical across regenerations.
        path.write_bytes(gzip.compress(payload, mtime=0) if compress else payload)
        written[split] = path
    return written


MATCHER_PAIRS_FILE = "matcher_pairs.jsonl.gz"
MATCHER_PAIR_TOPICS = 20


def matcher_pairs(seed: int = SEED, n_topics: int = MATCHER_PAIR_TOPICS) -> list[dict]:
    """Labelled "same concern?" pairs the generator implies, for validating a matcher (annotator `sample-generator`).

    Per random topic (an article's gene, organism, ...): every flaw's two phrasings form a positive pair (two reviewers
    raising one flaw in other words); two different flaws of the same category form a hard negative (same topic, same
    category, different issue); and as many flaws of different categories form plain negatives. Figure flaws are left
    out (the scorer never sees them).
    """
    rng = random.Random(f"matcher-pairs:{seed}")
    flaws = [f for f in FLAWS if not f.figure]
    rows = []

    def add(a: str, b: str, label: bool, kind: str, topic: dict) -> None:
        rows.append({"text_a": _fill(a, topic), "text_b": _fill(b, topic), "label": label,
                     "annotator": "sample-generator", "kind": kind})

    for _ in range(n_topics):
        topic = _topic(rng)
        for flaw in flaws:
            if len(flaw.concerns) >= 2:
                a, b = rng.sample(flaw.concerns, 2)
                add(a, b, True, "positive", topic)
        same_category = [(x, y) for i, x in enumerate(flaws) for y in flaws[i + 1:] if x.category == y.category]
        for x, y in same_category:
            add(rng.choice(x.concerns), rng.choice(y.concerns), False, "hard_negative", topic)
        for _ in range(len(same_category)):
            x, y = rng.sample(flaws, 2)
            while x.category == y.category:
                x, y = rng.sample(flaws, 2)
            add(rng.choice(x.concerns), rng.choice(y.concerns), False, "negative", topic)
    return rows


def write_matcher_pairs(out_dir: Path, seed: int = SEED) -> Path:
    """Write the generator's labelled pairs as gzipped JSONL (byte-identical across regenerations)."""
    payload = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in matcher_pairs(seed)).encode()
    path = out_dir / MATCHER_PAIRS_FILE
    path.write_bytes(gzip.compress(payload, mtime=0))
    return path


BUNDLED_DIR = Path(__file__).parent / "data"
