"""The checklist baseline: the largest clusters of training concerns, K = median per article, same list everywhere."""

from __future__ import annotations

import numpy as np
import pytest

from bioreview_assets.core.baselines import BASELINE_GT_POLICY, CHECKLIST, baseline_concerns
from bioreview_assets.core.checklist import build_checklist, checklist_k, leader_clusters
from bioreview_assets_tests.core.test_reviewer_ceiling import article

E = np.eye(4)
VECTORS = {
    "The sample size is far too small.": E[0],
    "Too few animals per group were used.": 0.9 * E[0] + np.sqrt(1 - 0.81) * E[1],  # 0.9 to the first: same cluster
    "No correction for multiple comparisons.": E[1],
    "Cell lines were never authenticated.": E[2],
    "Writing is unclear in the methods.": E[3],
}


class Encoder:
    def __init__(self):
        self.calls = 0

    def __call__(self, texts):
        self.calls += 1
        return np.array([VECTORS[t] for t in texts], dtype=np.float32)


TRAIN = [
    article("elife:1", {1: ["The sample size is far too small.", "No correction for multiple comparisons."]}),
    article("elife:2", {1: ["Too few animals per group were used.", "Cell lines were never authenticated.",
                            "Writing is unclear in the methods."]}),
    article("elife:3", {1: ["The sample size is far too small.", "Writing is unclear in the methods.",
                            "Cell lines were never authenticated."]}),
    article("elife:4", {1: ["Writing is unclear in the methods."]}),
]


def test_k_is_the_median_count_capped():
    assert checklist_k(TRAIN, BASELINE_GT_POLICY, None) == (2, 2.5)  # median of 2, 3, 3, 1 = 2.5, rounded down
    assert checklist_k(TRAIN, BASELINE_GT_POLICY, 1) == (1, 2.5)


def test_the_largest_clusters_represented_by_their_central_member():
    checklist = build_checklist(TRAIN, Encoder(), 0.65, BASELINE_GT_POLICY, cap=None)
    # Clusters: sample size {x2 "sample size", "too few animals"} = 3, writing = 3, cell lines = 2, multiple = 1.
    # Ties on size keep the cluster founded first (sample size, then writing). The centroid of the first cluster
    # (2 x E0 + the 0.9 vector) is nearest "The sample size is far too small.".
    assert [c.text for c in checklist.concerns] == ["The sample size is far too small.",
                                                    "Writing is unclear in the methods."]
    assert checklist.cluster_sizes == (3, 3) and checklist.n_clusters == 4 and checklist.n_training_concerns == 9
    assert checklist.concerns[0].category == "design_flaw"


def test_checklist_is_deterministic_and_the_same_for_every_article():
    targets = [article("plos:9", {1: ["No correction for multiple comparisons."]}, source="plos"),
               article("elife:9", {1: ["Cell lines were never authenticated."]})]
    runs = [baseline_concerns(CHECKLIST, targets, lambda: TRAIN, encode=Encoder(), threshold=0.65, cap=20)
            for _ in range(2)]
    assert runs[0].by_unit == runs[1].by_unit
    assert runs[0].by_unit["plos:9"] == runs[0].by_unit["elife:9"]
    assert runs[0].meta["k"] == 2 and runs[0].sources == {"plos:9": "plos", "elife:9": "elife"}
    with pytest.raises(ValueError, match="embedder"):
        baseline_concerns(CHECKLIST, targets, lambda: TRAIN)


def test_leader_clustering_joins_the_first_leader_reached():
    emb = np.array([E[0], E[1], 0.8 * E[0] + 0.6 * E[1], E[1]], dtype=np.float32)
    assert leader_clusters(emb, 0.7) == [[0, 2], [1, 3]]
    assert leader_clusters(emb, 0.9) == [[0], [1, 3], [2]]
