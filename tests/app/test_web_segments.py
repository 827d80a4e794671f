"""The web page's second speech file: chosen with its start time, it is pushed as
``audio_1`` with two segments (the first speech until the second starts, the second
for its own length), and the job runs; without a start time the page explains."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from tests.app.service_harness import KEY_A, astronaut_png, speech, wait_for, wav_seconds


def test_a_second_speech_file_with_its_start_time(
    stack: Any,
    browser: Any,
    tmp_path: Path,
) -> None:
    portrait = astronaut_png(tmp_path / "astronaut.png")
    first = speech(tmp_path / "first.wav", "Hello there, this is the first voice.")
    second = speech(tmp_path / "second.wav", "And this is the second one.")
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.add_init_script(
        f"localStorage.setItem('lipsync.apiKey', {json.dumps(json.dumps(KEY_A))})"
    )
    page = context.new_page()
    page.set_default_timeout(20_000)
    page.goto(stack.base_url + "/")
    page.wait_for_selector("#submit")
    page.set_input_files("#video-file", str(portrait))
    page.set_input_files("#audio-file", str(first))
    page.click("#second-speech summary")
    page.set_input_files("#audio2-file", str(second))
    page.click("#submit")  # no start time yet
    assert "when the second speech starts" in page.inner_text("#form-error")
    page.fill("#audio2-start", "1.5")
    page.click("#submit")
    page.wait_for_function("() => document.getElementById('job-id').title.length === 32")
    task_id = page.get_attribute("#job-id", "title")
    assert task_id
    with httpx.Client(base_url=stack.base_url, headers={"X-API-Key": KEY_A}) as c:
        status = wait_for(c, task_id)
    assert status["state"] == "succeeded", status
    # a still is made as long as the last segment: the second speech from 1.5 s to its end
    expected = (1.5 + wav_seconds(second)) * 25
    assert abs(status["result"]["frames"] - expected) <= 2, status["result"]
    context.close()
