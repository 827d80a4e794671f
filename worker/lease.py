"""A running job's lease: which process runs it, kept alive while it runs.

Taken when a job is claimed, renewed from a thread while it runs (which also keeps the job's
broker message from being delivered again), dropped when it ends. The lease is the guard
against a second run: a copy of the job's message delivered while it is held does not run,
and a job that is "running" without a live lease has lost its runner, so the copy the broker
delivers after the visibility timeout runs it again (docs/RELIABILITY.md). A holder is
``host:pid:start``: with the process's start time it names one process even after its pid
is reused (a restarted container numbers its processes from 1 again).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from service.jobs import JobStore, StoreUnreachable

log = logging.getLogger("lipsync.worker")

_T = TypeVar("_T")

LEASE_S = 30.0
LEASE_RENEW_S = 5.0
# How long a final state is retried while Redis is unreachable (e.g. restarting).
PUBLISH_RETRY_S = 60.0


def _process_start(pid: int | str) -> str | None:
    """When process ``pid`` started (clock ticks since boot), or None if it is gone or a
    zombie: with the pid it names one process even after the pid is reused (a restarted
    container numbers its processes from 1 again)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    fields = stat.rpartition(")")[2].split()
    return None if fields[:1] == ["Z"] else fields[19]


def lease_holder() -> str:
    """This process as a lease holder: ``host:pid:start``."""
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{_process_start(pid)}"


def _local(holder: str) -> tuple[str, str] | None:
    """``(pid, start)`` of a holder on this host, or None (another host, or malformed)."""
    parts = holder.rsplit(":", 2)
    if len(parts) != 3 or parts[0] != socket.gethostname() or not parts[1].isdigit():
        return None
    return parts[1], parts[2]


def holder_is_dead(holder: str) -> bool:
    """True when ``holder`` is a process on this host that no longer runs (or a zombie)."""
    local = _local(holder)
    if local is None:
        return False
    try:
        return _process_start(local[0]) != local[1]
    except OSError:  # no /proc: cannot tell, so the lease must lapse
        return False


class Renewer:
    """Calls each of ``calls`` (None: nothing to call) every LEASE_RENEW_S from a thread
    while a task runs (its lease, its broker message's visibility), so that they lapse only
    if the process dies. A call that fails is logged and made again at the next tick."""

    def __init__(self, what: str, *calls: Callable[[], object] | None) -> None:
        self.what = what
        self.calls = [call for call in calls if call is not None]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="lipsync-lease", daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(LEASE_RENEW_S):
            for call in self.calls:
                try:
                    call()
                except Exception:
                    log.warning("%s: a renewal failed", self.what, exc_info=True)

    def __enter__(self) -> Renewer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def lease_keeper(
    store: JobStore, job_id: str, holder: str, keep_visible: Callable[[], object] | None = None
) -> Renewer:
    """Renews a running job's lease, and with ``keep_visible`` keeps its broker message from
    being delivered again (:meth:`service.jobs.BrokerMessages.extend`)."""
    return Renewer(
        f"job {job_id}", keep_visible, lambda: store.leases.renew(job_id, holder, LEASE_S)
    )


def retrying(call: Callable[[], _T], what: str, budget_s: float = PUBLISH_RETRY_S) -> _T:
    """``call()``, retried while Redis is unreachable (a restart), for at most ``budget_s``."""
    deadline = time.monotonic() + budget_s
    delay = 0.2
    while True:
        try:
            return call()
        except StoreUnreachable:
            if time.monotonic() + delay > deadline:
                raise
            log.warning("%s: Redis unreachable, retrying in %.1f s", what, delay)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
