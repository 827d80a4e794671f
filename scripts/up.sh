#!/usr/bin/env bash
# Bring the service up on this machine (used by `make up`; the venv .venv must exist):
#   1. make sure Redis answers on localhost (use a running one, else start the installed
#      redis-server, else install it when root, else say how);
#   2. start the API (uvicorn) and one Celery worker (with the cleanup schedule) as children;
#   3. wait for /readyz, push one real job over HTTP on the bundled sample, poll it to the end;
#   4. print where the result is and a curl example, then stay up until Ctrl-C.
# Configuration: the LIPSYNC_* variables in docs/SERVICE.md; LIPSYNC_PORT (default 8000).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="$ROOT/.venv/bin/python"
if [[ ! -x "$PY" ]]; then
    echo "up: $ROOT/.venv is missing; create it first (make setup / make up)" >&2
    exit 1
fi

PORT="${LIPSYNC_PORT:-8000}"
HOST="${LIPSYNC_HOST:-127.0.0.1}"
REDIS_PORT="${LIPSYNC_LOCAL_REDIS_PORT:-6379}"
export LIPSYNC_REDIS_URL="${LIPSYNC_REDIS_URL:-redis://127.0.0.1:${REDIS_PORT}/0}"
export LIPSYNC_DATA_DIR="${LIPSYNC_DATA_DIR:-$ROOT/data}"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
LOGS="$LIPSYNC_DATA_DIR/logs"
mkdir -p "$LOGS"
BASE="http://${HOST}:${PORT}"

CHILDREN=()
cleanup() {
    trap - INT TERM EXIT
    echo
    echo "up: stopping"
    local pid
    for pid in "${CHILDREN[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    # a worker in the middle of a job finishes it first (warm shutdown); give up after 20 s
    for _ in $(seq 1 40); do
        local alive=0
        for pid in "${CHILDREN[@]}"; do
            kill -0 "$pid" 2>/dev/null && alive=1
        done
        [[ "$alive" == 0 ]] && break
        sleep 0.5
    done
    for pid in "${CHILDREN[@]}"; do
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
}
trap cleanup EXIT
trap 'exit 130' INT TERM  # the EXIT trap stops the children

redis_ping() {
    "$PY" -c 'import os, redis, sys; sys.exit(0 if redis.Redis.from_url(os.environ["LIPSYNC_REDIS_URL"], socket_connect_timeout=1).ping() else 1)' 2>/dev/null
}

# --- 1. Redis ------------------------------------------------------------------------------
if redis_ping; then
    echo "up: using the Redis already running at $LIPSYNC_REDIS_URL"
else
    if ! command -v redis-server >/dev/null 2>&1; then
        if [[ "$(id -u)" == "0" ]] && command -v apt-get >/dev/null 2>&1; then
            echo "up: installing redis-server (apt-get)"
            apt-get update -qq
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
        else
            echo "up: no Redis on $LIPSYNC_REDIS_URL and redis-server is not installed." >&2
            echo "    install it:   sudo apt-get install -y redis-server" >&2
            echo "    or point LIPSYNC_REDIS_URL at a running Redis, then run make up again." >&2
            exit 1
        fi
    fi
    mkdir -p "$LIPSYNC_DATA_DIR/redis"
    echo "up: starting redis-server on 127.0.0.1:$REDIS_PORT (data in $LIPSYNC_DATA_DIR/redis)"
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$LIPSYNC_DATA_DIR/redis" \
        --appendonly yes --maxmemory-policy noeviction \
        --logfile "$LOGS/redis.log" &
    CHILDREN+=("$!")
    for _ in $(seq 1 50); do
        redis_ping && break
        sleep 0.2
    done
    redis_ping || { echo "up: redis-server did not start; see $LOGS/redis.log" >&2; exit 1; }
fi

# --- 2. API and worker -----------------------------------------------------------------------
if "$PY" -c 'import socket, sys; s = socket.socket(); sys.exit(s.connect_ex((sys.argv[1], int(sys.argv[2]))) != 0)' "$HOST" "$PORT"; then
    echo "up: port $PORT is in use; set LIPSYNC_PORT to another port" >&2
    exit 1
