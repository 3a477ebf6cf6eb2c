"""`ShardScheduler`: runs shards on a pool of Ray actors with a plain `ray.wait` loop.

Like Ray's `ActorPool`, its state (queue, calls in flight, attempts, suspects, actor generations)
changes only through its own methods. It keeps `max_in_flight` calls per actor; a shard whose task
raised is re-queued next, up to `max_shard_attempts` runs. A dead actor is replaced, up to
`max_restarts` times per slot: slot `a` holds `actors[a]`, and a replacement bumps `generation[a]`,
so a late failure of the old actor's calls is told from a failure of its replacement. A shard whose
worker died while running it becomes a suspect and runs alone on an idle actor next time: a shard
that kills its worker is then told apart from the shards that were in flight beside it.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable, Iterable
from typing import Any

from .errors import JobError
from .plan import Shard
from .result import ShardResult
from .sampling import NonFiniteSamplesError

log = logging.getLogger(__name__)


class ShardScheduler:
    """Shards onto actors; `run(on_done)` returns the errors of skipped shards or raises JobError."""

    def __init__(self, actors: list[Any], new_actor: Callable[[], Any], shards: Iterable[Shard], *,
                 max_in_flight: int, max_restarts: int, max_shard_attempts: int, skip_nonfinite: bool = False) -> None:
        """`new_actor()` starts a replacement; `skip_nonfinite` skips a shard with non-finite samples
        (run.on_nonfinite=skip) instead of failing the job."""
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

    def run(self, on_done: Callable[[ShardResult], None]) -> list[str]:
        """Run every shard, calling `on_done` with each result; returns the errors of skipped shards. On failure
        (a shard out of attempts, non-finite samples without skip_nonfinite, every worker dead) no new shard
        starts, the calls in flight finish (their results still go to `on_done`), and JobError is raised.
        The actors are killed at the end, freeing their resources now rather than when collected."""
        import ray
        from ray.exceptions import RayError, RayTaskError

        try:
            while self.pending():
                self.fill()
                if not self.in_flight:
                    raise JobError("every worker died; no shard can run (see the Ray logs of the workers)")
                ref, shard, a, gen = self._next_done()
                try:
                    result = ray.get(ref)
                except RayTaskError as e:  # the shard's own code raised
                    self._task_failed(shard, e.cause if isinstance(e.cause, Exception) else e)
                    continue
                except RayError as e:  # the worker died (killed, crashed, out of memory) or cannot be reached
                    self._replace_actor(a, gen)
                    self._retry(shard, f"worker died ({type(e).__name__})", suspect=True)
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
        """Whether any shard is queued, suspect or running."""
        return bool(self.queue or self.suspects or self.in_flight)

    def fill(self) -> None:
        """Submit work to every live actor: a suspect alone on an idle actor, else queued shards up to max_in_flight."""
        for a in sorted(self.alive):
            if self.suspects and self.load[a] == 0:
                self._submit(a, self.suspects.popleft(), self.max_in_flight)  # alone: fills the actor's slots
            while self.queue and self.load[a] < self.max_in_flight:
                self._submit(a, self.queue.popleft(), 1)

    def _submit(self, a: int, shard: Shard, load: int) -> None:
        self.in_flight[self.actors[a].run.remote(shard)] = (shard, a, self.generation[a], load)
        self.load[a] += load

    def _next_done(self) -> tuple[Any, Shard, int, int]:
        """(ref, shard, slot, generation) of the next call to finish; frees its slot on a current actor."""
        import ray

        [ref], _ = ray.wait(list(self.in_flight), num_returns=1)
        shard, a, gen, load = self.in_flight.pop(ref)
        if gen == self.generation[a]:
            self.load[a] -= load
        return ref, shard, a, gen

    def _task_failed(self, shard: Shard, cause: Exception) -> None:
        """A shard's task raised `cause`: skip it or fail the job (non-finite samples), else run it again."""
        if isinstance(cause, NonFiniteSamplesError):
            if self.skip_nonfinite:
                self.skipped.append(f"shard {shard.index} [{shard.start}, {shard.stop}): {cause}")
                log.warning("skipping shard %d: %s", shard.index, cause)
                return
            raise JobError(f"shard {shard.index} [{shard.start}, {shard.stop}): {cause} "
                           "(run.on_nonfinite=fail; set it to skip to write the other shards)") from None
        lines = str(cause).strip().splitlines()
        self._retry(shard, f"{type(cause).__name__}: {lines[-1] if lines else ''}")

    def _drain(self, on_done: Callable[[ShardResult], None]) -> None:
        """Start nothing new; wait for the calls in flight and keep the shards they finish."""
        import ray

        while self.in_flight:
            [ref], _ = ray.wait(list(self.in_flight), num_returns=1)
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
        self.restarts[a] += 1
        self.generation[a] += 1
        self.load[a] = 0
        log.warning("worker %d died; starting a replacement (%d of %d)", a, self.restarts[a], self.max_restarts)
        self.actors[a] = self.new_actor()

    def _retry(self, shard: Shard, reason: str, suspect: bool = False) -> None:
        """Run `shard` again (next, or as a suspect after the suspects before it), or raise JobError when it is
        out of attempts. Suspects go in turn, so a shard that keeps killing workers cannot starve the others."""
        self.attempts[shard.index] += 1
        if self.attempts[shard.index] >= self.max_shard_attempts:
            raise JobError(f"shard {shard.index} [{shard.start}, {shard.stop}) failed {self.attempts[shard.index]} "
                           f"times (cluster.max_shard_attempts={self.max_shard_attempts}); last: {reason}")
        log.warning("re-queueing shard %d (attempt %d): %s", shard.index, self.attempts[shard.index] + 1, reason)
        if suspect:
            self.suspects.append(shard)
        else:
            self.queue.appendleft(shard)
