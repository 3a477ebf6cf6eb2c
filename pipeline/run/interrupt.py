"""SIGTERM and SIGINT end a job cleanly: inside `interrupts_raise()` either signal raises `JobInterrupted`
in the main thread, so the driver stops its actors, writes the `interrupted` manifest and exits
128 + the signal number (130 for SIGINT, 143 for SIGTERM). Signals repeated during that cleanup are ignored."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class JobInterrupted(KeyboardInterrupt):
    """The job was stopped by a signal; `exit_code` is 128 + its number."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.exit_code = 128 + signum
        super().__init__(f"interrupted by {signal.Signals(signum).name}")


@contextlib.contextmanager
def interrupts_raise() -> Iterator[None]:
    """Within the block SIGTERM and SIGINT raise JobInterrupted once (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired: list[int] = []

    def handler(signum: int, frame: object) -> None:
        if not fired:
            fired.append(signum)
            raise JobInterrupted(signum)

    previous = {s: signal.signal(s, handler) for s in SIGNALS}
    try:
        yield
    except KeyboardInterrupt as e:
        if fired and not isinstance(e, JobInterrupted):  # ray.wait/ray.get run the handler and raise a bare one
            raise JobInterrupted(fired[0]) from None
        raise
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
