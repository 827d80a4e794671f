"""The broker's unacknowledged messages of a task, kept from redelivery while it runs.

kombu's Redis transport keeps every delivered message that is not acknowledged yet in the
hash ``unacked`` (delivery tag -> ``[message, exchange, routing key]``) with its delivery time
in the zset ``unacked_index``; every worker's sweep puts back on the queue the messages
delivered longer than the visibility timeout ago: that is how the job of a lost worker comes
back (docs/RELIABILITY.md). A task that runs longer than that timeout keeps its own message
invisible by marking it delivered again while it runs (:meth:`BrokerMessages.extend`, from
the thread that renews its lease), the way SQS's ChangeMessageVisibility does. Acks, rejects and
redelivery are kombu's; the one message moved here is a deleted job's, which
:func:`drop_queued_message` takes out of the queue.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from service.jobs import lua
from service.jobs.client import Client, StoreError, connect
from service.queue import QUEUE

log = logging.getLogger("lipsync.jobs")

#: The broker's lists of the job queue: kombu's Redis transport keeps one per priority step
#: (``lipsync``, then ``lipsync\x06\x163`` ...).
QUEUE_LISTS = [QUEUE] + [f"{QUEUE}\x06\x16{p}" for p in (3, 6, 9)]


class BrokerMessages:
    """The unacked messages in the broker's Redis (kombu's default key names unless the
    transport options name others)."""

    def __init__(self, client: Client, transport_options: dict[str, Any] | None = None):
        opts = transport_options or {}
        prefix = str(opts.get("global_keyprefix", "") or "")
        self.r = client
        self.unacked_key = prefix + str(opts.get("unacked_key", "unacked"))
        self.index_key = prefix + str(opts.get("unacked_index_key", "unacked_index"))
        self._extend = client.register_script(lua.UNACKED_EXTEND)

    @classmethod
    def from_url(
        cls, url: str, transport_options: dict[str, Any] | None = None, timeout_s: float = 3.0
    ) -> BrokerMessages:
        return cls(connect(url, timeout_s), transport_options)

    def extend(self, task_id: str) -> int:
        """Mark every unacked message of Celery task ``task_id`` delivered now: the broker
        redelivers none of them for another visibility timeout. Returns how many there were."""
        keys = [self.unacked_key, self.index_key]
        return int(self._extend(keys=keys, args=[task_id, repr(time.time())]) or 0)


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
