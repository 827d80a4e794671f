"""The job store: one Redis connection and the service's keys on it, split by concern.

Celery answers PENDING for any id it has never seen, so the service never asks Celery about a
job: every job is a Redis hash ``{prefix}:job:{id}`` written by push and updated by the worker.
State changes that race (terminate vs. start, finish vs. cancel) are Lua scripts, so each is
atomic. Nothing here imports FastAPI or the pipeline.
"""

from __future__ import annotations

from typing import Any

from service.jobs.client import Client, connect
from service.jobs.keys import Keys
from service.jobs.leases import Leases
from service.jobs.quality import Measurements
from service.jobs.records import Jobs
from service.jobs.stats import Stats
from service.jobs.webhooks import Webhooks
from service.jobs.workers import Workers


class JobStore:
    """Typed access to the service's Redis keys, one attribute a concern:

    * :attr:`jobs`: records, cancel flags, progress, final states, the owner index;
    * :attr:`leases`: claims, leases, and the moves back to the queue;
    * :attr:`workers`: heartbeats and drain marks;
    * :attr:`webhooks`: deliveries due and their attempts;
    * :attr:`quality`: the measurement of a succeeded job;
    * :attr:`stats`: queue lengths and counters.

    Every method raises :data:`service.jobs.StoreError` when Redis is down. The moves that
    span concerns (submit, cancel, delete, hand back) are :mod:`service.jobs.lifecycle`.
    """

    def __init__(self, client: Client, prefix: str = "lipsync", ttl_s: int = 86400) -> None:
        self.client = client
        self.keys = Keys(prefix)
        self.ttl_s = ttl_s
        parts: tuple[Any, ...] = (client, self.keys, ttl_s)
        self.jobs = Jobs(*parts)
        self.leases = Leases(*parts)
        self.workers = Workers(*parts)
        self.webhooks = Webhooks(*parts)
        self.quality = Measurements(*parts)
        self.stats = Stats(*parts)

    @classmethod
    def from_url(
        cls, url: str, prefix: str = "lipsync", ttl_s: int = 86400, timeout_s: float = 3.0
    ) -> JobStore:
        return cls(connect(url, timeout_s, health_check_interval=30), prefix=prefix, ttl_s=ttl_s)

    @property
    def prefix(self) -> str:
        return self.keys.prefix

    def ping(self) -> bool:
        return bool(self.client.ping())

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> JobStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
