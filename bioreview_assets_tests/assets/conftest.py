"""The tiny model's chain through the graph, materialised once per session for the modules that start from it.

benchmark_split[train, val] -> sft_corpus[tiny-random|train, val] -> adapter[tiny-random] -> merged_model[tiny-random]
-> generations[tiny-random|val]: about half a minute on 2 cores, most of it training the adapter. test_graph.py and
test_staleness.py both need exactly this chain before their own steps; each checks out a pristine copy instead of
training the same adapter again.
"""

from __future__ import annotations

import shutil
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import pytest

from bioreview_assets.definitions import build_assets, build_resources

TINY_VAL = dg.MultiPartitionKey({"model": "tiny-random", "split": "val"})


def _materialize(instance, asset, partition) -> dg.ExecuteInProcessResult:
    result = dg.materialize(build_assets(), selection=[asset], partition_key=partition, instance=instance,
                            resources=build_resources())
    assert result.success, f"tiny chain: {asset}[{partition}] failed"
    return result


def _clone(source: dg.DagsterInstance) -> dg.DagsterInstance:
    """A new ephemeral instance holding every run and event of `source`: data versions, staleness and asset check
    history read as they would on the instance that ran the chain, and what one module adds stays out of the next."""
    clone = dg.DagsterInstance.ephemeral()
    for run in reversed(source.get_runs()):  # oldest first: event order (and so "latest") is kept
        for snapshot_id, get in ((run.job_snapshot_id, source.get_job_snapshot),
                                 (run.execution_plan_snapshot_id, source.get_execution_plan_snapshot)):
            if snapshot_id and not clone.has_snapshot(snapshot_id):
                clone.add_snapshot(get(snapshot_id))
        clone.add_run(run)
        for entry in source.all_logs(run.run_id):
            clone.store_event(entry)
    return clone


class TinyChain:
    """The chain's storage root (always the same path: adapter and generation metadata record absolute paths), a
    pristine copy of it, the instance that ran it and the materialisation results by asset name."""

    def __init__(self, root: Path):
        self.storage = root / "storage"
        self.pristine = root / "pristine"
        self.instance = dg.DagsterInstance.ephemeral()
        self.results: dict[str, dg.ExecuteInProcessResult] = {}

    def build(self) -> None:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("BIOREVIEW_STORAGE", str(self.storage))
            for split in ("train", "val"):
                _materialize(self.instance, "benchmark_split", split)
            for split in ("train", "val"):
                _materialize(self.instance, "sft_corpus", dg.MultiPartitionKey({"model": "tiny-random", "split": split}))
            for asset in ("adapter", "merged_model"):
                self.results[asset] = _materialize(self.instance, asset, "tiny-random")
            self.results["generations"] = _materialize(self.instance, "generations", TINY_VAL)
        shutil.copytree(self.storage, self.pristine)

    @contextmanager
    def checkout(self):
        """The storage root reset to the pristine chain (BIOREVIEW_STORAGE points at it until the block ends) and a
        fresh instance with the chain's history: yields (instance, results). One module at a time: a module-scoped
        fixture holds the block open while its tests run, and the next module's checkout resets what they wrote."""
        shutil.rmtree(self.storage)
        shutil.copytree(self.pristine, self.storage)
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("BIOREVIEW_STORAGE", str(self.storage))
            yield _clone(self.instance), dict(self.results)


@pytest.fixture(scope="session")
def tiny_chain(tmp_path_factory) -> TinyChain:
    chain = TinyChain(tmp_path_factory.mktemp("tiny-chain"))
    chain.build()
    return chain