fi
echo "up: starting the worker (log: $LOGS/worker.log)"
"$PY" -m celery -A worker.celery_app worker --pool=prefork --concurrency=1 --loglevel=INFO \
    --without-gossip --without-mingle -B \
    --schedule "$LIPSYNC_DATA_DIR/celerybeat-schedule" >"$LOGS/worker.log" 2>&1 &
CHILDREN+=("$!")
echo "up: starting the API on $BASE (log: $LOGS/api.log)"
"$PY" -m uvicorn --factory app.main:create_app --host "$HOST" --port "$PORT" \
    >"$LOGS/api.log" 2>&1 &
CHILDREN+=("$!")

echo -n "up: waiting for $BASE/readyz "
ready=0
for _ in $(seq 1 120); do
    if "$PY" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' "$BASE/readyz" 2>/dev/null; then
        ready=1
        break
    fi
    echo -n "."
    sleep 1
done
echo
if [[ "$ready" != 1 ]]; then
    echo "up: the service did not become ready; last log lines:" >&2
    tail -n 20 "$LOGS/api.log" "$LOGS/worker.log" >&2
    exit 1
fi

# --- 3. one real job through the HTTP API ----------------------------------------------------
"$PY" scripts/make_samples.py
VIDEO="$ROOT/data/samples/astronaut.png"
AUDIO="$ROOT/data/samples/speech_en.wav"
for f in "$VIDEO" "$AUDIO"; do
    [[ -f "$f" ]] || { echo "up: scripts/make_samples.py did not create $f" >&2; exit 1; }
done
KEY_ARGS=()
FIRST_KEY="${LIPSYNC_API_KEYS:-}"
FIRST_KEY="${FIRST_KEY%%,*}"
if [[ -n "$FIRST_KEY" ]]; then
    KEY_ARGS=(--key "$FIRST_KEY")
fi
echo "up: pushing a demo job ($(basename "$VIDEO") + $(basename "$AUDIO"))"
"$PY" - "$BASE" "$VIDEO" "$AUDIO" "$LIPSYNC_DATA_DIR" "${KEY_ARGS[@]}" <<'PYEOF'
import sys
import time
from pathlib import Path

import httpx

base, video, audio, data_dir = sys.argv[1:5]
headers = {"X-API-Key": sys.argv[6]} if len(sys.argv) > 6 else {}
with httpx.Client(base_url=base, headers=headers, timeout=120) as c, \
        open(audio, "rb") as a, open(video, "rb") as v:
    resp = c.post("/api/v1/lipsync/push", files={"audio": a, "video": v})
    if resp.status_code != 202:
        sys.exit(f"up: push failed: {resp.status_code} {resp.text}")
    task = resp.json()
    print(f"up: task {task['task_id']} queued")
    last = None
    while True:
        body = c.get("/api/v1/lipsync/status", params={"task_id": task["task_id"]}).json()
        line = f"{body['state']:9s} {body['stage']:12s} {body['progress']:.0%}"
        if line != last:
            print(f"up:   {line}")
            last = line
        if body["state"] in ("succeeded", "failed", "canceled"):
            break
        time.sleep(0.5)
if body["state"] != "succeeded":
    sys.exit(f"up: the demo job ended {body['state']}: {body.get('error')}")
result = body["result"]
path = Path(data_dir) / "results" / result["file"]
print(f"up: done: {result['frames']} frames, {result['duration_s']:.2f} s of video")
quality = result.get("quality") or {}
if quality.get("sync_score") is not None:
    print(
        f"up: lip sync (lipsync evaluate): offset {quality['sync_offset_ms']:+.0f} ms, "
        f"score {quality['sync_score']:.2f}, face found {quality['face_found_rate']:.0%}"
    )
print(f"up: result file: {path.resolve()}")
key = f" -H 'X-API-Key: {headers['X-API-Key']}'" if headers else ""
print("up: fetch it over HTTP:")
print(f"    curl -fo result.mp4{key} '{task['download_url']}'")
print("up: push your own:")
print(f"    curl -s{key} -F audio=@speech.wav -F video=@face.mp4 {base}/api/v1/lipsync/push")
PYEOF

echo "up: API docs at $BASE/docs; logs in $LOGS. Press Ctrl-C to stop."
while true; do
    for pid in "${CHILDREN[@]}"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "up: a child process ($pid) exited; see $LOGS" >&2
            exit 1
        fi
    done
    sleep 2
done
