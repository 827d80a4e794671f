"""The Redis client: the only module of the project that imports it (tests/test_import_graph.py
holds every other one to that). Callers elsewhere see :data:`StoreError` and
:data:`StoreUnreachable`, never a ``redis`` name."""

from __future__ import annotations

import time
from functools import cached_property
from typing import Any

import redis

from service.jobs.keys import Keys

Client = redis.Redis

#: Any failure of the job store (Redis): down, unreachable, refused, out of memory.
StoreError = redis.RedisError
#: The failures a retry may cure (a restart): no connection, or no answer in time.
StoreUnreachable: tuple[type[redis.RedisError], ...] = (redis.ConnectionError, redis.TimeoutError)


def connect(url: str, timeout_s: float = 3.0, **options: Any) -> redis.Redis:
    """A client for ``url`` (it connects at its first command) that answers str."""
    return redis.Redis.from_url(
        url,
        decode_responses=True,
        socket_connect_timeout=timeout_s,
        socket_timeout=timeout_s,
        **options,
    )


def now() -> float:
    return time.time()


class Part:
    """One concern of the job store (:class:`service.jobs.store.JobStore`): the shared
    client, key names and record time to live."""

    def __init__(self, client: redis.Redis, keys: Keys, ttl_s: int) -> None:
        self.r = client
        self.keys = keys
        self.ttl_s = ttl_s


def script(source: str) -> Any:
    """A Lua script as an attribute of a :class:`Part`: registered with its client when
    first used (then run by its SHA, loaded into Redis when Redis does not know it)."""

    def registered(part: Part) -> Any:
        return part.r.register_script(source)

    return cached_property(registered)
