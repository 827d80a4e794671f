#!/usr/bin/env bash
# Bring the service up on this machine (used by `make up`; the venv .venv must exist):
#   1. make sure Redis answers on localhost (use a running one, else start the installed
#      redis-server, else install it when root, else say how);
#   2. start the API (uvicorn), one Celery worker and Celery beat (the cleanup schedule) as
#      children, each in a process group of its own (Ctrl-C reaches only this script, which
#      then stops them in order); their logs in data/logs/ are appended to, never truncated;
#   3. wait for /readyz, push one real job over HTTP on the bundled sample, poll it to the end;
#   4. print where the result is and a curl example, then stay up until Ctrl-C.
# Stop (Ctrl-C, SIGTERM, SIGHUP): SIGTERM to the worker, beat and the API; a running job goes
# back to the queue without counting an attempt and resumes on the next start (the worker
# exits within seconds); SIGKILL of a whole process group only after LIPSYNC_STOP_GRACE_S
# (default 30); then Redis, if this script started it. It says what happened.
# Configuration: the LIPSYNC_* variables in docs/SERVICE.md; LIPSYNC_PORT (default 8000).
# ENGINE=NAME (make up ENGINE=musetalk): its weights are pulled into models/ first
# (lipsync models pull NAME: verified, resumed; a licence that does not allow commercial use
# is asked about on a terminal) and it becomes the default engine (LIPSYNC_DEFAULT_ENGINE).
# Webhooks: without LIPSYNC_WEBHOOK_SECRET a secret is made once and kept in
# $LIPSYNC_DATA_DIR/webhook-secret (mode 600); with the API on loopback and no
# LIPSYNC_WEBHOOK_ALLOW, receivers on this machine (localhost, 127.0.0.1, ::1) are allowed.
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

# Webhooks are signed: a secret of this machine's own unless one is given (the API and the
# worker, both started below, read the same variable).
if [[ -z "${LIPSYNC_WEBHOOK_SECRET:-}" ]]; then
    SECRET_FILE="$LIPSYNC_DATA_DIR/webhook-secret"
    if [[ ! -s "$SECRET_FILE" ]]; then
        (umask 077 && "$PY" -c 'import secrets; print(secrets.token_hex(32))' >"$SECRET_FILE")
        echo "up: made a webhook secret in $SECRET_FILE (set LIPSYNC_WEBHOOK_SECRET to choose one)"
    fi
    LIPSYNC_WEBHOOK_SECRET="$(cat "$SECRET_FILE")"
    export LIPSYNC_WEBHOOK_SECRET
    echo "up: webhooks are signed with the secret in $SECRET_FILE"
fi
if [[ -z "${LIPSYNC_WEBHOOK_ALLOW+set}" ]] && [[ "$HOST" == "127.0.0.1" || "$HOST" == "localhost" || "$HOST" == "::1" ]]; then
    export LIPSYNC_WEBHOOK_ALLOW="localhost,127.0.0.1,::1"  # receivers on this machine
    echo "up: webhooks may go to this machine (LIPSYNC_WEBHOOK_ALLOW=$LIPSYNC_WEBHOOK_ALLOW)"
fi

STOP_GRACE_S="${LIPSYNC_STOP_GRACE_S:-30}"
CHILDREN=()  # pids (each leads its own process group), stopped in this order
NAMES=()
REDIS_PID=""  # the redis-server this script started, stopped last

# spawn NAME LOG COMMAND...: run COMMAND in the background in a process group of its own
# (a terminal's Ctrl-C reaches this script only), appending to LOG after a start line.
spawn() {
    local name="$1" log="$2"
    shift 2
    echo "===== $(date '+%Y-%m-%d %H:%M:%S') scripts/up.sh (pid $$) starts $name =====" >>"$log"
    "$PY" -c 'import os, sys; os.setpgid(0, 0); os.execvp(sys.argv[1], sys.argv[1:])' "$@" \
        >>"$log" 2>&1 &
}

alive() { kill -0 "$1" 2>/dev/null; }
group_alive() { kill -0 -- "-$1" 2>/dev/null; }
now_us() { echo "${EPOCHREALTIME//[.,]/}"; }

