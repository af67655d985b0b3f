"""A time limit for one cell.

At the limit the main thread gets :class:`CellTimeout` (a SIGALRM handler), so
the cell ends with its stage named. A cell stuck in native code that never
returns to the interpreter cannot be interrupted that way: after a grace period
a watchdog thread records the timeout itself and ends the process, and the run
goes on in a fresh worker.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

HUNG_EXIT_CODE = 70
# How long past its limit a cell may stay stuck in native code before its worker is ended.
GRACE_SECONDS = float(os.environ.get("QMATRIX_TIMEOUT_GRACE", "30"))


class CellTimeout(BaseException):
    """The cell passed its time limit. A BaseException, so no stage mistakes it for a finding."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"the cell passed its time limit of {seconds:g} s")
        self.seconds = seconds


@contextmanager
def time_limit(seconds: float | None, on_hang: Callable[[], None], grace: float = GRACE_SECONDS) -> Iterator[None]:
    """Raise :class:`CellTimeout` after ``seconds``; call ``on_hang`` and exit if still stuck after ``grace``."""
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return
    done = threading.Event()

    def on_alarm(signum: int, frame: object) -> None:
        raise CellTimeout(seconds)

    def watch() -> None:
        if not done.wait(seconds + grace):
            on_hang()
            os._exit(HUNG_EXIT_CODE)

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    threading.Thread(target=watch, name="qmatrix-watchdog", daemon=True).start()
    try:
        yield
    finally:
        done.set()
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
