"""The Dagster UI in a real browser: `dagster dev` serves the graph, GraphQL materialises benchmark_split[test],
headless Chromium renders the lineage page.

One `dagster dev` serves the module (starting one costs about 15 s on 2 cores): the tests materialise disjoint
partitions (benchmark_split[test] here; ingest_split[train, val] and bm25's val scores below), so each one's
assertions hold in either order."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from bioreview_assets.config.loader import REPO_ROOT

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
BIN = Path(sys.executable).parent
LINEAGE = "/assets/benchmark_split?view=lineage"
SCREENSHOT_COPY = REPO_ROOT / "k8s" / "examples" / "ui-lineage.png"  # written only with BIOREVIEW_SAVE_SCREENSHOT=1


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _default_signals() -> None:
    # A parent that ignores SIGINT/SIGTERM (a CI shell) would pass that on, and the server would outlive the test.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _stop(proc: subprocess.Popen) -> None:
    """Stop the server's process group (its webserver, daemon and code servers), by the PID we started."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGINT)  # dagster dev shuts its children down cleanly on Ctrl-C
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def dagster_dev(tmp_path_factory):
    """`dagster dev` on a free 127.0.0.1 port with a throwaway instance, shared by the module; yields the base URL."""
    tmp_path = tmp_path_factory.mktemp("dagster-dev")
    home = tmp_path / "dagster_home"
    home.mkdir()
    # nux off: no first-visit modal over the page; telemetry off: nothing leaves the machine.
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\nnux:\n  enabled: false\n")
    env = {**os.environ, "DAGSTER_HOME": str(home), "BIOREVIEW_STORAGE": str(tmp_path / "storage"),
           "BIOREVIEW_ENV": "local", "HF_HUB_OFFLINE": "1"}
    env.pop("BIOREVIEW_DATA_DIR", None)  # the bundled sample
    port = _free_port()
    log = (tmp_path / "dagster-dev.log").open("w")
    proc = subprocess.Popen(
        [str(BIN / "dagster"), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        preexec_fn=_default_signals,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90  # two code servers load the definitions on 2 slow cores
        while True:
            assert proc.poll() is None, f"dagster dev exited: {(tmp_path / 'dagster-dev.log').read_text()[-2000:]}"
            try:
                if requests.get(f"{url}/server_info", timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, "dagster dev did not answer /server_info within 90 s"
            time.sleep(0.5)
        yield url, port
    finally:
        _stop(proc)
        log.close()
    assert proc.poll() is not None


def _chromium(url: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
             f"--user-data-dir={tmp_path / 'chromium-profile'}", "--window-size=1400,900",
             "--virtual-time-budget=15000"]  # virtual time lets the SPA fetch and lay out the graph before capture
    return subprocess.run([CHROMIUM, *flags, *args, url], capture_output=True, timeout=60)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (`make test` installs it where apt-get works)")
def test_ui_materialises_a_partition_and_renders_the_lineage(dagster_dev, tmp_path):
    from dagster import DagsterRunStatus
    from dagster_graphql import DagsterGraphQLClient

    url, port = dagster_dev
    client = DagsterGraphQLClient("127.0.0.1", port_number=port)
    run_id = client.submit_job_execution(
        "__ASSET_JOB", asset_selection=["benchmark_split"], tags={"dagster/partition": "test"})
    deadline = time.monotonic() + 60
    while (status := client.get_run_status(run_id)) not in (
            DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED):
        assert time.monotonic() < deadline, f"run {run_id} still {status} after 60 s"
        time.sleep(1)
    assert status == DagsterRunStatus.SUCCESS
    partition = requests.post(f"{url}/graphql", timeout=10, json={"query": """
        {assetOrError(assetKey: {path: ["benchmark_split"]}) {
           ... on Asset {assetMaterializations(partitions: ["test"]) {partition runId}}}}"""}).json()
    assert partition["data"]["assetOrError"]["assetMaterializations"] == [{"partition": "test", "runId": run_id}]

    png = tmp_path / "ui-lineage.png"
    result = _chromium(url + LINEAGE, tmp_path, "--dump-dom", f"--screenshot={png}")  # one page load, both
    dom = result.stdout.decode()
    for name in ("benchmark_split", "sft_corpus"):  # the page drew the graph, not only the app shell
        assert name in dom, f"{name} missing from the rendered lineage page"

    assert png.exists(), result.stderr.decode()[-2000:]
    from PIL import Image

    image = Image.open(png).convert("RGB")
    assert image.size == (1400, 900)
    colours = image.getcolors(maxcolors=1 << 20)
    background = max(colours)[0]
    assert len(colours) > 200, f"only {len(colours)} colours: a blank page"
    assert background < 0.97 * image.width * image.height, "the page is almost one colour"
    if os.environ.get("BIOREVIEW_SAVE_SCREENSHOT"):
        SCREENSHOT_COPY.parent.mkdir(exist_ok=True)
        shutil.copyfile(png, SCREENSHOT_COPY)


SCORES_PARTITION = "val|bm25"  # Dagster's multi-partition key: dimensions sorted by name (split, system)
SCORES_PAGE = "/assets/scores?view=partitions&partition=val%7Cbm25"
CHECKS_PAGE = "/assets/scores?view=checks&checkDetail=matcher_discriminates"
SCREENSHOTS = {"scores": REPO_ROOT / "k8s" / "examples" / "ui-scores-partition.png",
               "checks": REPO_ROOT / "k8s" / "examples" / "ui-checks.png"}


def _graphql(url: str, query: str, **variables) -> dict:
    answer = requests.post(f"{url}/graphql", timeout=30, json={"query": query, "variables": variables}).json()
    assert "errors" not in answer, answer
    return answer["data"]


def _launch(client, job: str, partition: str, dims: dict[str, str] | None = None, timeout: float = 240) -> str:
    from dagster import DagsterRunStatus

    tags = {"dagster/partition": partition, **{f"dagster/partition/{k}": v for k, v in (dims or {}).items()}}
    run_id = client.submit_job_execution(job, tags=tags)
    deadline = time.monotonic() + timeout
    while (status := client.get_run_status(run_id)) not in (
            DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED):
        assert time.monotonic() < deadline, f"{job}[{partition}] still {status} after {timeout} s"
        time.sleep(1)
    assert status == DagsterRunStatus.SUCCESS, f"{job}[{partition}] {status}"
    return run_id


def _small_png(source: Path, target: Path) -> None:
    """A copy for the README under 300 KB (palette PNG)."""
    from PIL import Image

    Image.open(source).convert("RGB").quantize(colors=128).save(target, optimize=True)
    assert target.stat().st_size < 300_000


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (`make test` installs it where apt-get works)")
def test_ui_shows_a_scores_partition_with_its_failing_check_reason_f1_ci_and_glossary(dagster_dev, tmp_path):
    """Acceptance (#15): named jobs materialise bm25's val scores; GraphQL and the rendered pages show the check's
    partition and reason, the F1-with-CI line and the glossary."""
    from dagster_graphql import DagsterGraphQLClient

    url, port = dagster_dev
    client = DagsterGraphQLClient("127.0.0.1", port_number=port)
    for split in ("train", "val"):
        _launch(client, "ingest_split", split)
    dims = {"split": "val", "system": "bm25"}
    _launch(client, "postprocess", SCORES_PARTITION, dims)
    run_id = _launch(client, "score", SCORES_PARTITION, dims)

    run = _graphql(url, "query($id: ID!) {runOrError(runId: $id) {... on Run {jobName}}}", id=run_id)
    assert run["runOrError"]["jobName"] == "score"  # the Runs page names the stage, not __ASSET_JOB

    checks = _graphql(url, """query($p: String) {
        assetCheckExecutions(assetKey: {path: ["scores"]}, checkName: "matcher_discriminates", limit: 5,
                             partition: $p) {status partition evaluation {description partition}}}""",
                      p=SCORES_PARTITION)["assetCheckExecutions"]
    assert checks and checks[0]["partition"] == SCORES_PARTITION
    assert checks[0]["status"] == "FAILED"  # BM25: its F1 is mostly earned by its concern count
    reason = checks[0]["evaluation"]["description"]
    assert reason.startswith("bm25 / val: null F1 ") and "most of this F1 is earned by the concern count alone" in reason

    materialised = _graphql(url, """query($p: [String!]) {assetOrError(assetKey: {path: ["scores"]}) {... on Asset {
        assetMaterializations(partitions: $p) {partition metadataEntries {label
          ... on TextMetadataEntry {text} ... on MarkdownMetadataEntry {mdStr}}}}}}""",
                            p=[SCORES_PARTITION])["assetOrError"]["assetMaterializations"]
    entries = {e["label"]: e.get("text") or e.get("mdStr") for e in materialised[0]["metadataEntries"]}
    import re

    assert re.fullmatch(r"F1 0\.\d{3} \[0\.\d{3}, 0\.\d{3}\]", entries["f1_with_ci"]), entries["f1_with_ci"]
    assert "**null F1**" in entries["glossary"] and "**count-oracle F1**" in entries["glossary"]
    assert "| reference concern | generated concern (matched or nearest) | similarity | match |" in entries["preview"]

    pages = {"scores": SCORES_PAGE, "checks": CHECKS_PAGE}
    pngs = {name: tmp_path / f"{name}.png" for name in pages}
    doms = {name: _chromium(url + page, tmp_path, "--dump-dom", f"--screenshot={pngs[name]}",
                            "--virtual-time-budget=25000").stdout.decode()  # one page load: DOM and screenshot
            for name, page in pages.items()}
    assert entries["f1_with_ci"] in doms["scores"], "the partition page does not show the F1-with-CI line"
    assert "null F1" in doms["scores"]  # the glossary (and the summary) render on the partition page
    assert "matcher_discriminates" in doms["checks"]
    assert "most of this F1 is earned by the concern count alone" in doms["checks"], "no reason on the checks page"
    assert "bm25" in doms["checks"]
    for name, png in pngs.items():
        assert png.exists()
        if os.environ.get("BIOREVIEW_SAVE_SCREENSHOT"):
            _small_png(png, SCREENSHOTS[name])
