"""`ShardScheduler`: runs shards on a pool of Ray actors with a plain `ray.wait` loop.

Like Ray's `ActorPool`, its state (queue, calls in flight, attempts, suspects, actor generations)
changes only through its own methods. It keeps `max_in_flight` calls per actor; a shard whose task
raised is re-queued next, up to `max_shard_attempts` runs. A dead actor is replaced, up to
`max_restarts` times per slot: slot `a` holds `actors[a]`, and a replacement bumps `generation[a]`,
so a late failure of the old actor's calls is told from a failure of its replacement. A replacement
joins once it has built its model; the other actors keep working meanwhile. One that fails to start, or
cannot be placed within the shard timeout (a cluster that lost a node), counts as a restart: another is
started while restarts remain. A shard whose
worker died while running it becomes a suspect and runs alone on an idle actor next time: a shard
that kills its worker is then told apart from the shards that were in flight beside it.

Only what can succeed on retry is retried (see `retry`): a dead or timed-out worker, a transient storage
error; a retry waits an exponential backoff with jitter. Any other exception a shard's task raises fails
the job at once, naming the shard. An actor with calls in flight that finishes none of them within the
shard timeout (`cluster.shard_timeout_s`; by default the larger of TIMEOUT_FLOOR_S and TIMEOUT_FACTOR x
the slowest shard seen so far) is killed (a hung or stopped process), replaced, and its shards re-queued.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from .errors import JobError
from .interrupt import check_interrupted
from .plan import Shard
from .result import ShardResult
from .retry import backoff_s, is_transient
from .sampling import NonFiniteSamplesError

log = logging.getLogger(__name__)

TIMEOUT_FLOOR_S = 900.0
TIMEOUT_FACTOR = 10.0
POLL_S = 1.0  # how often the wait loop looks at timeouts and due retries


class ShardScheduler:
    """Shards onto actors; `run(on_done)` returns the errors of skipped shards or raises JobError."""

    def __init__(self, actors: list[Any], new_actor: Callable[[], Any], shards: Iterable[Shard], *,
                 max_in_flight: int, max_restarts: int, max_shard_attempts: int, skip_nonfinite: bool = False,
                 shard_timeout_s: float | None = None, retry_backoff_s: float = 0.0) -> None:
        """`new_actor()` starts a replacement; `skip_nonfinite` skips a shard with non-finite samples
        (run.on_nonfinite=skip) instead of failing the job; `shard_timeout_s` None: derived from shard times."""
        self.actors = list(actors)
        self.new_actor = new_actor
        self.max_in_flight, self.max_restarts, self.max_shard_attempts = max_in_flight, max_restarts, max_shard_attempts
        self.skip_nonfinite = skip_nonfinite
        self.queue: collections.deque[Shard] = collections.deque(shards)
        self.suspects: collections.deque[Shard] = collections.deque()
        self.in_flight: dict[Any, tuple[Shard, int, int, int]] = {}  # ref -> shard, slot, generation, load
        self.load: collections.Counter[int] = collections.Counter()
        self.attempts: collections.Counter[int] = collections.Counter()
        self.restarts: collections.Counter[int] = collections.Counter()
        self.generation: collections.Counter[int] = collections.Counter()
        self.alive: set[int] = set(range(len(self.actors)))
        self.skipped: list[str] = []
        self.shard_timeout_s, self.retry_backoff_s = shard_timeout_s, retry_backoff_s
        self.waiting: list[tuple[float, Shard, bool]] = []  # retries in backoff: (not before, shard, suspect)
        self.busy_since: dict[int, float] = {}  # slot -> when it last started or finished a call while busy
        self.slowest = 0.0
        self.timed_out: set[tuple[int, int]] = set()  # (slot, generation) killed for exceeding the timeout
        self.starting: dict[Any, tuple[int, float]] = {}  # ready() ref of a replacement -> slot, when it was started

    def run(self, on_done: Callable[[ShardResult], None]) -> list[str]:
        """Run every shard, calling `on_done` with each result; returns the errors of skipped shards. On failure
        (a shard out of attempts, non-finite samples without skip_nonfinite, every worker dead) no new shard
        starts, the calls in flight finish (their results still go to `on_done`), and JobError is raised.
        The actors are killed at the end, freeing their resources now rather than when collected."""
        import ray
        from ray.exceptions import RayError, RayTaskError

        try:
            while self.pending():
                check_interrupted()  # a SIGTERM/SIGINT whose exception a finalizer swallowed
                self._release_due()
                self.fill()
                if not self.in_flight and not self.starting:
                    if not self.alive or not self.waiting:
                        raise JobError("every worker died; no shard can run (see the Ray logs of the workers)")
                    time.sleep(max(0.0, min(t for t, _, _ in self.waiting) - time.monotonic()))
                    continue
                done = self._next_done()
                self._kill_overdue()
                if done is None:
                    continue
                ref, shard, a, gen = done
                try:
                    result = ray.get(ref)
                except RayTaskError as e:  # the shard's own code raised
                    self._task_failed(shard, e.cause if isinstance(e.cause, Exception) else e)
                    continue
                except RayError as e:  # the worker died (killed, crashed, out of memory, timed out) or cannot be reached
                    timed_out = (a, gen) in self.timed_out
                    self._replace_actor(a, gen)
                    self._retry(shard, f"timed out after {self.timeout_s():.0f}s (cluster.shard_timeout_s)" if timed_out
                                else f"worker died ({type(e).__name__})", suspect=True)
                    continue
                on_done(result)
        except JobError:
            self._drain(on_done)
            raise
        finally:
            for actor in self.actors:
                ray.kill(actor, no_restart=True)
        return self.skipped

    def pending(self) -> bool:
        """Whether any shard is queued, suspect, waiting for its retry or running."""
        return bool(self.queue or self.suspects or self.waiting or self.in_flight)

    def timeout_s(self) -> float:
        """Seconds an actor with calls in flight may go without finishing one."""
        return self.shard_timeout_s or max(TIMEOUT_FLOOR_S, TIMEOUT_FACTOR * self.slowest)

    def fill(self) -> None:
        """Submit work to every live actor: a suspect alone on an idle actor, else queued shards up to max_in_flight."""
        for a in sorted(self.alive):
            if self.suspects and self.load[a] == 0:
                self._submit(a, self.suspects.popleft(), self.max_in_flight)  # alone: fills the actor's slots
            while self.queue and self.load[a] < self.max_in_flight:
                self._submit(a, self.queue.popleft(), 1)

    def _submit(self, a: int, shard: Shard, load: int) -> None:
        if self.load[a] == 0:
            self.busy_since[a] = time.monotonic()
        self.in_flight[self.actors[a].run.remote(shard)] = (shard, a, self.generation[a], load)
        self.load[a] += load

    def _next_done(self) -> tuple[Any, Shard, int, int] | None:
        """(ref, shard, slot, generation) of the next call to finish within POLL_S (None if none did, or if a
        replacement finished starting instead); frees its slot on a current actor and restarts that actor's
        progress clock."""
        import ray

        ready, _ = ray.wait([*self.in_flight, *self.starting], num_returns=1, timeout=POLL_S)
        if not ready:
            return None
        if ready[0] in self.starting:
            self._started(ready[0])
            return None
        shard, a, gen, load = self.in_flight.pop(ready[0])
        if gen == self.generation[a]:
            self.load[a] -= load
            now = time.monotonic()
            if a in self.busy_since:
                self.slowest = max(self.slowest, now - self.busy_since.pop(a))
            if self.load[a] > 0:
                self.busy_since[a] = now
        return ready[0], shard, a, gen

    def _kill_overdue(self) -> None:
        """Kill every actor that finished no call within the shard timeout; its calls then fail and are re-queued."""
        import ray

        limit, now = self.timeout_s(), time.monotonic()
        for ref, (a, since) in list(self.starting.items()):
            if now - since > limit:
                del self.starting[ref]
                self._start_failed(a, f"within {limit:.0f}s (cluster.shard_timeout_s)")
        for a, since in list(self.busy_since.items()):
            if now - since > limit and a in self.alive:
                log.warning("worker %d finished no shard in %.0fs (cluster.shard_timeout_s=%.0f); killing it",
                            a, now - since, limit)
                del self.busy_since[a]
                self.timed_out.add((a, self.generation[a]))
                ray.kill(self.actors[a], no_restart=True)

    def _release_due(self) -> None:
        """Move retries whose backoff has passed back to the front of the queue (or to the suspects)."""
        now = time.monotonic()
        due = sorted((w for w in self.waiting if w[0] <= now), key=lambda w: w[0], reverse=True)
        self.waiting = [w for w in self.waiting if w[0] > now]
        for _, shard, suspect in due:
            if suspect:
                self.suspects.append(shard)
            else:
                self.queue.appendleft(shard)

    def _task_failed(self, shard: Shard, cause: Exception) -> None:
        """A shard's task raised `cause`: skip it or fail the job (non-finite samples), else run it again."""
        if isinstance(cause, NonFiniteSamplesError):
            if self.skip_nonfinite:
                self.skipped.append(f"shard {shard.index} [{shard.start}, {shard.stop}): {cause}")
                log.warning("skipping shard %d: %s", shard.index, cause)
                return
            raise JobError(f"shard {shard.index} [{shard.start}, {shard.stop}): {cause} "
                           "(run.on_nonfinite=fail; set it to skip to write the other shards)") from None
        lines = [line.strip() for line in str(cause).strip().splitlines() if line.strip()]
        reason = f"{type(cause).__name__}: {lines[-1] if lines else ''}"
        if not is_transient(cause):  # the sampler, the network, a permanent storage error: a retry ends the same
            raise JobError(f"shard {shard.index} [{shard.start}, {shard.stop}): {reason}") from None
        self._retry(shard, reason)

    def _drain(self, on_done: Callable[[ShardResult], None]) -> None:
        """Start nothing new; wait for the calls in flight and keep the shards they finish."""
        import ray

        deadline = time.monotonic() + self.timeout_s()
        while self.in_flight:
            ready, _ = ray.wait(list(self.in_flight), num_returns=1, timeout=max(0.0, deadline - time.monotonic()))
            if not ready:  # a hung worker: give up on its shards (the actors are killed next)
                return
            ref = ready[0]
            self.in_flight.pop(ref)
            try:
                result = ray.get(ref)
            except ray.exceptions.RayError:
                continue
            on_done(result)

    def _replace_actor(self, a: int, gen: int) -> None:
        """Replace the actor of slot `a` after a call of generation `gen` failed; a late failure of an actor
        that was already replaced changes nothing (its other calls fail too and are re-queued as they do)."""
        import ray

        if a not in self.alive or gen != self.generation[a]:
            return
        ray.kill(self.actors[a], no_restart=True)  # dead already, or unreachable: make sure it is gone
        if self.restarts[a] >= self.max_restarts:
            self.alive.discard(a)
            log.warning("worker %d died; cluster.max_restarts=%d reached, continuing without it", a, self.max_restarts)
            return
        self.load[a] = 0
        self.busy_since.pop(a, None)
        self.alive.discard(a)
        log.warning("worker %d died; starting a replacement (%d of %d)", a, self.restarts[a] + 1, self.max_restarts)
        self._start_replacement(a)

    def _start_replacement(self, a: int) -> None:
        """Start a new actor in slot `a`. The slot takes shards once it has built its model (so its shard clock
        does not count the start); until then the other actors go on."""
        self.restarts[a] += 1
        self.generation[a] += 1
        self.actors[a] = self.new_actor()
        self.starting[self.actors[a].ready.remote()] = (a, time.monotonic())

    def _start_failed(self, a: int, why: str) -> None:
        """Slot `a`'s replacement did not start: start another while restarts remain, else go on without it."""
        import ray

        ray.kill(self.actors[a], no_restart=True)
        if self.restarts[a] < self.max_restarts:
            log.warning("worker %d's replacement did not start %s; starting another (%d of %d)", a, why,
                        self.restarts[a] + 1, self.max_restarts)
            self._start_replacement(a)
        else:
            log.warning("worker %d's replacement did not start %s; continuing without it", a, why)

    def _started(self, ref: Any) -> None:
        """A replacement's ready() call returned: its slot takes shards again, or is given up if it failed."""
        import ray

        a, _ = self.starting.pop(ref)
        try:
            ray.get(ref)
        except ray.exceptions.RayError as e:
            self._start_failed(a, f"({type(e).__name__})")
            return
        self.alive.add(a)
        log.info("worker %d's replacement is ready", a)

    def _retry(self, shard: Shard, reason: str, suspect: bool = False) -> None:
        """Run `shard` again (next, or as a suspect after the suspects before it), or raise JobError when it is
        out of attempts. Suspects go in turn, so a shard that keeps killing workers cannot starve the others."""
        self.attempts[shard.index] += 1
        if self.attempts[shard.index] >= self.max_shard_attempts:
            raise JobError(f"shard {shard.index} [{shard.start}, {shard.stop}) failed {self.attempts[shard.index]} "
                           f"times (cluster.max_shard_attempts={self.max_shard_attempts}); last: {reason}")
        delay = backoff_s(self.attempts[shard.index], self.retry_backoff_s)
        log.warning("re-queueing shard %d (attempt %d): %s; retrying in %.1fs", shard.index,
                    self.attempts[shard.index] + 1, reason, delay)
        self.waiting.append((time.monotonic() + delay, shard, suspect))
