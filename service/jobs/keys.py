"""Every Redis key name the service uses, in one place (``{prefix}`` is LIPSYNC_REDIS_PREFIX).

| Key | Type | What |
| --- | --- | --- |
| ``{prefix}:job:{id}`` | hash | the job's record (:class:`service.jobs.record.JobRecord`) |
| ``{prefix}:queued`` / ``:running`` | zset | ids of the jobs waiting / running, by time |
| ``{prefix}:lease:{id}`` | string | the running job's runner, ``host:pid:start`` (expires) |
| ``{prefix}:owner:{owner}`` | zset | the owner's job ids by creation time (GET /jobs) |
| ``{prefix}:idem:{owner}:{key}`` | string | an Idempotency-Key's ``job_id digest`` |
| ``{prefix}:webhooks`` | zset | ids of the jobs whose webhook is due, by when |
| ``{prefix}:workers`` | zset | live workers by their last heartbeat |
| ``{prefix}:draining:{worker}`` | string | a stopping worker's drain mark (expires) |
| ``{prefix}:stats:finished`` | hash | jobs ended, per final state |
| ``{prefix}:stats:stage_seconds_sum`` / ``_count`` | hash | seconds per pipeline stage |
"""

from __future__ import annotations


class Keys:
    """The key names under one prefix."""

    def __init__(self, prefix: str = "lipsync") -> None:
        self.prefix = prefix
        self.queued = f"{prefix}:queued"
        self.running = f"{prefix}:running"
        self.webhooks = f"{prefix}:webhooks"
        self.workers = f"{prefix}:workers"
        self.finished = f"{prefix}:stats:finished"
        self.stage_sum = f"{prefix}:stats:stage_seconds_sum"
        self.stage_count = f"{prefix}:stats:stage_seconds_count"

    def job(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}"

    def lease(self, job_id: str) -> str:
        return f"{self.prefix}:lease:{job_id}"

    def owner(self, owner: str) -> str:
        return f"{self.prefix}:owner:{owner}"

    def idem(self, owner: str, key: str) -> str:
        return f"{self.prefix}:idem:{owner}:{key}"

    def drain(self, worker: str) -> str:
        return f"{self.prefix}:draining:{worker}"

    def lifecycle(self, job_id: str) -> list[str]:
        """The KEYS of every script that moves a job (:mod:`service.jobs.lua`)."""
        return [
            self.job(job_id),
            self.queued,
            self.running,
            self.finished,
            self.lease(job_id),
            self.webhooks,
        ]
