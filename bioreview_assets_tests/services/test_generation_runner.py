"""run_generation: small commits, resume after an interruption, retry of failed articles, derived summaries."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from bioreview_assets.ml.generation import GenerationRequest, GenerationResult, SamplingSpec
from bioreview_assets.services.generation_runner import IncompleteGeneration, run_generation, summarize
from bioreview_assets.store.generation_log import GenerationLog


class Preempted(Exception):
    """Stands in for a pod being killed mid-run."""


class ScriptedBackend:
    """Answers each article; fails the ids in `fail`; raises Preempted after `crash_after` results."""

    def __init__(self, fail: set[str] = frozenset(), crash_after: int | None = None):
        self.fail = set(fail)
        self.crash_after = crash_after
        self.calls: list[list[str]] = []

    def describe(self) -> dict:
        return {"backend": "scripted"}

    def generate(self, requests, on_result) -> None:
        self.calls.append([r.article_id for r in requests])
        for index, request in enumerate(requests):
            if self.crash_after is not None and index == self.crash_after:
                raise Preempted(f"killed after {index} results")
            if request.article_id in self.fail:
                on_result(GenerationResult.failed(request.article_id, "CUDA out of memory", 100))
            else:
                on_result(GenerationResult(request.article_id, f"[{request.article_id}]", 100, 5, 0.25))


def requests(n: int) -> list[GenerationRequest]:
    return [GenerationRequest(f"art:{i:02d}", [{"role": "user", "content": f"paper {i}"}]) for i in range(n)]


def test_interrupted_run_resumes_without_regenerating_and_retries_failures(tmp_path: Path) -> None:
    log = GenerationLog(str(tmp_path))
    reqs = requests(10)
    first = ScriptedBackend(fail={"art:01"}, crash_after=7)
    with pytest.raises(Preempted):
        run_generation(reqs, first, log, commit_every=3, extra_columns={"split": "val"})
    # The 7 results that streamed in before the crash were committed (two full batches plus the remainder).
    assert log.completed_ids() == {f"art:{i:02d}" for i in (0, 2, 3, 4, 5, 6)}
    assert log.failed_ids() == {"art:01"}

    second = ScriptedBackend()
    table = run_generation(reqs, second, log, commit_every=3, extra_columns={"split": "val"})
    assert second.calls == [["art:01", "art:07", "art:08", "art:09"]]  # done rows are not regenerated
    assert table["article_id"].to_list() == [r.article_id for r in reqs]
    assert table["error"].null_count() == 10 and set(table["split"].to_list()) == {"val"}
    assert table.filter(pl.col("article_id") == "art:01")["attempt"].to_list() == [2]

    third = ScriptedBackend()
    run_generation(reqs, third, log)
    assert third.calls == []  # nothing left: the backend is not even called


def test_retry_failed_false_keeps_failures(tmp_path: Path) -> None:
    log = GenerationLog(str(tmp_path))
    run_generation(requests(3), ScriptedBackend(fail={"art:02"}), log)
    again = ScriptedBackend()
    table = run_generation(requests(3), again, log, retry_failed=False)
    assert again.calls == []
    assert table.filter(pl.col("error").is_not_null())["article_id"].to_list() == ["art:02"]


def test_rows_are_committed_in_small_batches(tmp_path: Path) -> None:
    log = GenerationLog(str(tmp_path))
    seen: list[tuple[int, int]] = []
    run_generation(requests(7), ScriptedBackend(), log, commit_every=3, progress=lambda d, t: seen.append((d, t)))
    assert len(list(tmp_path.glob("part-*.parquet"))) == 3  # 3 + 3 + 1
    assert seen[-1] == (7, 7) and len(seen) == 7


def test_summary_is_derived_from_stored_rows(tmp_path: Path) -> None:
    log = GenerationLog(str(tmp_path))
    with pytest.raises(Preempted):
        run_generation(requests(4), ScriptedBackend(fail={"art:00"}, crash_after=3), log)
    table = run_generation(requests(4), ScriptedBackend(), log)
    summary = summarize(table)
    assert summary == summarize(GenerationLog(str(tmp_path)).read())  # a fresh reader says the same
    assert (summary["articles"], summary["ok"], summary["failed"], summary["retried_articles"]) == (4, 4, 0, 1)
    assert summary["seconds_per_article"] == pytest.approx(0.25)
    assert summary["completion_tokens_per_s"] == pytest.approx(20.0)


def test_backend_that_drops_articles_is_an_error(tmp_path: Path) -> None:
    class Lazy(ScriptedBackend):
        def generate(self, reqs, on_result):
            super().generate(reqs[:1], on_result)

    with pytest.raises(IncompleteGeneration, match="2 articles"):
        run_generation(requests(3), Lazy(), GenerationLog(str(tmp_path)))
    assert GenerationLog(str(tmp_path)).completed_ids() == {"art:00"}  # what did arrive is kept


def test_duplicate_ids_and_column_clashes_are_refused(tmp_path: Path) -> None:
    log = GenerationLog(str(tmp_path))
    with pytest.raises(ValueError, match="duplicate"):
        run_generation(requests(2) + requests(1), ScriptedBackend(), log)
    with pytest.raises(ValueError, match="may not override"):
        run_generation(requests(1), ScriptedBackend(), log, extra_columns={"text": "x"})


@pytest.mark.slow
def test_resume_with_the_real_transformers_backend(tmp_path: Path) -> None:
    """End to end on the tiny model: a crash mid-stream, then a resume that only generates what is missing."""
    from bioreview_assets.ml.generation.transformers_backend import TransformersBackend
    from bioreview_assets.ml.models import resolve_base_model
    from bioreview_assets.config.model import BaseModelSource, ModelConfig

    model_dir = resolve_base_model(ModelConfig(name="tiny-random", base=BaseModelSource(kind="tiny_random")))
    backend = TransformersBackend.from_dirs(model_dir, None, SamplingSpec(max_new_tokens=4), batch_size=2)
    log = GenerationLog(str(tmp_path))
    calls = {"n": 0}

    def crash_on_third(result: GenerationResult) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise Preempted("SIGTERM")

    with pytest.raises(Preempted):
        run_generation(requests(5), backend, log, commit_every=1, progress=lambda d, t: crash_on_third(None))
    done_before = log.completed_ids()
    assert len(done_before) == 3
    generated: list[str] = []
    real = backend.generate
    backend.generate = lambda reqs, on_result: (generated.extend(r.article_id for r in reqs), real(reqs, on_result))
    table = run_generation(requests(5), backend, log)
    assert sorted(generated) == sorted({r.article_id for r in requests(5)} - done_before)
    assert table["error"].null_count() == 5 and (table["attempt"] == 1).all()
