"""Prometheus metrics read from Redis at scrape time (so they cover every API and worker)."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector

from service.jobs import TERMINAL_STATES, JobStore, StoreError


class JobsCollector(Collector):
    """Jobs by state, queue depth, live workers and processing seconds per pipeline stage."""

    def __init__(self, store: JobStore) -> None:
        self.store = store

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily("lipsync_redis_up", "Whether the job store (Redis) answered")
        try:
            queued = self.store.stats.queue_depth()
            running = self.store.stats.running_count()
            finished = self.store.stats.finished_counts()
            stages = self.store.stats.stage_seconds()
            workers = len(self.store.workers.live())
        except StoreError:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up

        jobs = GaugeMetricFamily("lipsync_jobs", "Jobs queued or running now", labels=["state"])
        jobs.add_metric(["queued"], queued)
        jobs.add_metric(["running"], running)
        yield jobs

        done = CounterMetricFamily(
            "lipsync_jobs_finished", "Jobs that reached a final state", labels=["state"]
        )
        for state in sorted(TERMINAL_STATES):
            done.add_metric([state], finished.get(state, 0))
        yield done

        depth = GaugeMetricFamily("lipsync_queue_depth", "Jobs waiting for a worker")
        depth.add_metric([], queued)
        yield depth

        alive = GaugeMetricFamily("lipsync_workers_alive", "Workers with a recent heartbeat")
        alive.add_metric([], workers)
        yield alive

        seconds = SummaryMetricFamily(
            "lipsync_stage_seconds", "Processing seconds per pipeline stage", labels=["stage"]
        )
        for stage, (total, count) in sorted(stages.items()):
            seconds.add_metric([stage], count_value=count, sum_value=total)
        yield seconds


def build_registry(store: JobStore) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(JobsCollector(store))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry
