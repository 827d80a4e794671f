"""GET /jobs, DELETE /jobs/{task_id}, GET /events and CORS against a real API and Redis.

A deployment of its own (key prefix, broker db, data dir) with no worker, so every pushed job
stays queued: listing, paging, filtering, expiry, deleting a queued job (no file on disk and
no Redis key left mentioning it), the event stream's keep-alives and its end when the job is
deleted, and CORS headers seen by a plain HTTP client. Running jobs (a worker) are in
test_jobs_running_e2e.py; CORS in a real browser in test_cors_browser_e2e.py.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests.app import service_harness as sh
from tests.app.envelope import assert_error_envelope
from tests.app.openapi_check import api_client
from tests.app.service_harness import KEY_A, KEY_B, push

P = "/api/v1/lipsync"
PAGE_ORIGIN = "http://127.0.0.1:9"  # an allowed origin (nothing needs to listen there)


# the API alone (no worker: pushed jobs stay queued unless a test starts one)
DEPLOYMENT = sh.Deployment(
    broker_db=11,
    worker=False,
    env={
        "LIPSYNC_API_KEYS": f"{KEY_A},{KEY_B}",
        "LIPSYNC_EVENTS_POLL_S": "0.1",
        "LIPSYNC_EVENTS_KEEPALIVE_S": "0.3",
        "LIPSYNC_CORS_ORIGINS": f"{PAGE_ORIGIN}, http://localhost:9/",
        "LIPSYNC_WEBHOOK_SECRET": "whsec-list-delete-0123456789",
    },
)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("jobs-media")
    return {
        "audio": sh.speech(d / "hi.wav", "Hi there."),
        "video": sh.astronaut_png(d / "astronaut.png"),
    }


def client(svc: Any, key: str | None = KEY_A) -> httpx.Client:
    headers = {"X-API-Key": key} if key else {}
    return api_client(svc.base_url, headers=headers, timeout=30)


def new_job(
    c: httpx.Client, files: dict[str, Path], webhook: str | None = None, **headers: str
) -> str:
    fields = {"webhook_url": webhook} if webhook else {}
    resp = push(c, files["audio"], files["video"], headers=headers or None, **fields)
    assert resp.status_code == 202, resp.text
    return str(resp.json()["task_id"])


def list_all(c: httpx.Client, **params: Any) -> tuple[list[str], int]:
    """Every job id the listing gives, following the cursors; and how many pages it took."""
    ids: list[str] = []
    pages = 0
    cursor = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        resp = c.get(f"{P}/jobs", params=query)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        pages += 1
        ids += [j["task_id"] for j in body["jobs"]]
        cursor = body["next_cursor"]
        if cursor is None:
            return ids, pages
        assert pages < 50


def mentions(r: redis.Redis, text: str) -> list[str]:
    """Every key of the whole db whose name or value mentions ``text``."""
    found = []
    for key in r.scan_iter(count=500):
        name = key.decode(errors="replace")
        kind = r.type(key).decode()
        if kind == "string":
            values = [r.get(key) or b""]
        elif kind == "hash":
            values = [b for kv in r.hgetall(key).items() for b in kv]
        elif kind == "zset":
            values = list(r.zrange(key, 0, -1))
        elif kind == "list":
            values = list(r.lrange(key, 0, -1))
        elif kind == "set":
            values = list(r.smembers(key))
        else:
            values = []
        if text in name or any(text.encode() in v for v in values):
            found.append(f"{kind} {name}")
    return found


def files_mentioning(root: Path, text: str) -> list[Path]:
    return [p for p in root.rglob("*") if text in str(p.relative_to(root))]


def test_list_is_own_newest_first_paged_filtered(svc: Any, files: dict[str, Path]) -> None:
    with client(svc, KEY_A) as a, client(svc, KEY_B) as b:
        mine = [new_job(a, files) for _ in range(5)]
        theirs = new_job(b, files)
        assert a.post(f"{P}/terminate", json={"task_id": mine[1]}).status_code == 200

        first = a.get(f"{P}/jobs", params={"limit": 2}).json()
        assert [j["task_id"] for j in first["jobs"]] == mine[::-1][:2]
        assert first["jobs"][0]["state"] == "queued" and first["jobs"][0]["stage"] == "queued"
        assert first["next_cursor"]

        ids, pages = list_all(a, limit=2)
        assert ids[: len(mine)] == mine[::-1], ids  # newest first, nothing twice or lost
        assert len(ids) == len(set(ids)) and theirs not in ids
        assert pages >= 3
        ids_b, _ = list_all(b)
        assert theirs in ids_b and not set(mine) & set(ids_b)

        canceled, _ = list_all(a, state="canceled")
        assert mine[1] in canceled and not set(mine) - {mine[1]} & set(canceled)
        queued, _ = list_all(a, state="queued", limit=1)
        assert [i for i in queued if i in mine] == [m for m in mine[::-1] if m != mine[1]]
        assert a.get(f"{P}/jobs", params={"state": "succeeded"}).json() == {
            "jobs": [],
            "next_cursor": None,
        }

        # an expired record drops out of the list, and its index entry goes with it
        r = svc.redis.client()
        owner = r.hget(f"{svc.prefix}:job:{mine[0]}", "owner")
        index = f"{svc.prefix}:owner:{owner}"
        assert r.zscore(index, mine[0]) is not None
        r.pexpire(f"{svc.prefix}:job:{mine[0]}", 1)
        time.sleep(0.05)
        ids, _ = list_all(a)
        assert mine[0] not in ids and mine[2] in ids
        assert r.zscore(index, mine[0]) is None

        # bad parameters: 422 with the standard body, naming the parameter
        bad = ({"limit": 0}, {"limit": 101}, {"state": "lost"}, {"cursor": "abc"}, {"sate": "x"})
        for params in bad:
            resp = a.get(f"{P}/jobs", params=params)
            assert resp.status_code == 422, (params, resp.text)
            assert_error_envelope(422, resp.json())
            assert resp.json()["detail"]["field"] == next(iter(params))
        # any well-formed cursor is a point in the list (a page, maybe empty)
        far = a.get(f"{P}/jobs", params={"cursor": f"1.0-{'0' * 32}"})
        assert far.status_code == 200 and far.json()["jobs"] == []
    with client(svc, None) as anon:
        assert anon.get(f"{P}/jobs").status_code == 401


def test_delete_queued_job_leaves_nothing(svc: Any, files: dict[str, Path]) -> None:
    with client(svc, KEY_A) as a, client(svc, KEY_B) as b:
        task = new_job(a, files, **{"Idempotency-Key": "delete-me-1"})
        keep = new_job(a, files)
        r = redis.Redis.from_url(svc.redis.url)
        broker = redis.Redis.from_url(svc.env["LIPSYNC_BROKER_URL"])
        assert files_mentioning(svc.data_dir, task)  # its uploads
        assert mentions(r, task)
        assert mentions(broker, task)  # its Celery message, waiting in the queue

        # another key's job, a malformed id, an unknown one: 404, nothing touched
        for who, tid in ((b, task), (a, "../" + task), (a, "0" * 32)):
            resp = who.delete(f"{P}/jobs/{tid}")
            assert resp.status_code == 404, resp.text
            assert_error_envelope(404, resp.json())
        assert a.get(f"{P}/status", params={"task_id": task}).status_code == 200

        resp = a.delete(f"{P}/jobs/{task}")
        assert resp.status_code == 204 and resp.content == b""
        for path in ("status", "events", "download"):
            resp = a.get(f"{P}/{path}", params={"task_id": task})
            assert resp.status_code == 404, (path, resp.text)
            assert_error_envelope(404, resp.json())
        assert a.delete(f"{P}/jobs/{task}").status_code == 404
        assert task not in list_all(a)[0] and keep in list_all(a)[0]

        assert files_mentioning(svc.data_dir, task) == []
        # the service's keys and the broker's db (its queued message left the queue too):
        # no key name or value names it
        assert mentions(r, task) == []
        assert mentions(broker, task) == []
        assert mentions(broker, keep)  # the other job's message stays

        # a job with a webhook: queued, or canceled (its delivery is then due, and no worker
        # runs here to make it); a delete leaves no key naming either, the due set included
        hook = "http://127.0.0.1:9/hook"
        hooked = [new_job(a, files, webhook=hook) for _ in range(2)]
        assert a.post(f"{P}/terminate", json={"task_id": hooked[1]}).status_code == 200
        canceled = a.get(f"{P}/status", params={"task_id": hooked[1]}).json()
        assert canceled["webhook"]["state"] == "pending" and canceled["webhook"]["url"] == hook
        assert r.zscore(f"{svc.prefix}:webhooks", hooked[1]) is not None
        for job in hooked:
            assert mentions(r, job)
            assert a.delete(f"{P}/jobs/{job}").status_code == 204
            assert mentions(r, job) == [] and mentions(broker, job) == []

        # the Idempotency-Key is free again: a new push with it makes a new job
        again = new_job(a, files, **{"Idempotency-Key": "delete-me-1"})
        assert again != task
        assert a.delete(f"{P}/jobs/{again}").status_code == 204
        assert a.delete(f"{P}/jobs/{keep}").status_code == 204


def read_events(resp: httpx.Response, until: float) -> Iterator[tuple[str, str]]:
    """(kind, text) per SSE block: ("comment", text) or (event name, data)."""
    block: list[str] = []
    for line in resp.iter_lines():
        if line:
            block.append(line)
            continue
        if not block:
            continue
        if all(x.startswith(":") for x in block):
            yield "comment", "\n".join(x[1:].strip() for x in block)
        else:
            fields = dict(x.split(": ", 1) for x in block if not x.startswith(":"))
            if "event" in fields:
                yield fields["event"], fields.get("data", "")
        block = []
        assert time.monotonic() < until, "the stream went on too long"


def test_events_keepalive_then_error_when_deleted(svc: Any, files: dict[str, Path]) -> None:
    import json
    import threading

    with client(svc, KEY_A) as a:
        task = new_job(a, files)
        seen: list[tuple[str, str]] = []
        started = time.monotonic()
        with a.stream("GET", f"{P}/events", params={"task_id": task}) as resp:
            assert resp.status_code == 200
            assert resp.headers["content-type"].startswith("text/event-stream")
            assert resp.headers["cache-control"].startswith("no-cache")
            deleter = threading.Timer(1.5, lambda: a.delete(f"{P}/jobs/{task}"))
            deleter.start()
            try:
                for kind, data in read_events(resp, started + 20):
                    seen.append((kind, data))
            finally:
                deleter.join()
        kinds = [k for k, _ in seen]
        assert kinds[0] == "status", seen
        first = json.loads(seen[0][1])
        assert first["task_id"] == task and first["state"] == "queued"
        assert set(first) >= {"state", "stage", "progress", "created_at"}
        assert kinds.count("comment") >= 3, seen  # keep-alives while nothing changed
        # the delete cancels the queued job, then removes it: the stream ends with an error
        # (or, when its read fell between the two, with the canceled status)
        last_kind, last_data = seen[-1]
        if last_kind == "error":
            assert json.loads(last_data)["detail"]["code"] == "not_found"
            assert kinds.count("status") == 1, seen
        else:
            assert last_kind == "status" and json.loads(last_data)["state"] == "canceled"

    with client(svc, KEY_B) as b:
        resp = b.get(f"{P}/events", params={"task_id": new_job(client(svc, KEY_A), files)})
        assert resp.status_code == 404
        assert_error_envelope(404, resp.json())
    with client(svc, None) as anon:
        resp = anon.get(f"{P}/events", params={"task_id": task})
        assert resp.status_code == 401
        assert_error_envelope(401, resp.json())


def test_events_of_a_finished_job_give_its_final_status_and_end(
    svc: Any, files: dict[str, Path]
) -> None:
    import json

    with client(svc, KEY_A) as a:
        task = new_job(a, files)
        assert a.post(f"{P}/terminate", json={"task_id": task}).status_code == 200
        with a.stream("GET", f"{P}/events", params={"task_id": task}) as resp:
            events = list(read_events(resp, time.monotonic() + 10))
        statuses = [json.loads(d) for k, d in events if k == "status"]
        assert len(statuses) == 1 and statuses[0]["state"] == "canceled"
        assert statuses[0] == a.get(f"{P}/status", params={"task_id": task}).json()


def test_cors_preflight_and_answers(svc: Any, files: dict[str, Path]) -> None:
    preflight = {
        "Origin": PAGE_ORIGIN,
        "Access-Control-Request-Method": "DELETE",
        "Access-Control-Request-Headers": "x-api-key, idempotency-key",
    }
    with httpx.Client(base_url=svc.base_url, timeout=30) as c:
        resp = c.options(f"{P}/jobs/{'0' * 32}", headers=preflight)
        assert resp.status_code == 200, resp.text
        assert resp.headers["access-control-allow-origin"] == PAGE_ORIGIN
        allowed = resp.headers["access-control-allow-headers"].lower()
        assert "x-api-key" in allowed and "idempotency-key" in allowed
        assert "DELETE" in resp.headers["access-control-allow-methods"]
        assert "access-control-allow-credentials" not in resp.headers
        # the trailing slash in the setting is forgiven; another origin gets no grant
        other = c.options(f"{P}/push", headers={**preflight, "Origin": "http://localhost:9"})
        assert other.headers["access-control-allow-origin"] == "http://localhost:9"
        evil = c.options(f"{P}/push", headers={**preflight, "Origin": "http://evil.test"})
        assert evil.status_code == 400
        assert "access-control-allow-origin" not in evil.headers

        # actual answers, errors included (the page can read their codes and Retry-After)
        resp = c.get(f"{P}/status", params={"task_id": "0" * 32}, headers={"Origin": PAGE_ORIGIN})
        assert resp.status_code == 401
        assert resp.headers["access-control-allow-origin"] == PAGE_ORIGIN
        exposed = resp.headers["access-control-expose-headers"].lower()
        for name in ("retry-after", "content-disposition", "content-range"):
            assert name in exposed
        bad_host = c.get(f"{P}/jobs", headers={"Origin": PAGE_ORIGIN, "Host": "evil.test"})
        assert bad_host.status_code == 400
        assert bad_host.json()["detail"]["code"] == "bad_host"
        assert bad_host.headers["access-control-allow-origin"] == PAGE_ORIGIN
        plain = c.get(f"{P}/jobs", headers={"X-API-Key": KEY_A})
        assert plain.status_code == 200 and "access-control-allow-origin" not in plain.headers


def test_no_cors_headers_by_default(redis_server: sh.RedisServer, tmp_path: Path) -> None:
    with sh.service(redis_server, tmp_path, broker_db=11) as plain:
        base = plain.start_api()
        resp = httpx.options(
            f"{base}{P}/push",
            headers={"Origin": PAGE_ORIGIN, "Access-Control-Request-Method": "POST"},
        )
        assert "access-control-allow-origin" not in resp.headers
        assert resp.status_code == 405
