"""Sharded generation: N worker processes (CPU here) give one process's output, a killed shard fails the step with
its name, a re-run resumes without regenerating; vLLM data/tensor parallelism; worker lifetime."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import polars as pl
import pytest

from bioreview_assets.ml.generation import GenerationRequest, GenerationResult, SamplingSpec, make_backend
from bioreview_assets.ml.generation import sharding, vllm_backend
from bioreview_assets.services.generation_runner import run_generation
from bioreview_assets.services.serving import generation_key
from bioreview_assets.ml.generation.sharding import ShardCommand, ShardedTransformersBackend, ShardFailed, deal
from bioreview_assets.ml.generation.transformers_backend import Prompt, TransformersBackend, plan_batches
from bioreview_assets.ml.generation.vllm_backend import VLLMBackend
from bioreview_assets.config.model import BaseModelSource, ModelConfig
from bioreview_assets.store.generation_log import GenerationLog
from bioreview_assets_tests.ml.conftest import tiny_model_config

SPEC = SamplingSpec(max_new_tokens=8, repetition_penalty=1.05)


def requests(n: int = 8) -> list[GenerationRequest]:
    """Prompts of different lengths, in an order that is not the length order (the plan must sort them)."""
    lengths = [3, 9, 1, 6, 12, 4, 8, 2, 10, 5][:n] + list(range(13, 13 + max(0, n - 10)))
    return [GenerationRequest(f"art:{i}", [{"role": "system", "content": "You are an expert peer reviewer."},
                                           {"role": "user", "content": "The methods lack a control group. " * k}])
            for i, k in enumerate(lengths)]


def columns(table: pl.DataFrame) -> list[tuple]:
    return table.select("article_id", "text", "prompt_tokens", "completion_tokens", "error").rows()


# --- the plan and the config (no model) --------------------------------------------------------------------------

def test_shards_run_exactly_the_batches_of_one_process_dealt_round_robin() -> None:
    prompts = [Prompt(f"a{i}", [0] * n) for i, n in enumerate([5, 9, 9, 2, 7, 7, 1, 4, 8, 3, 6])]
    single = plan_batches(prompts, 3)
    assert [[len(p.ids) for p in b] for b in single] == [[9, 9, 8], [7, 7, 6], [5, 4, 3], [2, 1]]
    assert [p.article_id for p in single[0]] == ["a1", "a2", "a8"]  # equal lengths keep request order
    shards = deal(single, 2)
    assert shards == [[single[0], single[2]], [single[1], single[3]]]
    # Every article is in exactly one shard, and each shard's batches are batches of the one-process plan.
    ids = [p.article_id for shard in shards for batch in shard for p in batch]
    assert sorted(ids) == sorted(p.article_id for p in prompts)
    assert deal(single, 5)[4] == []  # more GPUs than batches: an idle shard, started by nobody


def test_generation_config_validates_gpus_and_parallelism() -> None:
    with pytest.raises(ValueError, match="parallelism=tensor splits one model over GPUs through vLLM"):
        tiny_model_config("transformers", gpus=2, parallelism="tensor")
    with pytest.raises(ValueError, match="needs a local backend"):
        tiny_model_config("openai", gpus=2, api_base="http://x", api_model="m")
    with pytest.raises(ValueError, match="needs generation.gpus > 1"):
        tiny_model_config("vllm", parallelism="tensor")
    with pytest.raises(ValueError, match="greater than or equal to 1"):
        tiny_model_config("transformers", gpus=0)
    one, four = tiny_model_config("vllm"), tiny_model_config("vllm", gpus=4, parallelism="tensor")
    # The GPU count is not part of a generation's content key: a partition resumes its log on another GPU count.
    weights = {"kind": "base", "base": "h"}
    assert generation_key(one, weights, "p") == generation_key(four, weights, "p")


def test_compiled_decode_is_validated_keyed_and_passed_to_the_backend(tmp_path, monkeypatch) -> None:
    with pytest.raises(ValueError, match="the vllm backend decodes its own way"):
        tiny_model_config("vllm", decode="compiled")
    with pytest.raises(ValueError, match="generation.decode: compiled needs CUDA, but gpu: false"):
        ModelConfig(name="cpu-model", base=BaseModelSource(kind="tiny_random", seed=0), gpu=False,
                    generation={"decode": "compiled"})
    eager, compiled = tiny_model_config("transformers"), tiny_model_config("transformers", decode="compiled")
    weights = {"kind": "base", "base": "h"}
    # Eager keys are the keys of every generation made before the field existed (their logs stay resumable);
    # compiled decoding rounds differently, so its outputs get a key of their own.
    assert "decode" not in generation_key(eager, weights, "p")["generation"]
    assert generation_key(compiled, weights, "p")["generation"]["decode"] == "compiled"
    assert generation_key(eager, weights, "p") != generation_key(compiled, weights, "p")
    assert eager.config_hash() == compiled.config_hash()  # a decode change never discards training checkpoints

    seen = {}
    monkeypatch.setattr(TransformersBackend, "from_dirs", classmethod(lambda cls, *a, **k: seen.update(k) or "b"))
    assert make_backend(compiled, tmp_path, None) == "b" and seen["compiled_decode"] is True
    make_backend(eager, tmp_path, None)
    assert seen["compiled_decode"] is False
    sharded = make_backend(tiny_model_config("transformers", decode="compiled", gpus=2), tmp_path, None)
    assert sharded.compiled_decode is True


def test_compiled_decode_is_refused_on_a_cpu_before_loading(tmp_path) -> None:
    with pytest.raises(ValueError, match="generation.decode: compiled compiles the decode steps over a static CUDA"):
        TransformersBackend.from_dirs(tmp_path / "never-read", None, SPEC, device="cpu", compiled_decode=True)


def test_make_backend_shards_the_transformers_backend_for_gpus_above_one(tmp_path) -> None:
    backend = make_backend(tiny_model_config("transformers", gpus=3, batch_size=4), tmp_path, None)
    assert isinstance(backend, ShardedTransformersBackend) and backend.gpus == 3 and backend.batch_size == 4
    described = backend.describe()["parallelism"]
    assert described["kind"] == "data" and described["gpus"] == 3 and "mod gpus" in described["rule"]


def test_each_shard_sees_one_of_the_visible_gpus(monkeypatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3,5,7")  # what the pod's runtime exposes stays the truth
    assert sharding.shard_devices(3) == ["2", "3", "5"]
    with pytest.raises(ValueError, match="generation.gpus=5 but this process sees 4 CUDA device"):
        sharding.shard_devices(5)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert sharding.shard_devices(2) == ["0", "1"]
    assert sharding.shard_env("5", 4, {"A": "1"}) == {"A": "1", "CUDA_VISIBLE_DEVICES": "5"}
    cpu = sharding.shard_env(None, 2, {})
    assert cpu["CUDA_VISIBLE_DEVICES"] == "" and int(cpu["OMP_NUM_THREADS"]) >= 1


# --- worker lifetime (stdlib workers, fast) ----------------------------------------------------------------------

def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_an_interrupted_parent_stops_every_worker(tmp_path) -> None:
    """on_result raising (or the step being interrupted) must not leave shards running on their GPUs."""
    commands = []
    for rank in range(2):
        results = tmp_path / f"r{rank}.jsonl"
        script = (f"import json, os, time; f = open({str(results)!r}, 'w'); "
                  f"f.write(json.dumps({{'kind': 'result', 'article_id': 'a{rank}', 'pid': os.getpid()}}) + '\\n'); "
                  "f.flush(); time.sleep(120)")
        commands.append(ShardCommand(rank=rank, argv=[sys.executable, "-c", script], env=dict(os.environ),
                                     results=results, log=tmp_path / f"l{rank}", article_ids=[f"a{rank}"],
                                     device=None))
    pids = []

    def on_row(command, row):
        pids.append(row["pid"])
        if len(pids) == 2:
            raise KeyboardInterrupt  # what a terminated Dagster step raises in its main thread

    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        sharding.run_shards(commands, on_row, poll_s=0.05, stop_grace_s=5)
    assert time.monotonic() - started < 30
    assert len(pids) == 2 and not any(_alive(pid) for pid in pids)


def test_a_result_for_an_article_the_shard_was_not_given_is_an_error(tmp_path) -> None:
    results = tmp_path / "r.jsonl"
    script = (f"import json; open({str(results)!r}, 'w').write("
              "json.dumps({'kind': 'result', 'article_id': 'someone-else'}) + '\\n')")
    command = ShardCommand(rank=0, argv=[sys.executable, "-c", script], env=dict(os.environ), results=results,
                           log=tmp_path / "log", article_ids=["mine"], device=None)
    seen = []
    with pytest.raises(RuntimeError, match="shard 0 returned an article it was not given, or twice: 'someone-else'"):
        sharding.run_shards([command], lambda c, row: seen.append(row), poll_s=0.05)
    assert seen == []  # never handed on to the log


def test_a_worker_exits_when_its_parent_is_gone() -> None:
    code = "from bioreview_assets.ml.generation._parent_watch import exit_with_parent; import time; " \
           "exit_with_parent(); time.sleep(120)"
    env = {**os.environ, "PYTHONPATH": sharding.worker_pythonpath(dict(os.environ))}
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, env=env)
    time.sleep(0.5)
    assert proc.poll() is None  # still waiting while the parent holds its stdin
    proc.stdin.close()  # what the kernel does when the parent dies, SIGKILL included
    assert proc.wait(timeout=30) == 70


# --- vLLM: tensor -> tensor_parallel_size; data -> one engine per GPU (a scripted worker stands in for vLLM) -------

FAKE_VLLM_WORKER = textwrap.dedent("""\
    #!{python}
    # Speaks the vLLM worker's protocol (spec, requests, results as JSON lines); shard 1 dies if asked to.
    import argparse, json, os, sys
    p = argparse.ArgumentParser(); p.add_argument("worker"); p.add_argument("--spec"); p.add_argument("--requests")
    p.add_argument("--results"); p.add_argument("--exit-with-parent", action="store_true")
    a = p.parse_args()
    device = os.environ["CUDA_VISIBLE_DEVICES"]
    rows = [json.loads(line) for line in open(a.requests) if line.strip()]
    with open(a.results, "w") as out:
        for n, row in enumerate(rows):
            if {crash} and device == "1" and n == 1:
                print("CUDA error: an illegal memory access was encountered", file=sys.stderr)
                sys.exit(3)
            out.write(json.dumps({{"kind": "result", "article_id": row["article_id"], "text": "gpu" + device,
                                  "prompt_tokens": 1, "completion_tokens": 1, "seconds": 0.0, "error": None}}) + "\\n")
        out.write(json.dumps({{"kind": "facts", "vllm": "fake", "spec": json.load(open(a.spec)),
                              "exit_with_parent": a.exit_with_parent}}) + "\\n")
    """)


def _fake_vllm(tmp_path: Path, crash: bool) -> Path:
    path = tmp_path / f"fake-vllm-python-{crash}"
    path.write_text(FAKE_VLLM_WORKER.format(python=sys.executable, crash=crash))
    path.chmod(0o755)
    return path


def test_vllm_tensor_parallelism_is_vllms_tensor_parallel_size(tmp_path) -> None:
    backend = VLLMBackend(tmp_path, None, SPEC, python=_fake_vllm(tmp_path, False), gpus=4, parallelism="tensor")
    assert backend.engine_kwargs["tensor_parallel_size"] == 4 and backend._spec()["engine_kwargs"] == {
        "tensor_parallel_size": 4}
    with pytest.raises(ValueError, match="contradicts gpus=4"):
        VLLMBackend(tmp_path, None, SPEC, python=tmp_path, gpus=4, parallelism="tensor",
                    engine_kwargs={"tensor_parallel_size": 2})


def test_make_backend_passes_gpus_and_parallelism_to_vllm(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(vllm_backend, "_worker_python", lambda explicit: _fake_vllm(tmp_path, False))
    tensor = make_backend(tiny_model_config("vllm", gpus=2, parallelism="tensor"), tmp_path, None)
    assert tensor.engine_kwargs == {"tensor_parallel_size": 2} and tensor.describe()["parallelism"] == "tensor"
    data = make_backend(tiny_model_config("vllm", gpus=3), tmp_path, None)
    assert data.engine_kwargs == {} and (data.gpus, data.parallelism) == (3, "data")


def test_vllm_data_parallelism_runs_one_engine_per_gpu_on_round_robin_shards(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(sharding, "shard_devices", lambda gpus: [str(i) for i in range(gpus)])
    reqs = requests(6)
    backend = VLLMBackend(tmp_path, None, SPEC, python=_fake_vllm(tmp_path, False), gpus=2, parallelism="data")
    out: list[GenerationResult] = []
    backend.generate(reqs, out.append)
    by_id = {r.article_id: r.text for r in out}
    # Longest first (user turns of 12, 9, 6, 4, 3, 1 sentences: art:4, 1, 3, 5, 0, 2), dealt one article at a time.
    assert by_id == {"art:4": "gpu0", "art:1": "gpu1", "art:3": "gpu0", "art:5": "gpu1", "art:0": "gpu0",
                     "art:2": "gpu1"}
    shards = backend.describe()["engine"]["data_parallel_shards"]
    assert [s["device_visible"] for s in shards] == ["0", "1"] and all(s["exit_with_parent"] for s in shards)
    assert shards[0]["spec"]["engine_kwargs"] == {}  # one whole engine per GPU, no tensor parallelism

    crashing = VLLMBackend(tmp_path, None, SPEC, python=_fake_vllm(tmp_path, True), gpus=2, parallelism="data")
    got: list[GenerationResult] = []
    with pytest.raises(ShardFailed, match=r"(?s)vLLM generation shard 1 \(device 1; 2 shards started\) exited with "
                                          r"code 3 after 1 of its 3 articles.*illegal memory access"):
        crashing.generate(reqs, got.append)
    assert sorted(r.article_id for r in got) == ["art:0", "art:1", "art:3", "art:4"]  # shard 0's 3 + shard 1's 1


# --- the transformers backend for real: 2 CPU processes on the tiny random model ---------------------------------

# The workers keep their bytecode under var/pycache (conftest.py: PYTHONPYCACHEPREFIX for the whole suite).

@pytest.fixture(scope="module")
def one_process(tiny_dir, tmp_path_factory) -> pl.DataFrame:
    log = GenerationLog(str(tmp_path_factory.mktemp("one-process-log")))
    return run_generation(requests(), TransformersBackend.from_dirs(tiny_dir, None, SPEC, batch_size=2), log)


@pytest.mark.slow
def test_two_shards_give_the_one_process_output(tiny_dir, one_process, tmp_path) -> None:
    backend = ShardedTransformersBackend(tiny_dir, None, SPEC, gpus=2, batch_size=2)
    log = GenerationLog(str(tmp_path / "log"))
    table = run_generation(requests(), backend, log, commit_every=2)
    assert columns(table) == columns(one_process)  # same order, same texts, token counts and no errors
    assert table["error"].null_count() == len(table) == 8 and any(t.strip() for t in table["text"])
    assert len(set(one_process["prompt_tokens"])) == 8  # different lengths: the batches are really padded
    shards = backend.describe()["parallelism"]["shards"]
    assert [(s["rank"], s["articles"], s["batches"]) for s in shards] == [(0, 4, 2), (1, 4, 2)]
    assert backend.describe()["device"] == "cpu"


KILL_SHARD_1 = textwrap.dedent("""\
    #!{python}
    # A python that runs the shard worker, except that shard 1 is killed (SIGKILL, as by the OOM killer) when it
    # starts its second batch, after its first article is written.
    import os, runpy, signal, sys
    if sys.argv[1:3] == ["-m", "{module}"]:
        if any(arg.endswith("shard1.spec.json") for arg in sys.argv):
            from bioreview_assets.ml.generation.transformers_backend import TransformersBackend
            real, calls = TransformersBackend._run_batch, []

            def run_batch(self, batch, on_result):
                calls.append(1)
                if len(calls) == 2:
                    os.kill(os.getpid(), signal.SIGKILL)
                return real(self, batch, on_result)

            TransformersBackend._run_batch = run_batch
        sys.argv = [sys.argv[2], *sys.argv[3:]]
        runpy.run_module("{module}", run_name="__main__", alter_sys=True)
    """)


@pytest.mark.slow
def test_a_killed_shard_fails_the_step_by_name_and_the_rerun_regenerates_nothing_finished(
        tiny_dir, one_process, tmp_path) -> None:
    python = tmp_path / "python-killing-shard-1"
    python.write_text(KILL_SHARD_1.format(python=sys.executable, module=sharding.TRANSFORMERS_WORKER))
    python.chmod(0o755)
    log = GenerationLog(str(tmp_path / "log"))
    killed = ShardedTransformersBackend(tiny_dir, None, SPEC, gpus=2, batch_size=2, python=python)
    with pytest.raises(ShardFailed, match=r"generation shard 1 \(device cpu; 2 shards started\) was killed by "
                                          r"SIGKILL after 2 of its 4 articles") as failure:
        run_generation(requests(), killed, log, commit_every=1)
    assert "shard 0" not in str(failure.value)  # the other shard finished: only the failed one is named
    first = log.read_all()
    assert len(first) == 6 and first["error"].null_count() == 6  # shard 0's four articles and shard 1's first batch

    resumed = ShardedTransformersBackend(tiny_dir, None, SPEC, gpus=2, batch_size=2)
    table = run_generation(requests(), resumed, log, commit_every=1)
    # Only the unfinished batch is planned again: one batch, so one worker.
    assert [s["articles"] for s in resumed.describe()["parallelism"]["shards"]] == [2]
    every = log.read_all()
    assert len(every) == 8 and (every["attempt"] == 1).all()  # no article was generated twice
    kept = every.filter(pl.col("article_id").is_in(first["article_id"].to_list()))
    assert kept.sort("article_id")["committed_at"].to_list() == first.sort("article_id")["committed_at"].to_list()
    # The remaining articles were one batch of the original plan, so the whole partition reads as one process's.
    assert columns(table) == columns(one_process)