# wait_group PID SECONDS: wait until no process of PID's group is left (a SIGKILLed group
# takes a moment to go: its members are reaped by their parents); 0 when none is left.
wait_group() {
    local pid="$1" until=$(( $(now_us) + $2 * 1000000 ))
    while group_alive "$pid" && (( $(now_us) < until )); do sleep 0.05; done
    ! group_alive "$pid"
}

# stop_all GRACE NAME=PID...: SIGTERM to each (at once), then wait for them side by side, up
# to GRACE seconds; each one's own stop time is told (not the time spent waiting for the
# ones before it), and a process group still there at the end is SIGKILLed, the last resort.
stop_all() {
    local grace="$1" t0 deadline item name pid tenths
    shift
    local -A pids=() stopped=()
    for item in "$@"; do pids["${item%%=*}"]="${item#*=}"; done
    t0=$(now_us)
    deadline=$(( t0 + grace * 1000000 ))
    for name in "${!pids[@]}"; do kill -TERM "${pids[$name]}" 2>/dev/null || true; done
    while (( ${#stopped[@]} < ${#pids[@]} )) && (( $(now_us) < deadline )); do
        for name in "${!pids[@]}"; do
            if [[ -z "${stopped[$name]:-}" ]] && ! alive "${pids[$name]}"; then
                stopped[$name]=$(( ($(now_us) - t0) / 100000 ))
            fi
        done
        sleep 0.05
    done
    for item in "$@"; do
        name="${item%%=*}" pid="${pids[${item%%=*}]}"
        if [[ -n "${stopped[$name]:-}" ]]; then
            tenths="${stopped[$name]}"
            echo "up: $name stopped after $((tenths / 10)).$((tenths % 10)) s"
        else
            echo "up: $name (pid $pid) did not stop within ${grace} s: SIGKILL to its process group"
            kill -KILL -- "-$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
        if ! wait_group "$pid" 2; then  # a pool process or a child left behind
            echo "up: processes of $name's group outlived it: SIGKILL"
            kill -KILL -- "-$pid" 2>/dev/null || true
            wait_group "$pid" 5 || true
        fi
    done
}

cleanup() {
    local status=$?
    trap - INT TERM HUP EXIT
    echo
    echo "up: stopping (a running job goes back to the queue and resumes on the next start)"
    local worker_log="$LOGS/worker.log" size=0 i pid back
    local -a named=()
    if [[ -f "$worker_log" ]]; then size=$(stat -c %s "$worker_log"); fi
    for i in "${!CHILDREN[@]}"; do named+=("${NAMES[$i]}=${CHILDREN[$i]}"); done
    if (( ${#named[@]} )); then stop_all "$STOP_GRACE_S" "${named[@]}"; fi
    if [[ -f "$worker_log" ]]; then
        back=$(tail -c "+$((size + 1))" "$worker_log" | grep -c "handed back" || true)
        if [[ "$back" != 0 ]]; then
            echo "up: $back running job(s) or measurement(s) handed back to the queue (no attempt counted)"
        fi
    fi
    if [[ -n "$REDIS_PID" ]]; then
        stop_all 20 "redis-server=$REDIS_PID"
    fi
    local left=0
    for pid in "${CHILDREN[@]}" $REDIS_PID; do
        group_alive "$pid" && left=1
    done
    if [[ "$left" == 0 ]]; then
        echo "up: stopped; no process left behind"
    else
        echo "up: some process is still running; see ps -eo pid,pgid,cmd" >&2
        status=1
    fi
    exit "$status"
}
trap cleanup EXIT
# A stop asked for (Ctrl-C, SIGTERM, SIGHUP) is a clean end: exit 0 when everything stopped
# (make up then ends quietly, not with "make: *** Error 130"); cleanup says otherwise.
trap 'exit 0' INT TERM HUP

redis_ping() {
    "$PY" -c 'import os, redis, sys; sys.exit(0 if redis.Redis.from_url(os.environ["LIPSYNC_REDIS_URL"], socket_connect_timeout=1).ping() else 1)' 2>/dev/null
}

# --- 0. an engine's weights (ENGINE=musetalk) -------------------------------------------------
if [[ -n "${ENGINE:-}" ]]; then
    echo "up: pulling the weights of engine $ENGINE (lipsync models pull $ENGINE)"
    if ! "$PY" -m lipsync.cli models pull "$ENGINE"; then
        echo "up: could not get every weights file of $ENGINE; see the messages above" >&2
        exit 1
    fi
    export LIPSYNC_DEFAULT_ENGINE="$ENGINE"
    echo "up: default engine: $ENGINE"
fi

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
    # its own process group too: Ctrl-C must not stop Redis before the worker hands its job back
    spawn redis-server "$LOGS/redis.log" redis-server --port "$REDIS_PORT" --bind 127.0.0.1 \
        --dir "$LIPSYNC_DATA_DIR/redis" --appendonly yes --maxmemory-policy noeviction \
        --logfile "$LOGS/redis.log"
    REDIS_PID="$!"
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
# Same session as this script: the pool's lower priority (nice, worker/tasks.py) then
# orders it behind the API. Beat is a process of its own (not the worker's -B), so that no
# stop can leave it running without its worker.
echo "up: starting the worker (log: $LOGS/worker.log)"
spawn worker "$LOGS/worker.log" "$PY" -m celery -A worker.celery_app worker --pool=prefork \
    --concurrency=1 --loglevel=INFO --without-gossip --without-mingle
CHILDREN+=("$!")
NAMES+=(worker)
echo "up: starting beat, the cleanup schedule (log: $LOGS/beat.log)"
spawn beat "$LOGS/beat.log" "$PY" -m celery -A worker.celery_app beat --loglevel=INFO \
    --schedule "$LIPSYNC_DATA_DIR/celerybeat-schedule"
CHILDREN+=("$!")
NAMES+=(beat)
echo "up: starting the API on $BASE (log: $LOGS/api.log)"
spawn api "$LOGS/api.log" "$PY" -m uvicorn --factory app.main:create_app --host "$HOST" \
    --port "$PORT"
CHILDREN+=("$!")
NAMES+=(api)

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
print(f"up: result file: {path.resolve()}")
quality = body.get("quality") or {}
if quality.get("state") in ("pending", "running"):  # the measurement follows the result
    print("up:   measuring the lip sync (lipsync evaluate) ...")
    while quality.get("state") in ("pending", "running"):
        time.sleep(0.5)
        quality = httpx.get(
            f"{base}/api/v1/lipsync/status", params={"task_id": task["task_id"]},
            headers=headers, timeout=30,
        ).json().get("quality") or {}
metrics = quality.get("metrics") or {}
if metrics.get("sync_score") is not None:
    print(
        f"up: lip sync (lipsync evaluate): offset {metrics['sync_offset_ms']:+.0f} ms, "
        f"score {metrics['sync_score']:.2f}, face found {metrics['face_found_rate']:.0%}"
    )
elif quality:
    print(f"up: lip sync: {quality.get('state')} {quality.get('note') or ''}".rstrip())
key = f" -H 'X-API-Key: {headers['X-API-Key']}'" if headers else ""
print("up: fetch it over HTTP:")
print(f"    curl -fo result.mp4{key} '{task['download_url']}'")
print("up: push your own:")
print(f"    curl -s{key} -F audio=@speech.wav -F video=@face.mp4 {base}/api/v1/lipsync/push")
PYEOF

KEY_HEADER=""
if [[ -n "$FIRST_KEY" ]]; then
    KEY_HEADER=" -H 'X-API-Key: $FIRST_KEY'"
fi
echo "up: with a webhook (the result's status POSTed, signed; docs/SERVICE.md#webhooks):"
echo "    curl -s$KEY_HEADER -F audio=@speech.wav -F video=@face.mp4 -F webhook_url=http://127.0.0.1:9000/hook $BASE/api/v1/lipsync/push"
echo "up: API docs at $BASE/docs; logs in $LOGS. Press Ctrl-C to stop."
while true; do
    for i in "${!CHILDREN[@]}"; do
        if ! alive "${CHILDREN[$i]}"; then
            echo "up: the ${NAMES[$i]} (pid ${CHILDREN[$i]}) exited; see $LOGS" >&2
            exit 1
        fi
    done
    if [[ -n "$REDIS_PID" ]] && ! alive "$REDIS_PID"; then
        echo "up: redis-server exited; see $LOGS/redis.log" >&2
        exit 1
    fi
    sleep 2
done
