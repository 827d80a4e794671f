"""The job's messages waiting in the broker's Redis: which are there, and the removal of a
deleted job's.

kombu's Redis transport keeps the messages waiting on a queue in one list per priority
step; a worker takes one from a list and its task acknowledges it as it starts (nothing
else of the broker's bookkeeping is read or written here). :class:`WaitingMessages` tells
the requeuer which queued jobs still have a message waiting, so that only a job whose
message was lost is sent again; :func:`drop_queued_message` takes a deleted job's message
out of the queue. The scripts are in :mod:`service.jobs.lua`; each runs atomically inside
Redis.
"""

from __future__ import annotations

import logging

from service.jobs import lua
from service.jobs.client import Client, StoreError, connect
from service.queue import QUEUE

log = logging.getLogger("lipsync.jobs")

#: The broker's lists of the job queue: kombu's Redis transport keeps one per priority step
#: (``lipsync``, then ``lipsync\x06\x163`` ...).
QUEUE_LISTS = [QUEUE] + [f"{QUEUE}\x06\x16{p}" for p in (3, 6, 9)]


def queue_list(priority: int) -> str:
    """The broker's list holding the messages sent at ``priority`` (one of kombu's steps)."""
    return QUEUE_LISTS[(0, 3, 6, 9).index(priority)]


class WaitingMessages:
    """The messages waiting in the broker's queue (Redis at ``url``)."""

    def __init__(self, client: Client) -> None:
        self.r = client
        self._waiting = client.register_script(lua.WAITING_MESSAGES)

    @classmethod
    def from_url(cls, url: str, timeout_s: float = 3.0) -> WaitingMessages:
        return cls(connect(url, timeout_s))

    def waiting(self, task_ids: list[str]) -> set[str]:
        """Those of ``task_ids`` (a job's task id is its id) that a waiting message names."""
        if not task_ids:
            return set()
        return {str(t) for t in self._waiting(keys=QUEUE_LISTS, args=task_ids) or []}

    def close(self) -> None:
        self.r.close()


def drop_queued_message(url: str, task_id: str, timeout_s: float = 3.0) -> int:
    """Take a deleted job's message out of the broker's queue at ``url`` (its Celery task id
    is the job id), so no broker key names it either; a worker would drop it anyway, but
    only when it got to it. Only for a Redis broker; any trouble is logged, never raised:
    the job is deleted already, and the worker still skips a message whose record is gone."""
    if not url.startswith(("redis://", "rediss://", "unix://")):
        return 0
    try:
        with connect(url, timeout_s) as r:
            return int(r.eval(lua.DROP_QUEUED_MESSAGE, len(QUEUE_LISTS), *QUEUE_LISTS, task_id))
    except StoreError as exc:
        log.warning("job %s: its queued message stays in the broker (%s)", task_id, exc)
        return 0
