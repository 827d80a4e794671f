"""Job records: written at push, read by status, moved by the API (cancel) and by their
runner (progress, final state), indexed per owner, and purged by a DELETE."""

from __future__ import annotations

import json
from typing import Any, cast

from service.jobs import lua
from service.jobs.client import Part, now, script
from service.jobs.record import JobRecord
from service.jobs.states import JOB_MOVES, JobState, targets

_RedisValue = bytes | bytearray | memoryview | str | int | float
_FINAL = targets(JOB_MOVES, "finish", "running")


class Jobs(Part):
    """The records (``{prefix}:job:{id}``), the queues they sit in, and the owner index."""

    _cancel = script(lua.CANCEL)
    _finish = script(lua.FINISH)
    _progress = script(lua.PROGRESS)
    _purge = script(lua.PURGE)

    def create(self, job: JobRecord) -> None:
        """Write a new job's record and queue entry (move ``submit``; its message is the
        caller's to send: :func:`service.jobs.lifecycle.submit`)."""
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
            **({"extra_audio": json.dumps(job.extra_audio)} if job.extra_audio else {}),
            "options": json.dumps(job.options),
            "progress": "0",
            "stage": job.stage,
            "attempts": "0",
        }
        key = self.keys.job(job.id)
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(key, mapping=mapping)
        pipe.expire(key, self.ttl_s)
        pipe.zadd(self.keys.queued, {job.id: job.created_at})
        pipe.execute()

    def get(self, job_id: str) -> JobRecord | None:
        data = cast(dict[str, str], self.r.hgetall(self.keys.job(job_id)))
        if not data or "state" not in data or "id" not in data:
            return None
        return JobRecord.from_hash(data)

    def exists(self, job_id: str) -> bool:
        return bool(self.r.exists(self.keys.job(job_id)))

    def claim_idempotency(self, owner: str, key: str, job_id: str, digest: str) -> str | None:
        """Bind ``key`` to this job; returns the existing ``"job_id digest"`` when taken."""
        name = self.keys.idem(owner, key)
        if self.r.set(name, f"{job_id} {digest}", nx=True, ex=self.ttl_s):
            return None
        existing = self.r.get(name)
        return str(existing) if existing is not None else None

    def release_idempotency(self, owner: str, key: str) -> None:
        self.r.delete(self.keys.idem(owner, key))

    def request_cancel(self, job_id: str) -> str | None:
        """Move ``cancel``: ``canceled`` (was queued), ``canceling`` (running: flagged), a
        finished state (nothing done), or None (no such job)."""
        out = self._cancel(keys=self.keys.lifecycle(job_id), args=[job_id, repr(now()), self.ttl_s])
        return str(out) if out else None

    def cancel_requested(self, job_id: str) -> bool:
        return bool(self.r.hget(self.keys.job(job_id), "cancel") == "1")

    def stop_requested(self, job_id: str, worker: str = "") -> tuple[bool, bool]:
        """(cancel requested, ``worker`` draining) in one round trip."""
        if not worker:
            return self.cancel_requested(job_id), False
        pipe = self.r.pipeline(transaction=False)
        pipe.hget(self.keys.job(job_id), "cancel")
        pipe.exists(self.keys.drain(worker))
        cancel, draining = pipe.execute()
        return cancel == "1", bool(draining)

    def set_progress(self, job_id: str, stage: str, progress: float) -> None:
        self._progress(keys=[self.keys.job(job_id)], args=[stage, repr(float(progress))])

    def finish(self, job_id: str, state: JobState, **fields: Any) -> bool:
        """Move ``finish``: record a final state of a running job (error/result dicts are
        JSON-encoded). False when it was not running."""
        if state not in _FINAL:
            raise ValueError(f"{state!r} is not a state a job finishes in")
        args: list[Any] = [job_id, repr(now()), self.ttl_s, state]
        for name, value in fields.items():
            if isinstance(value, (dict, list)):
                value = json.dumps(value)
            args.extend([name, str(value)])
        return bool(self._finish(keys=self.keys.lifecycle(job_id), args=args))

    def fail_stale(self, job_id: str, code: str, message: str) -> bool:
        return self.finish(
            job_id, "failed", stage="failed", error={"code": code, "message": message}
        )

    def active_ids(self) -> dict[str, list[str]]:
        return {
            "queued": [str(x) for x in self.r.zrange(self.keys.queued, 0, -1)],
            "running": [str(x) for x in self.r.zrange(self.keys.running, 0, -1)],
        }

    def forget_active(self, job_id: str) -> None:
        """Drop a queue entry whose record is gone (expired)."""
        pipe = self.r.pipeline(transaction=True)
        pipe.zrem(self.keys.queued, job_id)
        pipe.zrem(self.keys.running, job_id)
        pipe.execute()

    # a caller's own jobs: list and delete ----------------------------------------------------
    # ``{prefix}:owner:{owner}`` is a zset of the owner's job ids scored by creation time.
    # Records expire on their own; their index entries are dropped when a listing or a later
    # push comes across them, and the index itself expires when its owner stops pushing.
    def index(self, job: JobRecord, idempotency_key: str | None = None) -> None:
        """Add a created job to its owner's index (and note its Idempotency-Key on the record,
        so a delete can drop the binding); prunes a few expired entries of that index."""
        key = self.keys.owner(job.owner)
        oldest = [str(x) for x in self.r.zrange(key, 0, 7)]
        pipe = self.r.pipeline(transaction=True)
        if idempotency_key is not None:
            pipe.hset(self.keys.job(job.id), "idem", idempotency_key)
        pipe.zadd(key, {job.id: job.created_at})
        pipe.expire(key, 2 * self.ttl_s + 7 * 86400)
        for job_id in oldest:
            pipe.exists(self.keys.job(job_id))
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
        key = self.keys.owner(owner)
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
                pipe.hgetall(self.keys.job(job_id))
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

    def purge(self, job_id: str, owner: str, idempotency_key: str | None = None) -> None:
        """Remove every service key of ``owner``'s job: record, lease, queue entries, index
        entry, Idempotency-Key binding (``idempotency_key``, else the one noted on the
        record; only while it names this job) and pending webhook delivery. Its files are
        the caller's to remove."""
        job_key = self.keys.job(job_id)
        idem = idempotency_key or self.r.hget(job_key, "idem")
        self._purge(
            keys=[
                job_key,
                self.keys.queued,
                self.keys.running,
                self.keys.lease(job_id),
                self.keys.owner(owner),
                self.keys.idem(owner, str(idem)) if idem else job_key,
                self.keys.webhooks,
            ],
            args=[job_id],
        )
