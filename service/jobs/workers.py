"""The workers: their liveness heartbeats (``/readyz``, the container health check) and
the drain mark an operator's stop sets on one."""

from __future__ import annotations

from service.jobs.client import Part, now


class Workers(Part):
    """``{prefix}:workers`` (a zset of worker names by their last heartbeat) and the drain
    marks ``{prefix}:draining:{worker}``."""

    def heartbeat(self, worker: str) -> None:
        self.r.zadd(self.keys.workers, {worker: now()})

    def remove(self, worker: str) -> None:
        self.r.zrem(self.keys.workers, worker)

    def live(self, max_age_s: float = 30.0) -> list[str]:
        """The workers with a heartbeat in the last ``max_age_s``."""
        return [str(w) for w in self.r.zrangebyscore(self.keys.workers, now() - max_age_s, "+inf")]

    def forget_silent(self, since: float) -> None:
        """Forget the workers whose last heartbeat is older than ``since`` (a time)."""
        self.r.zremrangebyscore(self.keys.workers, "-inf", since)

    def set_draining(self, worker: str, ttl_s: float) -> None:
        """Mark worker node ``worker`` as stopping: its running jobs hand themselves back."""
        self.r.set(self.keys.drain(worker), "1", px=max(1, int(ttl_s * 1000)))

    def clear_draining(self, worker: str) -> None:
        self.r.delete(self.keys.drain(worker))

    def is_draining(self, worker: str) -> bool:
        return bool(worker) and bool(self.r.exists(self.keys.drain(worker)))
