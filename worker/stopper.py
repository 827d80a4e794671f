"""A stop that does not wait for the next check: :class:`Stopper`.

The pipeline, the fetch and the evaluation stop cooperatively: they call ``should_cancel()``
between batches, chunks and stages. Some steps run long between two checks (a model
loading, a probe child, a slow DNS answer, one long decode), so a terminate, a DELETE or an
operator's stop could wait seconds for them. The Stopper is the backstop, the same device
Celery's soft time limit uses: a thread polls the stop condition and, when it has held for
``grace_s`` while the step still runs, raises :class:`lipsync.errors.Canceled` in the main
thread by a signal (SIGUSR2) to this process. Python runs the handler between two bytecodes
of the main thread, and a blocking system call (a socket read, a wait for a child) returns
with EINTR to let it, so the step ends within a fraction of a second; the caller's ``except
Canceled`` then tells a cancel from a drain as it does for a cooperative stop.

Only in the main thread of a pool process (``signal.signal`` must be called there); a
handler that fires after the guarded block has ended does nothing.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import Any

from lipsync.errors import Canceled

log = logging.getLogger("lipsync.worker")

SIGNAL = signal.SIGUSR2
GRACE_S = 0.5  # a cooperative stop gets this long first
POLL_S = 0.2  # how often the stop condition is read


class Stopper:
    """Within ``with Stopper(check):``, ``check()`` turning true stops the block: at its next
    cooperative check, or by a :class:`Canceled` raised ``grace_s`` later (again every
    ``grace_s`` while the block still runs: a library that swallowed it gets another)."""

    def __init__(
        self, check: Callable[[], bool], grace_s: float = GRACE_S, poll_s: float = POLL_S
    ) -> None:
        self.check = check
        self.grace_s = grace_s
        self.poll_s = poll_s
        self.fired = 0  # signals sent
        self._armed = False
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._previous: Any = None
        self._installed = False
        self._main = threading.main_thread().ident or 0

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        if self._armed:
            raise Canceled("the job was stopped")

    def __enter__(self) -> Stopper:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(SIGNAL, self._handler)
            self._installed = True
            self._armed = True
            self._thread = threading.Thread(target=self._watch, name="lipsync-stopper", daemon=True)
            self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._armed = False
        self._done.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        if self._installed:
            # Never back to SIG_DFL (which ends the process): a watcher whose check outlived
            # the join could still send one late signal; ignored then.
            previous = self._previous if callable(self._previous) else signal.SIG_IGN
            signal.signal(SIGNAL, previous)

    def _watch(self) -> None:
        since: float | None = None
        while not self._done.wait(self.poll_s):
            try:
                stop = bool(self.check())
            except Exception:  # the check logs its own trouble; never kill the job for it
                stop = False
            if not stop:
                continue
            now = time.monotonic()
            since = now if since is None else since
            if now - since >= self.grace_s and self._armed:
                self.fired += 1
                log.info("stop requested %.1fs ago and the job still runs: interrupting it",
                         now - since)  # fmt: skip
                with contextlib.suppress(OSError):
                    signal.pthread_kill(self._main, SIGNAL)  # its system call returns EINTR
                since = now
