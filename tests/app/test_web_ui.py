"""The web page at ``/`` driven in headless Chromium against the real service.

Real uvicorn, Celery worker and Redis (the ``stack`` fixture, which requires API keys, so the
page's key field is exercised too). Steps: load → API key → choose a portrait and speech →
submit (upload progress, throttled so it is seen moving) → job progress and stages (live
from ``GET /events``; the second test blocks it and the page polls ``/status``) → the
result <video> plays with the speech's duration → the download link gives the MP4 → a second
job is canceled, a third fails → phone width. Screenshots of each step go to tests/_artifacts/web/.
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.app import chromium
from tests.app.service_harness import (
    KEY_A,
    REPO,
    api_beside,
    astronaut_png,
    gradient_png,
    speech,
    wav_seconds,
)

SHOTS = REPO / "tests" / "_artifacts" / "web"

pytestmark = [pytest.mark.slow, chromium.NEEDED]

# Records every value the two progress bars and the stage label take, from page load on.
RECORDER = """
window.__seen = {upload: [], job: [], stage: []};
document.addEventListener("DOMContentLoaded", () => {
  const watch = (id, list, read) => {
    const node = document.getElementById(id);
    new MutationObserver(() => list.push(read(node))).observe(node,
      {attributes: true, childList: true, characterData: true, subtree: true});
  };
  watch("upload-progress", window.__seen.upload, (n) => n.value);
  watch("job-progress", window.__seen.job, (n) => n.value);
  watch("job-stage", window.__seen.stage, (n) => n.textContent);
});
"""


@pytest.fixture(scope="module")
def open_api(stack: Any) -> Iterator[str]:
    """A second API without API keys (the default) on the same Redis, data and worker."""
    with api_beside(stack.env, stack.logdir, "api-open", LIPSYNC_API_KEYS="") as base:
        yield base


def watch(page: Any, origin: str) -> list[str]:
    """Collects script errors, console errors (CSP violations among them) and any request
    that leaves the API's origin; the test asserts the list stays empty."""
    problems: list[str] = []

    def on_console(message: Any) -> None:
        # an HTTP error answer is logged too; those the test provokes and checks itself
        if message.type == "error" and "the server responded with a status" not in message.text:
            problems.append(f"console: {message.text}")

    def on_request(request: Any) -> None:
        if not request.url.startswith((origin + "/", "blob:", "data:")):
            problems.append(f"request to elsewhere: {request.url}")

    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on("console", on_console)
    page.on("request", on_request)
    return problems


def shot(page: Any, name: str, full: bool = True) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=full)


