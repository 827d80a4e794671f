"""Test-only worker app: the real ``worker.celery_app`` with a 2 s Redis visibility timeout.

``celery -A tests.app.short_visibility_app worker`` runs the product's tasks unchanged, but
Redis hands a job that is still running to another worker after 2 s (swept every second).
The product refuses such a setting at start-up (``check_visibility``); this app skips that
one check so a test can prove that a redelivered running job still runs only once.
"""

from __future__ import annotations

from typing import Any

from celery.signals import worker_init

from worker import tasks
from worker.celery_app import app

VISIBILITY_TIMEOUT_S = 2

worker_init.disconnect(tasks._on_worker_init)
app.conf.broker_transport_options = {
    **app.conf.broker_transport_options,
    "visibility_timeout": VISIBILITY_TIMEOUT_S,
    "unacked_restore_interval": 1,
    "unacked_restore_throttle": 1,
}


@worker_init.connect
def _init_without_visibility_check(sender: Any = None, **_: Any) -> None:
    tasks._settings().ensure_dirs()


__all__ = ["app"]
