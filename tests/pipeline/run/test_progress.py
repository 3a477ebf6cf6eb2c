"""run/progress.py: the log line's ETA ignores start-up once shards finish, and does not wrap at 24 h."""

import io

import pytest

from pipeline.run import progress as progress_module
from pipeline.run.progress import Progress


@pytest.fixture
def clock(monkeypatch):
    """A fake time.monotonic for the progress module: set `clock.now`."""

    class Clock:
        now = 1000.0

    monkeypatch.setattr(progress_module.time, "monotonic", lambda: Clock.now)
    return Clock


def test_eta_excludes_start_up_after_the_first_shard(clock):
    p = Progress(total=1000, mode="log", stream=io.StringIO())
    clock.now += 40.0  # 40 s of Ray and model start-up
    p.update(100)
    clock.now += 2.0
    p.update(100)  # 100 samples per 2 s since the first shard: 800 left -> 16 s
    assert p.eta_s() == pytest.approx(16.0)
    assert p.line().endswith("ETA 00:16")


def test_eta_does_not_wrap_at_24_hours(clock):
    p = Progress(total=10**6, mode="log", stream=io.StringIO())
    p.update(1)
    clock.now += 1.0
    p.update(10)  # 10 samples/s -> (10**6 - 11) / 10 s, about 27.8 h
    assert p.line().endswith("ETA 27:46:38")


def test_eta_is_unknown_before_any_sample(clock):
    p = Progress(total=10, mode="log", stream=io.StringIO())
    clock.now += 5.0
    assert p.eta_s() is None and p.line().endswith("ETA ?")
