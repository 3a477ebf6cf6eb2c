"""SIGTERM and SIGINT end a job cleanly: inside `interrupts_raise()` either signal raises `JobInterrupted`
in the main thread, so the driver stops its actors, writes the `interrupted` manifest and exits
128 + the signal number (130 for SIGINT, 143 for SIGTERM). Signals repeated during that cleanup are ignored.

A handler's exception can be lost: raised while Python runs a finalizer (an ObjectRef's `__del__`, a weakref
callback), it is printed as "Exception ignored" and the code goes on. The scheduler's wait loop therefore calls
`check_interrupted()`, which raises JobInterrupted again for a signal that fired."""

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


_fired: list[int] = []  # the signal that fired inside the (outermost) interrupts_raise() block, if any
_depth = 0  # how many interrupts_raise() blocks the main thread is in


def check_interrupted() -> None:
    """Raise JobInterrupted if a signal fired inside interrupts_raise() (its own exception may have been lost)."""
    if _fired:
        raise JobInterrupted(_fired[0])


@contextlib.contextmanager
def interrupts_raise() -> Iterator[None]:
    """Within the block SIGTERM and SIGINT raise JobInterrupted once (main thread only; elsewhere a no-op).
    Blocks may nest (ray.init installs its own SIGTERM handler inside the driver's): they share one signal."""
    global _depth
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        if not _fired:
            _fired.append(signum)
            raise JobInterrupted(signum)

    if _depth == 0:
        _fired.clear()
    _depth += 1
    previous = {s: signal.signal(s, handler) for s in SIGNALS}
    try:
        yield
    except KeyboardInterrupt as e:
        if _fired and not isinstance(e, JobInterrupted):  # ray.wait/ray.get run the handler and raise a bare one
            raise JobInterrupted(_fired[0]) from None
        raise
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        _depth -= 1
        if _depth == 0:
            _fired.clear()
