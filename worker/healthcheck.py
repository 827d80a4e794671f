"""Container health check of a worker: ``python -m worker.healthcheck``.

Healthy when Redis answers and this host's worker sent a heartbeat recently (the heartbeat
thread runs in the worker's main process, so a hung or dead worker turns unhealthy).
"""

from __future__ import annotations

import socket
import sys

from service.jobs import JobStore
from service.settings import load_settings


def main(max_age_s: float = 30.0) -> int:
    settings = load_settings()
    host = socket.gethostname()
    try:
        store = JobStore.from_url(settings.redis_url, settings.redis_prefix, timeout_s=3.0)
        workers = store.workers.live(max_age_s)
    except Exception as exc:
        print(f"unhealthy: Redis: {exc}", file=sys.stderr)
        return 1
    mine = [w for w in workers if w.split("@", 1)[-1] == host]
    if not mine:
        print(f"unhealthy: no recent heartbeat from a worker on {host}", file=sys.stderr)
        return 1
    print(f"healthy: {', '.join(mine)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
