"""Progress lines: throttled to ~10 s, with a rate and an ETA that ignores work done before a resume."""

from bioreview_assets.core.progress import ProgressReporter, format_duration


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_reports_at_most_every_interval_with_rate_and_eta():
    clock = FakeClock()
    reporter = ProgressReporter("training", 64, "optimizer steps", interval_s=10, clock=clock)
    clock.now += 5
    assert reporter.update(2) is None  # too soon
    clock.now += 5
    line = reporter.update(4, "loss 1.20")
    assert line == "training: 4/64 optimizer steps, 0.40/s, elapsed 10s, ETA 2m30s (loss 1.20)"
    clock.now += 1
    assert reporter.update(5) is None and reporter.update(5, force=True).startswith("training: 5/64")
    assert len(reporter.lines) == 2


def test_resumed_work_is_not_counted_in_the_rate_and_bounds_are_marked():
    clock = FakeClock()
    reporter = ProgressReporter("generation", 700, "decode steps (max)", interval_s=0, start=300,
                                eta_is_bound=True, clock=clock)
    clock.now += 100
    assert reporter.update(400) == ("generation: 400/700 decode steps (max), 1.00/s, elapsed 1m40s, ETA <= 5m00s")


def test_durations_read_naturally():
    assert [format_duration(s) for s in (0, 42, 185, 3725)] == ["0s", "42s", "3m05s", "1h02m"]
