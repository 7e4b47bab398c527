"""Progress of long steps (training, generation, embedding): step/total, rate and ETA, at most every ~10 seconds.

Lines go to the `bioreview.progress` logger. The demo prints that logger to the terminal; Dagster runs capture it
into the run logs (`python_logs.managed_python_loggers` in dagster.yaml), so the UI shows the same lines.
"""

from __future__ import annotations

import logging
import time

LOGGER_NAME = "bioreview.progress"
log = logging.getLogger(LOGGER_NAME)
DEFAULT_INTERVAL_S = 10.0


def format_duration(seconds: float) -> str:
    """'42s', '3m05s' or '1h02m' for an ETA."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class ProgressReporter:
    """Reports `done/total unit` with a rate and an ETA; throttled so a hot loop can call it every step."""

    def __init__(self, what: str, total: int, unit: str, *, interval_s: float = DEFAULT_INTERVAL_S,
                 eta_is_bound: bool = False, start: int = 0, clock=time.monotonic):
        self.what = what
        self.start = start  # work already done before this run (a resumed training): not part of the rate
        self.eta_is_bound = eta_is_bound  # total is a maximum (decode steps up to max_new_tokens): ETA is a bound
        self.total = total
        self.unit = unit
        self.interval_s = interval_s
        self.clock = clock
        self.started = clock()
        self._last = self.started
        self.lines: list[str] = []  # what was reported (tests read it)

    def update(self, done: int, extra: str = "", *, force: bool = False) -> str | None:
        """Report if ~interval_s passed since the last line (or `force`); returns the line, if any."""
        now = self.clock()
        if not force and now - self._last < self.interval_s:
            return None
        self._last = now
        elapsed = now - self.started
        rate = (done - self.start) / elapsed if elapsed > 0 else 0.0
        eta = (self.total - done) / rate if rate > 0 and self.total > done else 0.0
        line = (f"{self.what}: {done}/{self.total} {self.unit}, {rate:.2f}/s, "
                f"elapsed {format_duration(elapsed)}, ETA {'<= ' if self.eta_is_bound else ''}{format_duration(eta)}")
        if extra:
            line += f" ({extra})"
        self.lines.append(line)
        log.info(line)
        return line
