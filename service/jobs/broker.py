"""The broker's unacknowledged messages of a job, read and tidied in its Redis.

kombu's Redis transport keeps every delivered message that is not acknowledged yet in the
hash ``unacked`` (delivery tag -> ``[message, exchange, routing key]``, its delivery time in
the zset ``unacked_index``) until it is acked, or until the visibility timeout (hours) has
passed and it is put back on its queue. Two of the service's paths would leave such a
message behind: a job whose worker was lost (its message is sent again, the dead worker's
copy stays) and a job handed back at a stop. :class:`BrokerMessages` puts one copy back at
the head of the queue and forgets the others, or forgets them all once the job has ended.
:func:`drop_queued_message` takes a deleted job's message out of the queue itself. The
scripts are in :mod:`service.jobs.lua`; every step is atomic inside Redis.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from service.jobs import lua
from service.jobs.client import Client, StoreError, connect
from service.queue import QUEUE

log = logging.getLogger("lipsync.jobs")

#: The broker's lists of the job queue: kombu's Redis transport keeps one per priority step
#: (``lipsync``, then ``lipsync\x06\x163`` ...).
QUEUE_LISTS = [QUEUE] + [f"{QUEUE}\x06\x16{p}" for p in (3, 6, 9)]


class BrokerMessages:
    """A job's unacked messages in the broker's Redis (``url``, kombu's default key names
    unless the transport options name others)."""

    def __init__(self, client: Client, transport_options: dict[str, Any] | None = None):
        opts = transport_options or {}
        prefix = str(opts.get("global_keyprefix", "") or "")
        self.r = client
        self.unacked_key = prefix + str(opts.get("unacked_key", "unacked"))
        self.index_key = prefix + str(opts.get("unacked_index_key", "unacked_index"))
        self.prefix = prefix
        self._tags = client.register_script(lua.UNACKED_TAGS)
        self._restore = client.register_script(lua.UNACKED_RESTORE)

    @classmethod
    def from_url(
        cls, url: str, transport_options: dict[str, Any] | None = None, timeout_s: float = 3.0
    ) -> BrokerMessages:
        return cls(connect(url, timeout_s), transport_options)

    def tags(self, job_id: str) -> list[str]:
        """Delivery tags of the unacked messages of task ``job_id`` (the task id is the job id)."""
        return [str(t) for t in self._tags(keys=[self.unacked_key], args=[job_id]) or []]

    def drop(self, job_id: str) -> int:
        """Forget every unacked message of a job that has ended (a later ack of one of them
        is a no-op). Returns how many were dropped."""
        tags = self.tags(job_id)
        if tags:
            self._restore(keys=[self.unacked_key, self.index_key, QUEUE], args=["", "", *tags])
        return len(tags)

    def put_back(self, job_id: str) -> bool:
        """Put one unacked message of the job back at the head of its queue and forget the
        others; False when it has none (the caller sends a new message)."""
        tags = self.tags(job_id)
        for tag in tags:
            raw = self.r.hget(self.unacked_key, tag)
            if raw is None:  # acked meanwhile
                continue
            message, _exchange, routing_key = json.loads(str(raw))
            message.setdefault("headers", {})["redelivered"] = True
            queue = self.prefix + str(routing_key or QUEUE)
            others = [t for t in tags if t != tag]
            keys = [self.unacked_key, self.index_key, queue]
            if self._restore(keys=keys, args=[tag, json.dumps(message), *others]):
                return True
        return False


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
