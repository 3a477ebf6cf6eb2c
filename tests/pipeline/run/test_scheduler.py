"""ShardScheduler (run/scheduler.py) on small Ray actors of the shared private Ray: a dead worker's replacement
joins once it is ready, while the other workers go on; one that cannot be placed is given up after the shard
timeout, without stalling the job in the meantime."""

import logging
import os
import signal
import time

import pytest

from pipeline.run.errors import JobError
from pipeline.run.interrupt import JobInterrupted, interrupts_raise
from pipeline.run.plan import plan_shards
from pipeline.run.scheduler import ShardScheduler

pytestmark = pytest.mark.slow


@pytest.fixture
def worker_class(ray_local):
    @ray_local.remote(num_cpus=0)
    class Worker:
        """Returns each shard's index; with `die_on`, its process exits on that shard (a crash, a lost node)."""

        def __init__(self, die_on: int | None = None, broken: bool = False) -> None:
            if broken:
                raise RuntimeError("cannot build the model")
            self.die_on = die_on

        def ready(self) -> bool:
            return True

        def run(self, shard) -> int:
            if shard.index == self.die_on:
                os._exit(1)
            time.sleep(0.05)
            return shard.index

    return Worker


def schedule(actors, new_actor, *, shard_timeout_s: float) -> tuple[list[int], float]:
    """(indices of the finished shards, wall seconds) of 8 shards on `actors`."""
    done: list[int] = []
    t0 = time.monotonic()
    ShardScheduler(actors, new_actor, plan_shards(80, 10), max_in_flight=1, max_restarts=3, max_shard_attempts=3,
                   shard_timeout_s=shard_timeout_s, retry_backoff_s=0.0).run(done.append)
    return done, time.monotonic() - t0


def test_a_replacement_that_cannot_be_placed_does_not_stall_the_other_workers(worker_class, caplog):
    unplaceable = lambda: worker_class.options(resources={"no-such-node": 1}).remote()  # noqa: E731
    with caplog.at_level(logging.INFO, logger="pipeline.run"):
        done, wall = schedule([worker_class.remote(), worker_class.remote(die_on=1)], unplaceable, shard_timeout_s=600)
    assert sorted(done) == list(range(8))  # shard 1 reran on the healthy worker
    assert wall < 120, wall  # it did not wait out the 600 s shard timeout for the replacement
    messages = [r.getMessage() for r in caplog.records]
    assert "worker 1 died; starting a replacement (1 of 3)" in messages
    assert not [m for m in messages if "replacement is ready" in m or "did not start" in m]


def test_a_replacement_that_starts_takes_shards(worker_class, caplog):
    with caplog.at_level(logging.INFO, logger="pipeline.run"):
        done, _ = schedule([worker_class.remote(die_on=0)], worker_class.remote, shard_timeout_s=600)
    assert sorted(done) == list(range(8))
    assert "worker 0's replacement is ready" in [r.getMessage() for r in caplog.records]


def test_a_replacement_that_does_not_start_within_the_timeout_is_given_up(worker_class, caplog):
    unplaceable = lambda: worker_class.options(resources={"no-such-node": 1}).remote()  # noqa: E731
    with caplog.at_level(logging.WARNING, logger="pipeline.run"), pytest.raises(JobError, match="every worker died"):
        schedule([worker_class.remote(die_on=0)], unplaceable, shard_timeout_s=1)
    messages = [r.getMessage() for r in caplog.records]
    assert [m for m in messages if "did not start" in m] == [  # each try counts as a restart (max_restarts=3)
        "worker 0's replacement did not start within 1s (cluster.shard_timeout_s); starting another (2 of 3)",
        "worker 0's replacement did not start within 1s (cluster.shard_timeout_s); starting another (3 of 3)",
        "worker 0's replacement did not start within 1s (cluster.shard_timeout_s); continuing without it"]


def test_a_replacement_that_fails_to_build_is_given_up(worker_class, caplog):
    with caplog.at_level(logging.WARNING, logger="pipeline.run"), pytest.raises(JobError, match="every worker died"):
        schedule([worker_class.remote(die_on=0)], lambda: worker_class.remote(broken=True), shard_timeout_s=600)
    tries = [r.getMessage() for r in caplog.records if "replacement did not start (" in r.getMessage()]
    assert len(tries) == 3 and tries[-1].endswith("; continuing without it"), tries


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the swallowed exception, on purpose
def test_a_signal_whose_exception_a_finalizer_swallowed_still_stops_the_scheduler(worker_class):
    class Finalized:
        def __del__(self) -> None:
            os.kill(os.getpid(), signal.SIGTERM)  # the handler runs here; Python drops its exception

    done: list[int] = []

    def on_done(index: int) -> None:
        Finalized()
        done.append(index)

    with pytest.raises(JobInterrupted, match="SIGTERM"), interrupts_raise():
        ShardScheduler([worker_class.remote()], worker_class.remote, plan_shards(80, 10), max_in_flight=1,
                       max_restarts=3, max_shard_attempts=3, shard_timeout_s=600).run(on_done)
    assert done == [0]  # the next turn of the loop stopped it


def test_a_replacement_that_fails_is_followed_by_another_while_restarts_remain(worker_class, caplog):
    made = []

    def new_actor():  # the first replacement cannot build its model, the second can
        made.append(worker_class.remote(broken=not made))
        return made[-1]

    with caplog.at_level(logging.INFO, logger="pipeline.run"):
        done, _ = schedule([worker_class.remote(die_on=0)], new_actor, shard_timeout_s=600)
    assert sorted(done) == list(range(8)) and len(made) == 2
    messages = [r.getMessage() for r in caplog.records]
    assert [m for m in messages if "starting another (2 of 3)" in m] and "worker 0's replacement is ready" in messages
