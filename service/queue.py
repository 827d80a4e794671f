"""Celery configuration built from :class:`service.settings.Settings` (no module-level app).

The worker's app is ``worker.celery_app:app``; the API builds a producer-only app with
:func:`create_celery` and enqueues by task name, so it never imports the pipeline.
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from service.settings import MIN_VISIBILITY_S, Settings, load_settings

TASK_PROCESS = "lipsync.process"
TASK_CLEANUP = "lipsync.cleanup"
TASK_QUALITY = "lipsync.quality"
QUEUE = "lipsync"
# The broker's message priorities (kombu's Redis transport: one list per step, 0 first).
# A job is sent at JOB_PRIORITY; the measurement of a finished one at QUALITY_PRIORITY, so
# a worker takes any waiting job before it.
JOB_PRIORITY = 0
QUALITY_PRIORITY = 9
#: Seconds between two sweeps of a worker for messages past the visibility timeout.
RESTORE_SWEEP_S = 5


def send_job(celery: Celery, job_id: str) -> None:
    """Send job ``job_id``'s message (its Celery task id is the job id)."""
    celery.send_task(TASK_PROCESS, args=[job_id], task_id=job_id, queue=QUEUE)


def quality_task_id(job_id: str) -> str:
    """The Celery task id of a job's measurement (the job's own task id is its job id)."""
    return f"{job_id}-quality"


def celery_config(settings: Settings) -> dict[str, Any]:
    """Long-GPU-job settings: late acks, one job prefetched, hard limits, redelivery of a
    lost worker's job by the broker within a visibility timeout and a sweep."""
    return {
        "broker_url": settings.effective_broker_url,
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": {
            # The broker puts back on the queue a message unacknowledged for this long (its
            # worker was lost); a running task keeps its own invisible (service.jobs.broker),
            # and every worker sweeps for such messages every few seconds.
            "visibility_timeout": settings.visibility_timeout_s,
            "unacked_restore_interval": RESTORE_SWEEP_S,
            "unacked_restore_throttle": 1,
            "socket_connect_timeout": settings.redis_timeout_s,
        },
        "result_backend": None,  # job state lives in the service's own Redis keys
        "task_ignore_result": True,
        "task_acks_late": True,  # ack after the job, so a lost worker's job comes back
        "task_reject_on_worker_lost": True,  # a killed pool process's job: back at once
        "worker_prefetch_multiplier": 1,  # never hold a second long job hostage
        "worker_concurrency": settings.worker_concurrency,
        "task_soft_time_limit": settings.soft_time_limit_s,
        "task_time_limit": settings.hard_time_limit_s,
        "task_default_queue": QUEUE,
        "task_default_priority": JOB_PRIORITY,
        "task_publish_retry": True,
        "task_publish_retry_policy": {
            "max_retries": 2,
            "interval_start": 0.2,
            "interval_step": 0.5,
            "interval_max": 1.0,
        },
        "worker_send_task_events": False,
        "task_send_sent_event": False,
        "worker_hijack_root_logger": False,
        "beat_schedule": {
            "cleanup-expired": {
                "task": TASK_CLEANUP,
                "schedule": float(settings.cleanup_interval_s),
            },
        },
        "beat_schedule_filename": str(settings.data_dir / "celerybeat-schedule"),
        # Read back by the worker's start-up check and its tasks.
        "lipsync_settings": settings,
    }


def visibility_timeout_of(conf: Any) -> float:
    """The broker's visibility timeout in a Celery app's configuration (kombu's own default,
    an hour, when none is set)."""
    return float((conf.broker_transport_options or {}).get("visibility_timeout", 3600))


def check_visibility(conf: Any) -> None:
    """Refuse to run with a visibility timeout shorter than a lease can lapse in (the broker
    would hand a running job's message to another worker between two renewals)."""
    visibility = visibility_timeout_of(conf)
    if float(conf.task_time_limit or 0) <= 0:
        raise RuntimeError("task_time_limit (LIPSYNC_HARD_TIME_LIMIT_S) must be set")
    if visibility < MIN_VISIBILITY_S:
        raise RuntimeError(
            f"broker visibility_timeout ({visibility:.0f}s) must be at least "
            f"{MIN_VISIBILITY_S}s; set LIPSYNC_VISIBILITY_TIMEOUT_S higher"
        )


def create_celery(settings: Settings | None = None, *, with_tasks: bool = True) -> Celery:
    """A Celery app for ``settings``; ``with_tasks=False`` gives a producer-only app (the API)."""
    settings = settings or load_settings()
    celery = Celery(
        "lipsync",
        include=["worker.tasks"] if with_tasks else [],
        set_as_current=with_tasks,
    )
    celery.conf.update(celery_config(settings))
    return celery


def settings_of(celery: Celery) -> Settings:
    settings = celery.conf.get("lipsync_settings")
    if not isinstance(settings, Settings):
        raise RuntimeError("Celery app was not built by worker.celery_app.create_celery")
    return settings
