"""The webhook dispatcher: a thread in the Celery worker's main process that delivers due
webhooks, never in a pool process (a job's slot stays free for jobs, and a job's end is not
held up by its receiver).

Every worker runs one. Each looks for due deliveries every ``LIPSYNC_WEBHOOK_POLL_S`` and
claims them one attempt at a time (:class:`service.jobs.webhooks.Webhooks`: atomic in
Redis, so two workers never make the same attempt), at most :data:`CONCURRENCY` attempts at
once, each in a thread of its own. The state is all in Redis: a worker that is killed loses
nothing (its claimed attempts are claimed again when their lease passes; the rest are simply
due), and a delivery recorded as delivered is never claimed again.

A stop (SIGTERM) stops the polling at once and aborts attempts under way (their sockets are
shut); those are given back uncounted, due at once for the next worker. A stop waits at most
:data:`STOP_WAIT_S` for that.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid

from service.jobs import JobRecord, JobStore, StoreError
from service.outbound import Watchdog
from service.settings import Settings
from service.status import status_payload
from service.webhook import WebhookPolicy, deliver, next_due
from worker.lease import retrying

log = logging.getLogger("lipsync.webhooks")

CONCURRENCY = 4  # attempts at once per worker
STOP_WAIT_S = 1.0
# A claimed attempt is claimed again by another dispatcher this long after its own time
# limit has passed, should its claimant have died (the time limit ends every live attempt).
LEASE_MARGIN_S = 30.0


def body_of(record: JobRecord) -> bytes:
    """What is POSTed: the job's status JSON, as ``GET /status`` answers at this attempt."""
    return json.dumps(status_payload(record), separators=(",", ":")).encode()


class WebhookDispatcher:
    """Polls the due deliveries and attempts them, until :meth:`stop`."""

    def __init__(self, settings: Settings, store: JobStore, name: str = "") -> None:
        self.settings = settings
        self.queue = store.webhooks
        self.policy = WebhookPolicy.from_settings(settings)
        self.secret = settings.webhook_secret.get_secret_value()
        self.lease_s = settings.webhook_timeout_s + LEASE_MARGIN_S
        self.name = name or f"pid{os.getpid()}"
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._attempts: dict[str, tuple[threading.Thread, Watchdog]] = {}
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="lipsync-webhooks", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        down = False  # Redis unreachable: said once, then again when it is back
        while not self._stop.is_set():
            started = 0
            try:
                started = self.poll()
                if down:
                    log.info("webhooks: Redis is back; deliveries go on")
                down = False
            except StoreError as exc:
                if not down:
                    log.warning("webhooks: Redis unavailable (%s); trying again", exc)
                down = True
            except Exception:
                log.exception("webhooks: the dispatcher's poll failed")
            # more may be due already (a backlog after a restart): look again soon
            pause = self.settings.webhook_poll_s
            self._stop.wait(min(pause, 0.05) if started else pause)

    def poll(self) -> int:
        """Claim what is due (up to the free attempt slots) and start it; how many started."""
        with self._lock:
            free = CONCURRENCY - len(self._attempts)
        started = 0
        for job_id in self.queue.due(free) if free > 0 else []:
            if self._stop.is_set():
                break
            token = f"{self.name}:{uuid.uuid4().hex[:12]}"
            record = self.queue.claim(
                job_id, token, self.lease_s, self.settings.webhook_max_attempts
            )
            if record is None or record.webhook is None:
                continue
            watchdog = Watchdog(time.monotonic() + self.policy.deadline_s)
            thread = threading.Thread(
                target=self._attempt,
                args=(record, token, watchdog),
                name=f"lipsync-webhook-{job_id[:8]}",
                daemon=True,
            )
            with self._lock:
                self._attempts[token] = (thread, watchdog)
            if self._stop.is_set():  # a stop came while it was claimed: abort it at once
                watchdog.fire()
            thread.start()
            started += 1
        return started

    def _attempt(self, record: JobRecord, token: str, watchdog: Watchdog) -> None:
        assert record.webhook is not None
        hook = record.webhook
        try:
            outcome = deliver(hook.url, body_of(record), self.secret, self.policy, watchdog)
            if self._stop.is_set() and not outcome.ok:  # aborted by a stop: not its fault
                self.queue.release(record.id, token)
                log.info("webhook of job %s: attempt %d given back (stopping)", record.id,
                         hook.attempts)  # fmt: skip
                return
            after = None if outcome.final else self._next(hook.attempts)
            state = retrying(  # Redis restarting: keep trying, within the claim's lease
                lambda: self.queue.done(record.id, token, outcome, after),
                f"webhook outcome of job {record.id}",
                budget_s=LEASE_MARGIN_S / 2,
            )
            log.info("webhook of job %s: attempt %d: %s -> %s", record.id, hook.attempts,
                     outcome.code or outcome.error, state)  # fmt: skip
        except StoreError as exc:  # its lease will pass: another attempt then
            log.warning("webhook of job %s: outcome not recorded (%s)", record.id, exc)
        except Exception:
            log.exception("webhook of job %s: attempt failed unexpectedly", record.id)
        finally:
            with self._lock:
                self._attempts.pop(token, None)

    def _next(self, attempts: int) -> float | None:
        s = self.settings
        return next_due(time.time(), attempts, s.webhook_max_attempts, s.webhook_backoff_s)

    def stop(self, wait_s: float = STOP_WAIT_S) -> None:
        """Stop polling, abort the attempts under way (they are given back) and wait for
        them, ``wait_s`` at most. Safe to call from a signal handler with ``wait_s=0``."""
        self._stop.set()
        with self._lock:
            running = list(self._attempts.values())
        for _, watchdog in running:
            watchdog.fire()
        deadline = time.monotonic() + wait_s
        threads = [t for t, _ in running] + ([self._thread] if self._thread else [])
        for thread in threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
