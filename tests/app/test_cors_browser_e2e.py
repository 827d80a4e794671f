"""CORS in a real browser: a page served from another local port calls the API.

The ``stack`` (Redis, Celery worker) gets a second API with ``LIPSYNC_CORS_ORIGINS`` naming
the page's origin. A tiny ``http.server`` serves the page and its media; headless Chromium
(Debian's, via playwright) runs the page's script, which pushes with ``X-API-Key`` and
``Idempotency-Key`` (a preflight), follows ``/events`` with fetch(), polls ``/status``,
downloads the result reading ``Content-Disposition`` and a Range request's
``Content-Range``, lists and deletes the job. The same page from an origin not listed
(``localhost`` instead of ``127.0.0.1``) is refused by the browser itself.
"""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tests.app import chromium
from tests.app.service_harness import (
    KEY_A,
    api_beside,
    astronaut_png,
    free_port,
    speech,
)

pytestmark = [pytest.mark.slow, chromium.NEEDED]

PAGE = """<!doctype html>
<meta charset="utf-8"><title>another origin</title>
<script>
window.runJob = async (api, key) => {
  const out = {};
  const blob = async (name) => (await fetch(name)).blob();
  const form = new FormData();
  form.append("audio", await blob("hello.wav"), "hello.wav");
  form.append("video", await blob("astronaut.png"), "astronaut.png");
  form.append("engine", "viseme");
  const auth = { "X-API-Key": key };
  let r = await fetch(`${api}/api/v1/lipsync/push`, {
    method: "POST", body: form, headers: { ...auth, "Idempotency-Key": "cors-page-1" } });
  out.push = r.status;
  const id = (await r.json()).task_id;
  out.id = id;

  // live progress with fetch() and a streaming reader
  r = await fetch(`${api}/api/v1/lipsync/events?task_id=${id}`, { headers: auth });
  out.eventsType = r.headers.get("content-type");
  const reader = r.body.getReader();
  const dec = new TextDecoder();
  let text = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    text += dec.decode(value);
  }
  out.events = text.split("\\n\\n").filter((b) => b.startsWith("event: status"))
    .map((b) => JSON.parse(b.split("\\ndata: ")[1]).state);

  r = await fetch(`${api}/api/v1/lipsync/status?task_id=${id}`, { headers: auth });
  out.status = (await r.json()).state;
  r = await fetch(`${api}/api/v1/lipsync/download?task_id=${id}`, { headers: auth });
  out.download = r.status;
  out.disposition = r.headers.get("content-disposition");
  out.bytes = (await r.arrayBuffer()).byteLength;
  r = await fetch(`${api}/api/v1/lipsync/download?task_id=${id}`,
                  { headers: { ...auth, Range: "bytes=0-99" } });
  out.range = r.status;
  out.contentRange = r.headers.get("content-range");
  r = await fetch(`${api}/api/v1/lipsync/jobs?limit=100`, { headers: auth });
  out.listed = (await r.json()).jobs.some((j) => j.task_id === id);
  // an error answer can be read too (its code)
  r = await fetch(`${api}/api/v1/lipsync/status?task_id=${id}`,
                  { headers: { "X-API-Key": "wrong" } });
  out.errorCode = [r.status, (await r.json()).detail.code];
  r = await fetch(`${api}/api/v1/lipsync/jobs/${id}`, { method: "DELETE", headers: auth });
  out.deleted = r.status;
  r = await fetch(`${api}/api/v1/lipsync/status?task_id=${id}`, { headers: auth });
  out.after = r.status;
  return out;
};
window.tryStatus = async (api, key) => {
  try {
    const r = await fetch(`${api}/api/v1/lipsync/jobs`, { headers: { "X-API-Key": key } });
    return `answered ${r.status}`;
  } catch (err) { return `refused: ${err.name}`; }
};
</script>
"""


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def page_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    root = tmp_path_factory.mktemp("page")
    (root / "index.html").write_text(PAGE)
    astronaut_png(root / "astronaut.png")
    speech(root / "hello.wav", "Hello there. This is a test.")
    handler = functools.partial(_Quiet, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def cors_api(stack: Any, page_server: int) -> Iterator[str]:
    """A second API on the stack's Redis, data and worker, allowing the page's origin."""
    origin = f"http://127.0.0.1:{page_server}"
    with api_beside(stack.env, stack.logdir, "api-cors", LIPSYNC_CORS_ORIGINS=origin) as base:
        yield base


def test_page_on_another_origin_uses_the_api(
    stack: Any, cors_api: str, page_server: int, browser: Any
) -> None:
    context = browser.new_context()
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.goto(f"http://127.0.0.1:{page_server}/index.html")
    out = page.evaluate("([api, key]) => window.runJob(api, key)", [cors_api, KEY_A])
    assert out["push"] == 202, (out, stack.logs())
    assert out["eventsType"].startswith("text/event-stream")
    assert out["events"][-1] == "succeeded" and out["status"] == "succeeded", out
    assert out["download"] == 200 and out["bytes"] > 1000
    assert out["disposition"] == f'attachment; filename="{out["id"]}.mp4"'
    assert out["range"] == 206 and out["contentRange"] == f"bytes 0-99/{out['bytes']}"
    assert out["listed"] is True
    assert out["errorCode"] == [401, "unauthorized"]
    assert out["deleted"] == 204 and out["after"] == 404
    assert not problems, problems

    # the same page from an origin the API does not list: the browser refuses the answer
    other = context.new_page()
    other.goto(f"http://localhost:{page_server}/index.html")
    refused = other.evaluate("([api, key]) => window.tryStatus(api, key)", [cors_api, KEY_A])
    assert refused == "refused: TypeError", refused
    # while from the allowed origin the same call goes through
    allowed = page.evaluate("([api, key]) => window.tryStatus(api, key)", [cors_api, KEY_A])
    assert allowed == "answered 200"
    context.close()
