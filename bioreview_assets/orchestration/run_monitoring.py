"""Run monitoring for the local instance: a run whose process died is marked failed instead of staying STARTED.

Dagster's run monitoring (the daemon of `dagster dev`) asks the run launcher whether a run's worker is alive, but
the DefaultRunLauncher cannot tell, so a run killed with `kill -9` (or whose `bioreview demo` / `dagster dev` died
with it) stays STARTED for ever. LocalRunLauncher answers from the process id Dagster records in the run's engine
events, on this machine. k8s/dagster.local.yaml selects it and turns monitoring on; on Kubernetes the
K8sRunLauncher checks the run's Job instead (k8s/values-dagster.yaml, runMonitoring).
"""

from __future__ import annotations

import dagster as dg
from dagster._core.launcher import CheckRunHealthResult, WorkerStatus  # not re-exported by `dagster` itself

# A process created this long after the run started cannot be its worker: the pid was reused.
_PID_REUSE_SLACK_S = 2.0


class LocalRunLauncher(dg.DefaultRunLauncher):
    """The default launcher (runs in a code server's subprocess), plus a worker health check by process id."""

    def __init__(self, inst_data=None):
        super().__init__(inst_data=inst_data)
        self._pids: dict[str, int] = {}  # run id -> worker pid, read once from the event log

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: dg.DagsterRun) -> CheckRunHealthResult:
        """RUNNING while the run's recorded process is alive, FAILED once it is gone."""
        if run.run_id not in self._pids:
            pid = recorded_pid(self._instance, run.run_id)
            if pid is None:  # nothing recorded yet: the worker is starting (the start timeout covers a hang)
                return CheckRunHealthResult(WorkerStatus.RUNNING, "no process id recorded yet")
            self._pids[run.run_id] = pid
        record = self._instance.get_run_record_by_id(run.run_id)
        started = record.start_time if record is not None else None
        return process_health(self._pids[run.run_id], started)


def recorded_pid(instance: dg.DagsterInstance, run_id: str) -> int | None:
    """The first process id in the run's engine events: the run worker (launched) or the materialising process."""
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        data = entry.dagster_event.engine_event_data if entry.dagster_event else None
        value = data.metadata.get("pid") if data is not None else None
        if value is not None:
            return int(value.value)
    return None


def process_health(pid: int, run_started_at: float | None) -> CheckRunHealthResult:
    """Whether `pid` on this machine is still the process that started the run."""
    import psutil

    try:
        process = psutil.Process(pid)
        alive = process.status() != psutil.STATUS_ZOMBIE
        created = process.create_time()
    except psutil.NoSuchProcess:
        return CheckRunHealthResult(WorkerStatus.FAILED, f"the run's process (pid {pid}) is gone")
    if not alive:
        return CheckRunHealthResult(WorkerStatus.FAILED, f"the run's process (pid {pid}) exited (zombie)")
    if run_started_at is not None and created > run_started_at + _PID_REUSE_SLACK_S:
        return CheckRunHealthResult(WorkerStatus.FAILED, f"the run's process (pid {pid}) is gone; the pid now belongs "
                                                         f"to a process started after the run")
    return CheckRunHealthResult(WorkerStatus.RUNNING, f"pid {pid} alive")
