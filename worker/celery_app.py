"""The object ``celery -A worker.celery_app worker`` loads.

Building it reads ``LIPSYNC_*`` from the environment and connects to nothing; tasks live in
:mod:`worker.tasks` (imported by the worker, never by the API).
"""

from __future__ import annotations

import os

from service.queue import create_celery

# The pipeline runs onnxruntime (voice activity, ONNX engines), which since 1.2x sends usage
# telemetry to Microsoft (a DNS lookup and upload of mobile.events.data.microsoft.com, a
# device id under ~/.cache) from every process that uses it. A worker that handles users'
# uploads makes no outbound connection: off unless the operator sets the variable.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

app = create_celery()