def test_web_page_push_progress_result_download_cancel(
    stack: Any, browser: Any, tmp_path: Path
) -> None:
    portrait = astronaut_png(tmp_path / "astronaut.png")
    # long enough that the render outlasts a status poll (its progress is checked below)
    short = speech(
        tmp_path / "hello.wav",
        "Hello there. This is a test of the page, which shows the job's progress while "
        "the worker renders it, frame after frame.",
    )
    long = speech(
        tmp_path / "long.wav",
        "This is a longer piece of speech, so that there is time to cancel the job while "
        "the worker is still drawing frames, and to see that it stops.",
    )
    audio_s = wav_seconds(short)
    assert 3.0 < audio_s < 10.0

    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    context.add_init_script(RECORDER)
    page = context.new_page()
    page.set_default_timeout(20_000)
    problems = watch(page, stack.base_url)
    followed: list[str] = []  # the job's progress requests: live events, or status polls
    page.on(
        "request",
        lambda r: (
            followed.append(r.url.split("/api/v1/lipsync/")[1].split("?")[0])
            if "/api/v1/lipsync/events" in r.url or "/api/v1/lipsync/status" in r.url
            else None
        ),
    )

    # 1. the page, from the API's own origin
    resp = page.goto(stack.base_url + "/")
    assert resp is not None and resp.status == 200
    assert "default-src 'none'" in resp.headers["content-security-policy"]
    page.wait_for_selector("#submit")
    shot(page, "01-loaded")

    # submitting with nothing chosen explains what is missing, without a request
    page.click("#submit")
    assert "Choose a face and a speech file" in page.inner_text("#form-error")

    # 2. API key: stored in the browser, sent as X-API-Key; the open panel covers nothing
    page.click("#key-panel summary")
    overlap = page.evaluate(
        """() => {
          const a = document.querySelector('#key-panel .key-body').getBoundingClientRect();
          return ['#video-drop', '#audio-drop', '#form'].some((sel) => {
            const b = document.querySelector(sel).getBoundingClientRect();
            return a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom;
          });
        }"""
    )
    assert not overlap, "the open key panel covers the form"
    page.fill("#api-key", KEY_A)
    assert page.evaluate("JSON.parse(localStorage.getItem('lipsync.apiKey'))") == KEY_A
    page.keyboard.press("Enter")  # closes the panel
    assert page.inner_text("#key-state") == "saved"

    # 3. files: both previewed
    page.set_input_files("#video-file", str(portrait))
    page.set_input_files("#audio-file", str(short))
    page.wait_for_function(
        "() => document.querySelector('#video-preview img')?.naturalWidth === 512"
    )
    page.wait_for_function("() => document.querySelector('#audio-preview audio')?.duration > 1")
    assert page.locator("#form-error").is_hidden()
    page.select_option("#engine", "viseme")
    page.select_option("#sync-mode", "loop")
    page.select_option("#enhancer", "classical")
    shot(page, "02-files-chosen")

    # 4. submit with the upload throttled, so its progress is seen moving
    cdp = context.new_cdp_session(page)
    cdp.send("Network.enable")
    throttle = {"offline": False, "latency": 20, "downloadThroughput": -1}
    cdp.send("Network.emulateNetworkConditions", {**throttle, "uploadThroughput": 400_000})
    t0 = time.monotonic()
    page.click("#submit")
    page.wait_for_function(
        "() => { const v = document.getElementById('upload-progress').value;"
        " return v > 0 && v < 100; }"
    )
    shot(page, "03-uploading", full=False)
    page.wait_for_function("() => document.getElementById('job-id').title.length === 32")
    cdp.send("Network.emulateNetworkConditions", {**throttle, "uploadThroughput": -1})
    task_id = page.get_attribute("#job-id", "title")
    assert task_id

    # 5. job progress and stage while it runs
    page.wait_for_function(
        "() => { const v = document.getElementById('job-progress').value;"
        " return v > 0 && v < 100; }",
        timeout=60_000,
    )
    shot(page, "04-running", full=False)

    # 6. done: the result plays inline, beside the input, with the speech's duration
    page.wait_for_selector("#job-state[data-state='succeeded']", timeout=90_000)
    page.wait_for_function(
        "() => document.getElementById('result-video').readyState >= 1", timeout=30_000
    )
    duration = page.evaluate("document.getElementById('result-video').duration")
    assert abs(duration - audio_s) <= 0.2, (duration, audio_s)
    assert page.locator("#input-media img").is_visible()
    # not black until played: the still is the poster, and the first frame is decoded
    assert page.get_attribute("#result-video", "poster"), "no poster"
    page.wait_for_function(
        "() => document.getElementById('result-video').readyState >= 2", timeout=30_000
    )
    # the lip-sync numbers follow the result, on the same event stream
    page.wait_for_function(
        "() => /lip sync/.test(document.getElementById('result-facts').textContent)",
        timeout=240_000,
    )
    page.evaluate(
        "async () => { const v = document.getElementById('result-video');"
        " v.muted = true; await v.play(); }"
    )
    page.wait_for_function(
        "() => document.getElementById('result-video').currentTime > 0.5", timeout=15_000
    )
    page.evaluate("document.getElementById('result-video').pause()")
    played = page.evaluate("document.getElementById('result-video').played.length")
    assert played >= 1
    # no "1 frames" (a singular for a count of one), whatever the count ("171 frames" is fine)
    assert not re.search(r"(?<!\d)1 frames", page.inner_text("#result-facts"))
    page.locator("#job").scroll_into_view_if_needed()
    shot(page, "05-done")

    seen = page.evaluate("window.__seen")
    assert seen["upload"] and seen["upload"][-1] == 100
    assert any(0 < v < 100 for v in seen["upload"]), seen["upload"]
    job_values = [v for v in seen["job"] if v is not None]
    assert job_values == sorted(job_values) and job_values[-1] == 100, job_values
    assert any(0 < v < 100 for v in job_values), job_values
    stages = set(seen["stage"])
    assert stages & {"Finding the face", "Animating the mouth", "Measuring the lip sync"}, stages
    assert page.inner_text("#job-stage") == "Done"
    # progress came live from GET /events (fetch with the key in a header), not from polling
    assert followed.count("events") == 1, followed
    assert followed.count("status") <= 1, followed  # at most refreshJobs' look at load

    # 7. the download link gives the MP4 the API serves
    with stack.client() as c:
        served = c.get("/api/v1/lipsync/download", params={"task_id": task_id})
    assert served.status_code == 200 and served.headers["content-type"] == "video/mp4"
    link_type = page.evaluate(
        "async () => (await (await fetch(document.getElementById('download').href)).blob()).type"
    )
    assert link_type == "video/mp4"
    with page.expect_download() as info:
        page.click("#download")
    download = info.value
    assert download.suggested_filename == f"{task_id}.mp4"
    got = Path(download.path()).read_bytes()
    assert got[4:8] == b"ftyp" and got == served.content

    # the job is in this browser's list, and stays there after a reload (key remembered)
    item = page.locator(f"#recent li[data-id='{task_id}']")
    assert item.locator(".badge").get_attribute("data-state") == "succeeded"
    page.reload()
    page.wait_for_selector(f"#recent li[data-id='{task_id}'] .badge[data-state='succeeded']")
    assert page.input_value("#api-key") == KEY_A

    # 8. a second, longer job, canceled from the page while it runs
    page.set_input_files("#video-file", str(portrait))
    page.set_input_files("#audio-file", str(long))
    page.click("#submit")
    page.wait_for_function(
        "() => document.getElementById('job-state').dataset.state === 'running'"
        " && document.getElementById('job-progress').value > 0",
        timeout=60_000,
    )
    second = page.get_attribute("#job-id", "title")
    assert second and second != task_id
    page.focus("#cancel")
    page.keyboard.press("Enter")  # keyboard works for the button
    page.wait_for_selector("#job-state[data-state='canceled']", timeout=30_000)
    assert "canceled" in page.inner_text("#error").lower()
    assert page.locator("#cancel").is_hidden()
    assert page.locator(f"#recent li[data-id='{second}'] .badge").text_content() == "canceled"
    with stack.client() as c:
        status = c.get("/api/v1/lipsync/status", params={"task_id": second}).json()
    assert status["state"] == "canceled"
    shot(page, "06-canceled")

    # 9. a job that fails (no face in the picture): a plain sentence and the code
    page.set_input_files("#video-file", str(gradient_png(tmp_path / "gradient.png")))
    page.set_input_files("#audio-file", str(short))
    page.click("#submit")
    page.wait_for_selector("#job-state[data-state='failed']", timeout=60_000)
    error = page.inner_text("#error")
    assert "No face was found" in error and "no_face" in error, error
    assert page.locator("#compare").is_hidden()
    shot(page, "07-failed")

    # 9b. an engine whose weights this server lacks: the page names the weight-free engines
    # that /options lists (the server's default first), not a list of its own
    if (
        not (REPO / "models" / "wav2lip_gan.pth").exists()
        and not (REPO / "models" / "wav2lip.pth").exists()
    ):
        # refused at the push (422 model_missing): no job is made
        page.select_option("#engine", "wav2lip")
        page.set_input_files("#video-file", str(portrait))
        page.click("#submit")
        page.wait_for_function(
            "() => document.getElementById('job-id').textContent === '(not created)'"
            " && document.getElementById('job-state').dataset.state === 'failed'",
            timeout=60_000,
        )
        error = page.inner_text("#error")
        assert "Choose the retrieval or viseme engine, which need none." in error, error
        assert "model_missing" in error, error
        page.select_option("#engine", "viseme")

    # 10. re-open the first job from the list: its result is loaded again
    page.click(f"#recent li[data-id='{task_id}'] button:has-text('Open')")
    page.wait_for_selector("#job-state[data-state='succeeded']")
    page.wait_for_function("() => document.getElementById('result-video').readyState >= 1")
    assert page.get_attribute("#job-id", "title") == task_id

    # 11. phone width: one column, nothing wider than the screen
    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_timeout(200)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    shot(page, "08-phone")

    assert not problems, problems
    context.close()
    assert time.monotonic() - t0 < 300


