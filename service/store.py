"""Job records in Redis under the service's own keys (shared by the API and the worker).

Celery answers PENDING for any id it has never seen, so the service never asks Celery about a
job: every job is a Redis hash ``{prefix}:job:{id}`` written by push and updated by the worker.
State changes that race (terminate vs. start, finish vs. cancel) are Lua scripts, so each is
atomic. Nothing here imports FastAPI or the pipeline.

Why one module over 400 lines: :class:`JobStore` is the only code that knows the service's
Redis key names; keeping every method that touches them (and the scripts' calls) in one
place is what lets the key layout change in one place. The records are in
:mod:`service.record`, the scripts in :mod:`service.store_lua`.
"""

from __future__ import annotations

import json
import time
from functools import cached_property
from typing import Any, cast

import redis

from service import store_lua as lua
from service.record import JOB_STATES, TERMINAL_STATES, JobRecord, JobState, WebhookRecord

__all__ = ["JOB_STATES", "TERMINAL_STATES", "JobRecord", "JobState", "JobStore", "WebhookRecord"]

_RedisValue = bytes | bytearray | memoryview | str | int | float


def _now() -> float:
    return time.time()


class JobStore:
    """Typed access to the service's Redis keys. Methods raise ``redis.RedisError`` when down."""

    def __init__(self, client: redis.Redis, prefix: str = "lipsync", ttl_s: int = 86400) -> None:
        self.r = client
        self.prefix = prefix
        self.ttl_s = ttl_s
        self._cancel = client.register_script(lua.CANCEL)
        self._claim = client.register_script(lua.CLAIM)
        self._finish = client.register_script(lua.FINISH)
        self._progress = client.register_script(lua.PROGRESS)
        self._renew = client.register_script(lua.RENEW)
        self._break = client.register_script(lua.BREAK)
        self._requeue = client.register_script(lua.REQUEUE)
        self._hand_back = client.register_script(lua.HAND_BACK)
        self._q_claim = client.register_script(lua.QUALITY_CLAIM)
        self._q_finish = client.register_script(lua.QUALITY_FINISH)
        self._q_hand_back = client.register_script(lua.QUALITY_HAND_BACK)
        self._q_cancel = client.register_script(lua.QUALITY_CANCEL)

    @classmethod
    def from_url(
        cls, url: str, prefix: str = "lipsync", ttl_s: int = 86400, timeout_s: float = 3.0
    ) -> JobStore:
        client = redis.Redis.from_url(
            url,
            decode_responses=True,
            socket_connect_timeout=timeout_s,
            socket_timeout=timeout_s,
            health_check_interval=30,
        )
        return cls(client, prefix=prefix, ttl_s=ttl_s)

    # keys ---------------------------------------------------------------------------------
    def job_key(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}"

    @property
    def queued_key(self) -> str:
        return f"{self.prefix}:queued"

    @property
    def running_key(self) -> str:
        return f"{self.prefix}:running"

    @property
    def finished_key(self) -> str:
        return f"{self.prefix}:stats:finished"

    @property
    def stage_sum_key(self) -> str:
        return f"{self.prefix}:stats:stage_seconds_sum"

    @property
    def stage_count_key(self) -> str:
        return f"{self.prefix}:stats:stage_seconds_count"

    @property
    def workers_key(self) -> str:
        return f"{self.prefix}:workers"

    def lease_key(self, job_id: str) -> str:
        return f"{self.prefix}:lease:{job_id}"

    def idem_key(self, owner: str, key: str) -> str:
        return f"{self.prefix}:idem:{owner}:{key}"

    def drain_key(self, worker: str) -> str:
        return f"{self.prefix}:draining:{worker}"

    @property
    def webhooks_key(self) -> str:
        """Zset of the job ids whose webhook is still to be delivered, by when it is due."""
        return f"{self.prefix}:webhooks"

    # API side ------------------------------------------------------------------------------
    def ping(self) -> bool:
        return bool(self.r.ping())

    def queue_depth(self) -> int:
        return int(self.r.zcard(self.queued_key))

    def running_count(self) -> int:
        return int(self.r.zcard(self.running_key))

    def create(self, job: JobRecord) -> None:
        mapping: dict[_RedisValue, _RedisValue] = {
            "id": job.id,
            "owner": job.owner,
            "state": job.state,
            "created_at": repr(job.created_at),
            "audio": job.audio,
            "video": job.video,
            **({"audio_url": job.audio_url} if job.audio_url else {}),
            **({"video_url": job.video_url} if job.video_url else {}),
            **({"webhook_url": job.webhook.url, "wh_state": "waiting"} if job.webhook else {}),
            **({"video_name": job.video_name} if job.video_name else {}),
            **({"audio_name": job.audio_name} if job.audio_name else {}),
            "options": json.dumps(job.options),
            "progress": "0",
            "stage": job.stage,
            "attempts": "0",
        }
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(self.job_key(job.id), mapping=mapping)
        pipe.expire(self.job_key(job.id), self.ttl_s)
        pipe.zadd(self.queued_key, {job.id: job.created_at})
        pipe.execute()

    def get(self, job_id: str) -> JobRecord | None:
        data = cast(dict[str, str], self.r.hgetall(self.job_key(job_id)))
        if not data or "state" not in data or "id" not in data:
            return None
        return JobRecord.from_hash(data)

    def delete(self, job_id: str) -> None:
        pipe = self.r.pipeline(transaction=True)
        pipe.delete(self.job_key(job_id))
        pipe.zrem(self.queued_key, job_id)
        pipe.zrem(self.running_key, job_id)
        pipe.execute()

    def claim_idempotency(self, owner: str, key: str, job_id: str, digest: str) -> str | None:
        """Bind ``key`` to this job; returns the existing ``"job_id digest"`` when taken."""
        name = self.idem_key(owner, key)
        if self.r.set(name, f"{job_id} {digest}", nx=True, ex=self.ttl_s):
            return None
        existing = self.r.get(name)
        return str(existing) if existing is not None else None

    def release_idempotency(self, owner: str, key: str) -> None:
        self.r.delete(self.idem_key(owner, key))

    def request_cancel(self, job_id: str) -> str | None:
        """``canceled`` (was queued), ``canceling`` (running), a finished state, or None."""
        out = self._cancel(
            keys=[
                self.job_key(job_id),
                self.queued_key,
                self.running_key,
                self.finished_key,
                self.webhooks_key,
            ],
            args=[job_id, repr(_now()), self.ttl_s],
        )
        return str(out) if out else None

    # worker side ---------------------------------------------------------------------------
    def claim(
        self, job_id: str, max_attempts: int, worker: str, holder: str = "", lease_s: float = 0
    ) -> str:
        """Move a job to running. Returns ``run`` or why not (missing, canceled, a state,
        ``busy`` while another runner holds its lease...). With ``holder`` the runner takes
        the job's lease for ``lease_s`` seconds and must renew it while it runs."""
        lease_ms = int(lease_s * 1000)
        out = self._claim(
            keys=[
                self.job_key(job_id),
                self.queued_key,
                self.running_key,
                self.finished_key,
                self.lease_key(job_id),
                self.webhooks_key,
            ],
            args=[job_id, repr(_now()), self.ttl_s, max_attempts, worker, holder, lease_ms],
        )
        return str(out)

    def renew_lease(self, job_id: str, holder: str, lease_s: float) -> bool:
        out = self._renew(
            keys=[self.lease_key(job_id), self.job_key(job_id)], args=[holder, int(lease_s * 1000)]
        )
        return bool(out)

    def lease_holder(self, job_id: str) -> str | None:
        holder = self.r.get(self.lease_key(job_id))
        return str(holder) if holder is not None else None

    def break_lease(self, job_id: str, holder: str) -> bool:
        """Drop the lease of a runner known to be dead (only if it still holds it)."""
        return bool(self._break(keys=[self.lease_key(job_id)], args=[holder]))

    def requeue_orphan(self, job_id: str) -> str | None:
        """A running job without a lease goes back to ``queued`` (or ``canceled``)."""
        out = self._requeue(
            keys=[
                self.job_key(job_id),
                self.queued_key,
                self.running_key,
                self.finished_key,
                self.lease_key(job_id),
                self.webhooks_key,
            ],
            args=[job_id, repr(_now()), self.ttl_s],
        )
        return str(out) if out else None

    def cancel_requested(self, job_id: str) -> bool:
        return bool(self.r.hget(self.job_key(job_id), "cancel") == "1")

    def set_progress(self, job_id: str, stage: str, progress: float) -> None:
        self._progress(keys=[self.job_key(job_id)], args=[stage, repr(float(progress))])

    def finish(self, job_id: str, state: JobState, **fields: Any) -> bool:
        """Record a final state of a running job (error/result dicts are JSON-encoded)."""
        args: list[Any] = [job_id, repr(_now()), self.ttl_s, state]
        for name, value in fields.items():
            if isinstance(value, (dict, list)):
                value = json.dumps(value)
            args.extend([name, str(value)])
        out = self._finish(
            keys=[
                self.job_key(job_id),
                self.running_key,
                self.finished_key,
                self.lease_key(job_id),
                self.webhooks_key,
            ],
            args=args,
        )
        return bool(out)

    def record_stage_seconds(self, timings: dict[str, float]) -> None:
        pipe = self.r.pipeline(transaction=False)
        for stage, seconds in timings.items():
            pipe.hincrbyfloat(self.stage_sum_key, stage, float(seconds))
            pipe.hincrby(self.stage_count_key, stage, 1)
        pipe.execute()

    def heartbeat(self, worker: str) -> None:
        self.r.zadd(self.workers_key, {worker: _now()})

    def remove_worker(self, worker: str) -> None:
        self.r.zrem(self.workers_key, worker)

    def live_workers(self, max_age_s: float = 30.0) -> list[str]:
        return [str(w) for w in self.r.zrangebyscore(self.workers_key, _now() - max_age_s, "+inf")]

    # the quality measurement of a succeeded job (its own low-priority task) ----------------
    def quality_claim(self, job_id: str, holder: str, max_attempts: int) -> str:
        """Start the measurement: ``run``, or why not (``missing``, ``none``, ``skipped``,
        ``ready``, ``failed``: the attempts ran out)."""
        args: list[str | int] = [holder, repr(_now()), max_attempts]
        return str(self._q_claim(keys=[self.job_key(job_id)], args=args))

    def quality_finish(
        self,
        job_id: str,
        holder: str,
        state: str,
        note: str | None = None,
        metrics: dict[str, Any] | None = None,
    ) -> str:
        """Record the measurement's end (only by its runner, once); the state recorded."""
        args = [holder, repr(_now()), state, note or "", json.dumps(metrics) if metrics else ""]
        return str(self._q_finish(keys=[self.job_key(job_id)], args=args))

    def quality_hand_back(self, job_id: str, holder: str) -> str:
        """A running measurement back to ``pending``, its attempt not counted (``skipped``
        when a cancel came meanwhile)."""
        return str(self._q_hand_back(keys=[self.job_key(job_id)], args=[holder, repr(_now())]))

    def request_quality_cancel(self, job_id: str) -> str:
        """``skipped`` (it had not started), ``canceling`` (running), its final state,
        ``none`` (no measurement) or ``missing`` (no job)."""
        return str(self._q_cancel(keys=[self.job_key(job_id)], args=[repr(_now())]))

    def quality_stop_requested(self, job_id: str, worker: str = "") -> tuple[bool, bool]:
        """(measurement cancel requested, ``worker`` draining) in one round trip."""
        pipe = self.r.pipeline(transaction=False)
        pipe.hget(self.job_key(job_id), "q_cancel")
        pipe.exists(self.drain_key(worker or "-"))
        cancel, draining = pipe.execute()
        return cancel == "1", bool(worker) and bool(draining)

    # metrics / cleanup -----------------------------------------------------------------------
    def finished_counts(self) -> dict[str, int]:
        raw = cast(dict[str, str], self.r.hgetall(self.finished_key))
        return {k: int(v) for k, v in raw.items()}

    def stage_seconds(self) -> dict[str, tuple[float, int]]:
        sums = cast(dict[str, str], self.r.hgetall(self.stage_sum_key))
        counts = cast(dict[str, str], self.r.hgetall(self.stage_count_key))
        return {k: (float(v), int(counts.get(k, "0"))) for k, v in sums.items()}

    def active_ids(self) -> dict[str, list[str]]:
        return {
            "queued": [str(x) for x in self.r.zrange(self.queued_key, 0, -1)],
            "running": [str(x) for x in self.r.zrange(self.running_key, 0, -1)],
        }

    def exists(self, job_id: str) -> bool:
        return bool(self.r.exists(self.job_key(job_id)))

    def forget_active(self, job_id: str) -> None:
        pipe = self.r.pipeline(transaction=True)
        pipe.zrem(self.queued_key, job_id)
        pipe.zrem(self.running_key, job_id)
        pipe.execute()

    # an operator's stop ----------------------------------------------------------------------
    def set_draining(self, worker: str, ttl_s: float) -> None:
        """Mark worker node ``worker`` as stopping: its running jobs hand themselves back."""
        self.r.set(self.drain_key(worker), "1", px=max(1, int(ttl_s * 1000)))

    def clear_draining(self, worker: str) -> None:
        self.r.delete(self.drain_key(worker))

    def is_draining(self, worker: str) -> bool:
        return bool(worker) and bool(self.r.exists(self.drain_key(worker)))

    def stop_requested(self, job_id: str, worker: str = "") -> tuple[bool, bool]:
        """(cancel requested, ``worker`` draining) in one round trip."""
        if not worker:
            return self.cancel_requested(job_id), False
        pipe = self.r.pipeline(transaction=False)
        pipe.hget(self.job_key(job_id), "cancel")
        pipe.exists(self.drain_key(worker))
        cancel, draining = pipe.execute()
        return cancel == "1", bool(draining)

    def hand_back(self, job_id: str, holder: str) -> str | None:
        """A running job goes back to ``queued`` with its attempt given back (the worker
        running it is being stopped). Returns ``handed_back``, ``canceled`` (a terminate came
        meanwhile), ``busy`` (another runner holds its lease), another state (nothing done)
        or None (no such job)."""
        out = self._hand_back(
            keys=[
                self.job_key(job_id),
                self.queued_key,
                self.running_key,
                self.finished_key,
                self.lease_key(job_id),
                self.webhooks_key,
            ],
            args=[job_id, repr(_now()), self.ttl_s, holder],
        )
        return str(out) if out else None

    def fail_stale(self, job_id: str, code: str, message: str) -> bool:
        return self.finish(
            job_id, "failed", stage="failed", error={"code": code, "message": message}
        )

    # a caller's own jobs: list and delete ----------------------------------------------------
    # ``{prefix}:owner:{owner}`` is a zset of the owner's job ids scored by creation time.
    # Records expire on their own; their index entries are dropped when a listing or a later
    # push comes across them, and the index itself expires when its owner stops pushing.
    def owner_key(self, owner: str) -> str:
        return f"{self.prefix}:owner:{owner}"

    @cached_property
    def _purge(self) -> Any:
        return self.r.register_script(lua.PURGE)

    def index_job(self, job: JobRecord, idempotency_key: str | None = None) -> None:
        """Add a created job to its owner's index (and note its Idempotency-Key on the record,
        so a delete can drop the binding); prunes a few expired entries of that index."""
        key = self.owner_key(job.owner)
        oldest = [str(x) for x in self.r.zrange(key, 0, 7)]
        pipe = self.r.pipeline(transaction=True)
        if idempotency_key is not None:
            pipe.hset(self.job_key(job.id), "idem", idempotency_key)
        pipe.zadd(key, {job.id: job.created_at})
        pipe.expire(key, 2 * self.ttl_s + 7 * 86400)
        for job_id in oldest:
            pipe.exists(self.job_key(job_id))
        done = pipe.execute()
        found = done[len(done) - len(oldest) :]
        gone = [job_id for job_id, alive in zip(oldest, found, strict=True) if not alive]
        if gone:
            self.r.zrem(key, *gone)

    def list_owned(
        self,
        owner: str,
        state: str | None = None,
        limit: int = 20,
        cursor: tuple[float, str] | None = None,
        max_scan: int = 1000,
    ) -> tuple[list[JobRecord], tuple[float, str] | None]:
        """The owner's jobs, newest first: up to ``limit`` (in ``state`` when given) after
        ``cursor`` (the (created_at, id) of the last one already seen), and the cursor of
        the next page (None: no more). Looks at ``max_scan`` entries at most, so a page
        may come back short with a cursor."""
        key = self.owner_key(owner)
        top = "+inf" if cursor is None else repr(cursor[0])
        out: list[JobRecord] = []
        gone: list[str] = []
        offset = scanned = 0
        last: tuple[float, str] | None = None
        more = False
        batch = max(16, min(200, 2 * limit))
        while True:
            items = cast(
                list[tuple[str, float]],
                self.r.zrevrangebyscore(key, top, "-inf", start=offset, num=batch, withscores=True),
            )
            offset += len(items)
            page = [(str(i), float(s)) for i, s in items]
            if cursor is not None:  # ties with the cursor's score: order is id descending
                page = [(i, s) for i, s in page if not (s == cursor[0] and i >= cursor[1])]
            pipe = self.r.pipeline(transaction=False)
            for job_id, _ in page:
                pipe.hgetall(self.job_key(job_id))
            datas = pipe.execute() if page else []
            for index, ((job_id, score), data) in enumerate(zip(page, datas, strict=True)):
                scanned += 1
                last = (score, job_id)
                if not data or "state" not in data or data.get("owner") != owner:
                    gone.append(job_id)
                elif state is None or data["state"] == state:
                    out.append(JobRecord.from_hash(cast(dict[str, str], data)))
                if len(out) >= limit or scanned >= max_scan:
                    more = index + 1 < len(page) or bool(
                        self.r.zrevrangebyscore(key, top, "-inf", start=offset, num=1)
                    )
                    break
            else:
                if len(items) < batch:
                    break
                continue
            break
        if gone:
            self.r.zrem(key, *gone)
        return out, (last if more else None)

    def drop_webhook(self, job_id: str) -> None:
        """Forget the job's webhook: none will be made due, claimed or sent (a delete)."""
        pipe = self.r.pipeline(transaction=True)
        pipe.hdel(self.job_key(job_id), "webhook_url", "wh_state", "wh_next_at", "wh_lease")
        pipe.zrem(self.webhooks_key, job_id)
        pipe.execute()

    def purge(self, job_id: str, owner: str) -> None:
        """Remove every service key of ``owner``'s job: record, lease, queue entries, index
        entry, Idempotency-Key binding and pending webhook delivery (its files are the
        caller's to remove)."""
        idem = self.r.hget(self.job_key(job_id), "idem")
        idem_key = self.idem_key(owner, str(idem)) if idem else None
        self._purge(
            keys=[
                self.job_key(job_id),
                self.queued_key,
                self.running_key,
                self.lease_key(job_id),
                self.owner_key(owner),
                idem_key or self.job_key(job_id),
                self.webhooks_key,
            ],
            args=[job_id],
        )
