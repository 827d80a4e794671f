"""The webhook deliveries still to make, in Redis: which are due, and who attempts each.

``{prefix}:webhooks`` (:attr:`Keys.webhooks`) is a zset of job ids scored by when
their next attempt is due; the delivery's state lives in the job's own hash
(``webhook_url``, ``wh_state``, ``wh_attempts``, ``wh_code``, ``wh_error``,
``wh_delivered_at``, ``wh_next_at``, ``wh_lease``), so a delete or an expiry of the record
takes it along. A job's final state makes its delivery due in the same Lua script that
records the state (:mod:`service.jobs.lua`). Each step here is one Lua script too:

* :meth:`Webhooks.claim` takes one attempt: only if it is due and unclaimed (a claim
  pushes its score to the end of a lease, so of two dispatchers only one gets it, and a
  claimant that dies mid-attempt leaves it to be claimed again when the lease passes);
* :meth:`Webhooks.done` records the outcome: a 2xx ends the delivery for good (nothing
  can claim it again), a failure schedules the next attempt or gives up;
* :meth:`Webhooks.release` gives an attempt back, uncounted (a stopping dispatcher).
"""

from __future__ import annotations

import time
from typing import Any, cast

from service.jobs import lua
from service.jobs.client import Part, script
from service.jobs.record import JobRecord
from service.webhook import Attempt


class Webhooks(Part):
    """Claims and outcomes of webhook attempts (raises ``StoreError`` when down)."""

    _claim = script(lua.WEBHOOK_CLAIM)
    _done = script(lua.WEBHOOK_DONE)
    _release = script(lua.WEBHOOK_RELEASE)

    def _keys(self, job_id: str) -> list[str]:
        return [self.keys.webhooks, self.keys.job(job_id)]

    def due(self, limit: int, now: float | None = None) -> list[str]:
        """Up to ``limit`` job ids whose next attempt is due, the longest-waiting first."""
        now = time.time() if now is None else now
        ids = self.r.zrangebyscore(self.keys.webhooks, "-inf", now, 0, limit)
        return [str(x) for x in cast(list[Any], ids)]

    def pending(self) -> int:
        """Deliveries not yet done (due, waiting for a retry, or being attempted)."""
        return int(self.r.zcard(self.keys.webhooks))

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

    def drop(self, job_id: str) -> None:
        """Forget the job's webhook: none will be made due, claimed or sent (a delete)."""
        pipe = self.r.pipeline(transaction=True)
        pipe.hdel(self.keys.job(job_id), "webhook_url", "wh_state", "wh_next_at", "wh_lease")
        pipe.zrem(self.keys.webhooks, job_id)
        pipe.execute()