def test_web_page_without_keys_streams_the_result_and_links_the_download(
    open_api: str, browser: Any, tmp_path: Path
) -> None:
    """No keys configured: the <video> streams from the API and the link is the API's URL.
    Also: a refused upload, a dropped file, and Cancel during the upload."""
    portrait = astronaut_png(tmp_path / "astronaut.png")
    short = speech(tmp_path / "hi.wav", "Good morning, how are you today?")
    audio_s = wav_seconds(short)
    text = tmp_path / "notes.mp4"
    text.write_text("this is a text file, not a video\n" * 20)

    context = browser.new_context(viewport={"width": 1024, "height": 800}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(20_000)
    problems = watch(page, open_api)
    # a server (or proxy) without the event stream: the page falls back to polling /status
    page.route("**/api/v1/lipsync/events?*", lambda route: route.fulfill(status=404, body="{}"))
    polls: list[str] = []
    page.on("request", lambda r: polls.append(r.url) if "/lipsync/status?" in r.url else None)
    page.goto(open_api + "/")
    assert page.inner_text("#key-state") == "not set"

    # a file the server refuses at upload: said in words, with the code
    page.set_input_files("#video-file", str(text))
    page.set_input_files("#audio-file", str(short))
    page.click("#submit")
    page.wait_for_selector("#error:not([hidden])")
    error = page.inner_text("#error")
    assert "not supported" in error and "unsupported_media" in error, error
    shot(page, "09-refused")

    # the portrait dragged and dropped onto its box this time
    page.evaluate(
        """([b64, name]) => {
          const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
          const dt = new DataTransfer();
          dt.items.add(new File([bytes], name, {type: "image/png"}));
          const box = document.getElementById("video-drop");
          box.dispatchEvent(new DragEvent("dragover", {dataTransfer: dt, bubbles: true}));
          box.dispatchEvent(new DragEvent("drop", {dataTransfer: dt, bubbles: true}));
        }""",
        [base64.b64encode(portrait.read_bytes()).decode(), portrait.name],
    )
    assert page.evaluate("document.getElementById('video-file').files[0].name") == portrait.name
    page.wait_for_function(
        "() => document.querySelector('#video-preview img')?.naturalWidth === 512"
    )

    # Cancel while the upload is still going: the request is aborted, no job is made
    cdp = context.new_cdp_session(page)
    cdp.send("Network.enable")
    throttle = {"offline": False, "latency": 20, "downloadThroughput": -1}
    cdp.send("Network.emulateNetworkConditions", {**throttle, "uploadThroughput": 100_000})
    page.click("#submit")
    page.wait_for_function("() => document.getElementById('upload-progress').value > 0")
    page.click("#cancel")
    page.wait_for_selector("#job-state[data-state='canceled']")
    assert "upload was stopped" in page.inner_text("#error")
    assert page.locator("#recent li").count() == 0
    cdp.send("Network.emulateNetworkConditions", {**throttle, "uploadThroughput": -1})

    page.click("#submit")
    page.wait_for_selector("#job-state[data-state='succeeded']", timeout=90_000)
    task_id = page.get_attribute("#job-id", "title")
    assert sum(task_id in u for u in polls) >= 2, polls  # followed by polling
    url = f"/api/v1/lipsync/download?task_id={task_id}"
    assert page.get_attribute("#result-video", "src") == url + "#t=0.001"  # its first frame
    assert page.get_attribute("#download", "href") == url
    page.wait_for_function("() => document.getElementById('result-video').readyState >= 2")
    duration = page.evaluate("document.getElementById('result-video').duration")
    assert abs(duration - audio_s) <= 0.2, (duration, audio_s)

    served = httpx.get(open_api + url, timeout=30)
    assert served.status_code == 200
    assert served.headers["content-type"] == "video/mp4"
    assert served.content[4:8] == b"ftyp"
    with page.expect_download() as info:
        page.click("#download")
    assert Path(info.value.path()).read_bytes() == served.content
    shot(page, "10-no-key-done")
    assert not problems, problems
    context.close()
