"""Killed runs do not stay STARTED: the local instance monitors runs and our launcher sees dead processes."""

import logging
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import dagster as dg
import yaml
from dagster._core.launcher import WorkerStatus
from dagster._daemon.monitoring.run_monitoring import monitor_started_run

from bioreview_assets.orchestration.run_monitoring import LocalRunLauncher, process_health
from bioreview_assets.config.loader import REPO_ROOT

LOCAL_YAML = REPO_ROOT / "k8s" / "dagster.local.yaml"

RUN = textwrap.dedent(
    """
    import time
    import dagster as dg

    @dg.asset
    def slow_asset():
        print("materialising", flush=True)
        time.sleep(600)

    dg.materialize([slow_asset], instance=dg.DagsterInstance.get())
    """
)


def test_local_instance_config_enables_run_monitoring_with_our_launcher():
    config = yaml.safe_load(LOCAL_YAML.read_text())
    assert config["run_monitoring"]["enabled"] is True
    assert config["run_monitoring"]["max_resume_run_attempts"] == 0
    assert config["run_launcher"] == {"module": "bioreview_assets.orchestration.run_monitoring",
                                      "class": "LocalRunLauncher"}
    helm = yaml.safe_load((REPO_ROOT / "k8s" / "values-dagster.yaml").read_text())
    assert helm["dagsterDaemon"]["runMonitoring"]["enabled"] is True  # and kept on in Kubernetes


def test_a_reused_pid_is_not_mistaken_for_the_run():
    assert process_health(os.getpid(), time.time()).status == WorkerStatus.RUNNING  # alive since before the run
    reused = process_health(os.getpid(), time.time() - 3600 * 24 * 365)  # a run that began before this process
    assert reused.status == WorkerStatus.FAILED and "started after the run" in reused.msg


def test_a_killed_run_is_marked_failed_by_run_monitoring(tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(LOCAL_YAML, home / "dagster.yaml")  # what `make demo` / `make ui` do
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    proc = subprocess.Popen([sys.executable, "-c", RUN], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout.readline().strip() == b"materialising", proc.stderr.read().decode()[-2000:]
        with dg.DagsterInstance.from_ref(dg._core.instance.InstanceRef.from_dir(str(home))) as instance:
            assert instance.run_monitoring_enabled and isinstance(instance.run_launcher, LocalRunLauncher)
            (record,) = instance.get_run_records()
            assert record.dagster_run.status == dg.DagsterRunStatus.STARTED
            logger = logging.getLogger("run_monitoring_test")
            # One pass of the daemon's monitoring loop while the process lives: nothing happens.
            monitor_started_run(instance, None, record, logger)
            assert instance.get_run_by_id(record.dagster_run.run_id).status == dg.DagsterRunStatus.STARTED
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
            monitor_started_run(instance, None, instance.get_run_record_by_id(record.dagster_run.run_id), logger)
            run = instance.get_run_by_id(record.dagster_run.run_id)
            assert run.status == dg.DagsterRunStatus.FAILURE
            messages = [e.message for e in instance.all_logs(run.run_id)]
            assert any(f"the run's process (pid {proc.pid}) is gone" in (m or "") for m in messages), messages[-5:]
    finally:
        if proc.poll() is None:
            proc.kill()
