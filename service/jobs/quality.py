"""The quality measurement of a succeeded job (worker/quality.py runs it): its moves, each a
Lua script only its claimant can end, once (the ``q_*`` fields of the job's hash)."""

from __future__ import annotations

import json
from typing import Any, cast

from service.jobs import lua
from service.jobs.client import Part, now, script


class Measurements(Part):
    """The moves ``q_claim``, ``q_finish``, ``q_hand_back`` and ``q_cancel``."""

    _claim = script(lua.QUALITY_CLAIM)
    _finish = script(lua.QUALITY_FINISH)
    _hand_back = script(lua.QUALITY_HAND_BACK)
    _cancel = script(lua.QUALITY_CANCEL)
    _unsent = script(lua.QUALITY_UNSENT)
    _requeue = script(lua.QUALITY_REQUEUE)
    _resend = script(lua.QUALITY_RESEND)

    def _run(self, move: Any, job_id: str, *args: Any) -> str:
        """Run script ``move`` on the job's record: KEYS the job and the measuring zset,
        ARGV now, the job id, then ``args``."""
        keys = [self.keys.job(job_id), self.keys.measuring]
        return str(move(keys=keys, args=[repr(now()), job_id, *args]))

    def claim(self, job_id: str, holder: str, max_attempts: int) -> str:
        """Start the measurement: ``run``, or why not (``missing``, ``none``, ``skipped``,
        ``ready``, ``failed``: the attempts ran out)."""
        return self._run(self._claim, job_id, holder, max_attempts)

    def finish(
        self,
        job_id: str,
        holder: str,
        state: str,
        note: str | None = None,
        metrics: dict[str, Any] | None = None,
    ) -> str:
        """Record the measurement's end (only by its runner, once); the state recorded."""
        encoded = json.dumps(metrics) if metrics else ""
        return self._run(self._finish, job_id, holder, state, note or "", encoded)

    def hand_back(self, job_id: str, holder: str) -> str:
        """A running measurement back to ``pending``, its attempt not counted (``skipped``
        when a cancel came meanwhile)."""
        return self._run(self._hand_back, job_id, holder)

    def request_cancel(self, job_id: str) -> str:
        """``skipped`` (it had not started), ``canceling`` (running), its final state,
        ``none`` (no measurement) or ``missing`` (no job)."""
        return self._run(self._cancel, job_id)

    def unsent(self, job_id: str, note: str) -> bool:
        """A measurement whose task could not be sent: ``failed`` with ``note``, if it was
        still waiting to be sent."""
        keys = [self.keys.job(job_id), self.keys.measuring]
        return bool(self._unsent(keys=keys, args=[note, job_id]))

    def requeue(self, job_id: str, holder: str) -> str:
        """Move ``q_requeue``: the measurement's runner ``holder`` is gone; ``pending``
        (the caller sends it again), ``skipped`` (a cancel came meanwhile), ``busy``
        (another runner holds it) or its state."""
        return self._run(self._requeue, job_id, holder)

    def resend(self, job_id: str, after_s: float) -> bool:
        """Move ``q_resend``: True when the pending measurement's message was sent at least
        ``after_s`` ago (the caller found none of it waiting in the broker); noted as
        sent now, the caller sends it."""
        return self._run(self._resend, job_id, repr(float(after_s))) == "pending"

    def measuring(self) -> dict[str, tuple[float, str, str, float]]:
        """The measurements pending or running: job id -> (when its message was last sent,
        its state, its runner, when that started); an entry whose job is gone is dropped."""
        scored = cast(
            list[tuple[str, float]], self.r.zrange(self.keys.measuring, 0, -1, withscores=True)
        )
        entries = [(str(i), float(s)) for i, s in scored]
        pipe = self.r.pipeline(transaction=False)
        for job_id, _ in entries:
            pipe.hmget(self.keys.job(job_id), "q_state", "q_holder", "q_started_at")
        fields = cast(list[list[str | None]], pipe.execute() if entries else [])
        out: dict[str, tuple[float, str, str, float]] = {}
        gone: list[str] = []
        for (job_id, sent), (state, holder, started) in zip(entries, fields, strict=True):
            if state in ("pending", "running"):
                out[job_id] = (sent, str(state), str(holder or ""), float(started or 0))
            else:
                gone.append(job_id)
        if gone:
            self.r.zrem(self.keys.measuring, *gone)
        return out

    def stop_requested(self, job_id: str, worker: str = "") -> tuple[bool, bool]:
        """(measurement cancel requested, ``worker`` draining) in one round trip."""
        pipe = self.r.pipeline(transaction=False)
        pipe.hget(self.keys.job(job_id), "q_cancel")
        pipe.exists(self.keys.drain(worker or "-"))
        cancel, draining = pipe.execute()
        return cancel == "1", bool(worker) and bool(draining)

    def yields(self, job_id: str) -> int:
        """How often the measurement has made way for a waiting job."""
        return int(self.r.hget(self.keys.job(job_id), "q_yields") or 0)

    def count_yield(self, job_id: str) -> None:
        self.r.hincrby(self.keys.job(job_id), "q_yields", 1)
