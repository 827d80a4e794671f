"""Who runs a job: the claim that starts it under a lease (or starts it again once its
runner is lost), the lease's renewal while it runs, and the hand-back of a running job to
the queue when its worker is being stopped.

A lease ``{prefix}:lease:{id}`` holds its runner's name (``host:pid:start``,
:func:`worker.lease.lease_holder`) and expires unless renewed: a running job without one
has lost its runner.
"""

from __future__ import annotations

from service.jobs import lua
from service.jobs.client import Part, now, script


class Leases(Part):
    """The moves ``claim`` and ``hand_back``, and the lease itself."""

    _claim = script(lua.CLAIM)
    _renew = script(lua.RENEW)
    _break = script(lua.BREAK)
    _hand_back = script(lua.HAND_BACK)

    def claim(
        self,
        job_id: str,
        max_attempts: int,
        worker: str,
        holder: str = "",
        lease_s: float = 0,
        time_limit_s: float = 0,
    ) -> str:
        """Move ``claim``: the job to running. Returns ``run`` or why not (``missing``,
        ``canceled``, ``exhausted``, another state, ``busy`` while another runner holds
        its lease, ``timeout`` when its lost runner had started it more than
        ``time_limit_s`` ago: it fails). With ``holder`` the runner takes the job's lease for
        ``lease_s`` seconds and must renew it while it runs."""
        args = [job_id, repr(now()), self.ttl_s, max_attempts, worker, holder]
        args += [int(lease_s * 1000), time_limit_s]
        return str(self._claim(keys=self.keys.lifecycle(job_id), args=args))

    def renew(self, job_id: str, holder: str, lease_s: float) -> bool:
        keys = [self.keys.lease(job_id), self.keys.job(job_id)]
        return bool(self._renew(keys=keys, args=[holder, int(lease_s * 1000)]))

    def holder(self, job_id: str) -> str | None:
        holder = self.r.get(self.keys.lease(job_id))
        return str(holder) if holder is not None else None

    def break_dead(self, job_id: str, holder: str) -> bool:
        """Drop the lease of a runner known to be dead (only if it still holds it)."""
        return bool(self._break(keys=[self.keys.lease(job_id)], args=[holder]))

    def hand_back(self, job_id: str, holder: str) -> str | None:
        """Move ``hand_back``: a running job goes back to ``queued`` with its attempt given
        back (the worker running it is being stopped). Returns ``handed_back``,
        ``canceled`` (a terminate came meanwhile), ``busy`` (another runner holds its
        lease), another state (nothing done) or None (no such job)."""
        args = [job_id, repr(now()), self.ttl_s, holder]
        out = self._hand_back(keys=self.keys.lifecycle(job_id), args=args)
        return str(out) if out else None
