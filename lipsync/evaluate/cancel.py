"""Cancelling an evaluation: the ``should_cancel`` callable of :func:`lipsync.evaluate.evaluate`
is polled as the work goes (each frame or batch, inside long loops), at most every
:data:`POLL_S` seconds so that a slow callable (a service reading a job's record) costs
little; when it returns True, :class:`lipsync.errors.Canceled` is raised."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from lipsync.errors import Canceled

POLL_S = 0.1  # at most this often; the work between two calls of poll() is well under 0.5 s
WAIT_STEP_S = 0.05  # Background.wait looks for a cancel this often

_T = TypeVar("_T")


class CancelPoll:
    """``poll()`` raises :class:`Canceled` once ``should_cancel()`` says so (None: never)."""

    def __init__(self, should_cancel: Callable[[], bool] | None, every_s: float = POLL_S) -> None:
        self._should_cancel = should_cancel
        self._every_s = every_s
        self._last = -float("inf")

    def __call__(self, force: bool = False) -> None:
        if self._should_cancel is None:
            return
        now = time.monotonic()
        if not force and now - self._last < self._every_s:
            return
        self._last = now
        if self._should_cancel():
            raise Canceled("the evaluation was canceled")


class Background(Generic[_T]):
    """``fn()`` on a daemon thread of its own, started at once; :meth:`wait` returns its
    result (or raises its error) while polling for a cancel, so a cancel does not wait for
    it (the thread then finishes on its own, its result unused)."""

    def __init__(self, fn: Callable[[], _T], name: str = "lipsync-evaluate") -> None:
        self._fn = fn
        self._done = threading.Event()
        self._result: _T | None = None
        self._error: BaseException | None = None
        threading.Thread(target=self._run, name=name, daemon=True).start()

    def _run(self) -> None:
        try:
            self._result = self._fn()
        except BaseException as exc:  # raised again in the waiting thread
            self._error = exc
        finally:
            self._done.set()

    def wait(self, poll: CancelPoll) -> _T:
        while not self._done.wait(WAIT_STEP_S):
            poll()
        if self._error is not None:
            raise self._error
        return self._result  # type: ignore[return-value]


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies (a killed worker, or the
    evaluation that started it); elsewhere nothing."""
    import ctypes
    import signal

    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
