"""The quality measurement of a succeeded job (worker/quality.py runs it): its moves, each a
Lua script only its claimant can end, once (the ``q_*`` fields of the job's hash)."""

from __future__ import annotations

import json
from typing import Any

from service.jobs import lua
from service.jobs.client import Part, now, script


class Measurements(Part):
    """The moves ``q_claim``, ``q_finish``, ``q_hand_back`` and ``q_cancel``."""

    _claim = script(lua.QUALITY_CLAIM)
    _finish = script(lua.QUALITY_FINISH)
    _hand_back = script(lua.QUALITY_HAND_BACK)
    _cancel = script(lua.QUALITY_CANCEL)
    _unsent = script(lua.QUALITY_UNSENT)

    def _run(self, move: Any, job_id: str, *args: Any) -> str:
        """Run script ``move`` on the job's record: KEYS the job, ARGV now then ``args``."""
        return str(move(keys=[self.keys.job(job_id)], args=[repr(now()), *args]))

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
        return bool(self._unsent(keys=[self.keys.job(job_id)], args=[note]))

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
