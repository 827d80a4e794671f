"""The webhook deliveries still to make, in Redis: which are due, and who attempts each.

``{prefix}:webhooks`` (:attr:`JobStore.webhooks_key`) is a zset of job ids scored by when
their next attempt is due; the delivery's state lives in the job's own hash
(``webhook_url``, ``wh_state``, ``wh_attempts``, ``wh_code``, ``wh_error``,
``wh_delivered_at``, ``wh_next_at``, ``wh_lease``), so a delete or an expiry of the record
takes it along. A job's final state makes its delivery due in the same Lua script that
records the state (:mod:`service.store_lua`). Each step here is one Lua script too:

* :meth:`WebhookQueue.claim` takes one attempt: only if it is due and unclaimed (a claim
  pushes its score to the end of a lease, so of two dispatchers only one gets it, and a
  claimant that dies mid-attempt leaves it to be claimed again when the lease passes);
* :meth:`WebhookQueue.done` records the outcome: a 2xx ends the delivery for good (nothing
  can claim it again), a failure schedules the next attempt or gives up;
* :meth:`WebhookQueue.release` gives an attempt back, uncounted (a stopping dispatcher).
"""

from __future__ import annotations

import time
from typing import Any, cast

from service import store_lua as lua
from service.record import JobRecord
from service.store import JobStore
from service.webhook import Attempt


class WebhookQueue:
    """Claims and outcomes of webhook attempts (raises ``redis.RedisError`` when down)."""

    def __init__(self, store: JobStore) -> None:
        self.store = store
        self._claim = store.r.register_script(lua.WEBHOOK_CLAIM)
        self._done = store.r.register_script(lua.WEBHOOK_DONE)
        self._release = store.r.register_script(lua.WEBHOOK_RELEASE)

    def _keys(self, job_id: str) -> list[str]:
        return [self.store.webhooks_key, self.store.job_key(job_id)]

    def due(self, limit: int, now: float | None = None) -> list[str]:
        """Up to ``limit`` job ids whose next attempt is due, the longest-waiting first."""
        now = time.time() if now is None else now
        ids = self.store.r.zrangebyscore(self.store.webhooks_key, "-inf", now, 0, limit)
        return [str(x) for x in cast(list[Any], ids)]

    def pending(self) -> int:
        """Deliveries not yet done (due, waiting for a retry, or being attempted)."""
        return int(self.store.r.zcard(self.store.webhooks_key))

    def claim(
        self, job_id: str, token: str, lease_s: float, max_attempts: int, now: float | None = None
    ) -> JobRecord | None:
        """Take the job's next attempt (counted now) under ``token`` for ``lease_s``: the
        record as it is at this attempt, or None (not due, claimed, or nothing to send)."""
        now = time.time() if now is None else now
        flat = self._claim(
            keys=self._keys(job_id),
            args=[job_id, repr(now), repr(now + lease_s), token, max_attempts],
        )
        if not flat:
            return None
        items = [str(x) for x in cast(list[Any], flat)]
        data = dict(zip(items[::2], items[1::2], strict=True))
        return JobRecord.from_hash(data) if "id" in data and "state" in data else None

    def done(
        self,
        job_id: str,
        token: str,
        attempt: Attempt,
        next_at: float | None,
        now: float | None = None,
    ) -> str:
        """Record an attempt's outcome; the delivery's new state (``delivered``,
        ``pending``: tried again at ``next_at``, ``failed``), or ``stale`` (the claim had
        passed to another dispatcher) or ``missing`` (the job is gone)."""
        now = time.time() if now is None else now
        code = "" if attempt.code is None else str(attempt.code)
        out = self._done(
            keys=self._keys(job_id),
            args=[
                job_id,
                token,
                repr(now),
                "1" if attempt.ok else "0",
                code,
                attempt.error,
                "" if next_at is None else repr(next_at),
            ],
        )
        return str(out)

    def release(self, job_id: str, token: str, now: float | None = None) -> bool:
        """Give a claimed attempt back, uncounted and due at once."""
        now = time.time() if now is None else now
        return bool(self._release(keys=self._keys(job_id), args=[job_id, token, repr(now)]))
