"""The object ``celery -A worker.celery_app worker`` loads.

Building it reads ``LIPSYNC_*`` from the environment and connects to nothing; tasks live in
:mod:`worker.tasks` (imported by the worker, never by the API).
"""

from __future__ import annotations

from worker.config import create_celery

app = create_celery()
