"""The Dagster UI in a real browser: `dagster dev` serves the graph, GraphQL materialises benchmark_split[val],
headless Chromium renders the lineage page."""

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

from bioreview_assets.settings import REPO_ROOT

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


@pytest.fixture
def dagster_dev(tmp_path):
    """`dagster dev` on a free 127.0.0.1 port with a throwaway instance; yields the base URL."""
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
        "__ASSET_JOB", asset_selection=["benchmark_split"], tags={"dagster/partition": "val"})
    deadline = time.monotonic() + 60
    while (status := client.get_run_status(run_id)) not in (
            DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED):
        assert time.monotonic() < deadline, f"run {run_id} still {status} after 60 s"
        time.sleep(1)
    assert status == DagsterRunStatus.SUCCESS
    partition = requests.post(f"{url}/graphql", timeout=10, json={"query": """
        {assetOrError(assetKey: {path: ["benchmark_split"]}) {
           ... on Asset {assetMaterializations(partitions: ["val"]) {partition runId}}}}"""}).json()
    assert partition["data"]["assetOrError"]["assetMaterializations"] == [{"partition": "val", "runId": run_id}]

    dom = _chromium(url + LINEAGE, tmp_path, "--dump-dom").stdout.decode()
    for name in ("benchmark_split", "sft_corpus"):  # the page drew the graph, not only the app shell
        assert name in dom, f"{name} missing from the rendered lineage page"

    png = tmp_path / "ui-lineage.png"
    result = _chromium(url + LINEAGE, tmp_path, f"--screenshot={png}")
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
