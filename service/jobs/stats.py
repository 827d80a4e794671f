"""What ``/metrics`` and the push's admission read: queue lengths, jobs ended per state,
seconds per pipeline stage."""

from __future__ import annotations

from typing import cast

from service.jobs.client import Part


class Stats(Part):
    def queue_depth(self) -> int:
        return int(self.r.zcard(self.keys.queued))

    def running_count(self) -> int:
        return int(self.r.zcard(self.keys.running))

    def finished_counts(self) -> dict[str, int]:
        """Jobs ended, per final state (counted by the scripts that end them)."""
        raw = cast(dict[str, str], self.r.hgetall(self.keys.finished))
        return {k: int(v) for k, v in raw.items()}

    def record_stage_seconds(self, timings: dict[str, float]) -> None:
        pipe = self.r.pipeline(transaction=False)
        for stage, seconds in timings.items():
            pipe.hincrbyfloat(self.keys.stage_sum, stage, float(seconds))
            pipe.hincrby(self.keys.stage_count, stage, 1)
        pipe.execute()

    def stage_seconds(self) -> dict[str, tuple[float, int]]:
        sums = cast(dict[str, str], self.r.hgetall(self.keys.stage_sum))
        counts = cast(dict[str, str], self.r.hgetall(self.keys.stage_count))
        return {k: (float(v), int(counts.get(k, "0"))) for k, v in sums.items()}
