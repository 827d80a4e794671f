"""The broker's unacknowledged messages of a job, read and tidied in its Redis.

kombu's Redis transport keeps every delivered message that is not acknowledged yet in the
hash ``unacked`` (delivery tag -> ``[message, exchange, routing key]``, its delivery time in
the zset ``unacked_index``) until it is acked, or until the visibility timeout (hours) has
passed and it is put back on its queue. Two of the service's paths would leave such a
message behind: a job whose worker was lost (its message is sent again, the dead worker's
copy stays) and a job handed back at a stop. :class:`BrokerMessages` puts one copy back at
the head of the queue and forgets the others, or forgets them all once the job has ended.
The scripts are in :mod:`service.store_lua`; every step is atomic inside Redis.
"""

from __future__ import annotations

import json
from typing import Any

import redis

from service import store_lua as lua
from service.queue import QUEUE


class BrokerMessages:
    """A job's unacked messages in the broker's Redis (``url``, kombu's default key names
    unless the transport options name others)."""

    def __init__(self, client: redis.Redis, transport_options: dict[str, Any] | None = None):
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
        client = redis.Redis.from_url(
            url, decode_responses=True, socket_connect_timeout=timeout_s, socket_timeout=timeout_s
        )
        return cls(client, transport_options)

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
