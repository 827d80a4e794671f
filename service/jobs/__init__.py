"""The job lifecycle in one place: its states and moves, the Redis keys and Lua scripts
that hold them, and the functions the API and the worker call.

| Module | What |
| --- | --- |
| :mod:`~service.jobs.states` | the states and every move between them, as tables |
| :mod:`~service.jobs.lua` | the scripts that make the moves (their guards from the tables) |
| :mod:`~service.jobs.keys` | every Redis key name |
| :mod:`~service.jobs.record` | a job's record as read from its hash |
| :mod:`~service.jobs.store` | :class:`JobStore`: one connection, split by concern into |
| | :mod:`~service.jobs.records` (jobs), :mod:`~service.jobs.leases`, |
| | :mod:`~service.jobs.workers`, :mod:`~service.jobs.webhooks`, |
| | :mod:`~service.jobs.quality`, :mod:`~service.jobs.stats` |
| :mod:`~service.jobs.lifecycle` | :func:`submit`, :func:`cancel`, :func:`delete`, |
| | :func:`hand_back`: the moves the API's routes and the worker make |
| :mod:`~service.jobs.broker` | the job's messages in the broker's Redis |
| :mod:`~service.jobs.client` | the Redis client: no module outside this package imports it |
"""

from service.jobs.broker import BrokerMessages
from service.jobs.client import StoreError, StoreUnreachable
from service.jobs.keys import Keys
from service.jobs.lifecycle import (
    Cancel,
    IdempotencyConflict,
    cancel,
    delete,
    hand_back,
    measuring,
    submit,
)
from service.jobs.record import JobRecord, QualityRecord, WebhookRecord
from service.jobs.states import JOB_STATES, TERMINAL_STATES, JobState
from service.jobs.store import JobStore

__all__ = [
    "JOB_STATES",
    "TERMINAL_STATES",
    "BrokerMessages",
    "Cancel",
    "IdempotencyConflict",
    "JobRecord",
    "JobState",
    "JobStore",
    "Keys",
    "QualityRecord",
    "StoreError",
    "StoreUnreachable",
    "WebhookRecord",
    "cancel",
    "delete",
    "hand_back",
    "measuring",
    "submit",
]
