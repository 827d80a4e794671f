"""Test-only worker app: the real ``worker.celery_app`` with a 2 s Redis visibility timeout.

``celery -A tests.app.short_visibility_app worker`` runs the product's tasks unchanged, but
Redis would hand any message left unacknowledged for 2 s (swept every second) to another
worker. The workers acknowledge a message as its task starts, so a running job's message is
never among them: the visibility timeout does not matter to the service any more, and a
test proves it with this app.
"""

from __future__ import annotations

from worker.celery_app import app

VISIBILITY_TIMEOUT_S = 2

app.conf.broker_transport_options = {
    **app.conf.broker_transport_options,
    "visibility_timeout": VISIBILITY_TIMEOUT_S,
    "unacked_restore_interval": 1,
    "unacked_restore_throttle": 1,
}

__all__ = ["app"]
