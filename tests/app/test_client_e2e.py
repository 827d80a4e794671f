"""lipsync.client and ``lipsync remote run`` against the real stack (uvicorn, Celery, Redis).

wait() follows the server's event stream (``GET /events``), and delete() removes the job
(``DELETE /jobs/{task_id}``): both routes are part of the API, and the tests fail, never
skip, when either is missing.
"""

from __future__ import annotations

import asyncio
import os
import pty
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import httpx
import pytest

from lipsync.client import PREFIX, AsyncClient, Client, JobStatus, LipsyncAPIError
from tests.app.service_harness import KEY_A, KEY_B

pytestmark = pytest.mark.slow

LIPSYNC = [sys.executable, "-m", "lipsync.cli"]


def test_the_api_has_the_routes_the_client_calls(stack: Any) -> None:
    """The live API's OpenAPI schema offers every route the client uses."""
    schema = httpx.get(f"{stack.base_url}/openapi.json", timeout=30).json()
    routes = {path: {m.upper() for m in ops} for path, ops in schema["paths"].items()}
    for method, path in (
        ("POST", "/push"),
        ("GET", "/status"),
        ("POST", "/terminate"),
        ("GET", "/download"),
        ("GET", "/events"),
        ("DELETE", "/jobs/{task_id}"),
    ):
        assert method in routes.get(PREFIX + path, set()), f"{method} {PREFIX}{path}"


def _check_deleted(stack: Any, task_id: str) -> None:
    """Nothing of a deleted job is left on the server: no result, no uploads, no work dir."""
    data = stack.data_dir
    left = [
        data / "results" / f"{task_id}.mp4",
        data / "uploads" / task_id,
        data / "work" / task_id,
    ]
    assert [p for p in left if p.exists()] == [], stack.logs()


def _decode(path: Path) -> tuple[int, bool]:
    """(video frames decoded, has an audio stream)."""
    with av.open(str(path)) as container:
        has_audio = bool(container.streams.audio)
        frames = sum(1 for _ in container.decode(video=0))
    return frames, has_audio


def _check_progress(seen: list[tuple[str, float]]) -> None:
    fractions = [f for _, f in seen]
    assert fractions, "the progress callback was never called"
    assert fractions == sorted(fractions), f"progress went down: {seen}"
    assert fractions[-1] == 1.0
    assert len(seen) >= 2, seen


def _upload_dirs(stack: Any) -> set[Path]:
    return set((stack.data_dir / "uploads").iterdir())


@pytest.fixture()
def silent_port() -> Iterator[socket.socket]:
    """A listening socket nobody accepts on: a client that connects leaves a connection."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    sock.setblocking(False)
    try:
        yield sock
    finally:
        sock.close()


def _no_connection(sock: socket.socket) -> bool:
    try:
        conn, _ = sock.accept()
    except BlockingIOError:
        return True
    conn.close()
    return False


def test_sync_submit_wait_download_delete(
    stack: Any, media: dict[str, Path], tmp_path: Path
) -> None:
    seen: list[tuple[str, float]] = []
    with Client(stack.base_url, api_key=KEY_A, timeout=60) as client:
        # long speech: the render lasts more than one event poll (the result no longer
        # waits for its measurement, which used to hold a stage of its own for seconds)
        job = client.submit(
            video=media["astronaut"], audio=media["speech_long"], engine="retrieval"
        )
        assert job.status_url and job.task_id in job.status_url
        final = job.wait(progress=lambda stage, f: seen.append((stage, f)), timeout=300)
        assert isinstance(final, JobStatus) and final.state == "succeeded", stack.logs()
        assert final.result and final.result["file"] == f"{job.task_id}.mp4"
        assert client._s.events is True, "wait() followed the event stream, not polls"
        _check_progress(seen)
        assert {s for s, _ in seen} - {"queued", "starting", "done"}, seen

        out = job.download(tmp_path / "out.mp4")
        frames, has_audio = _decode(out)
        assert frames > 10 and has_audio
        assert not list(tmp_path.glob(".*.part"))
        # the measurement follows the result
        assert final.quality is not None and final.quality.state in ("pending", "running")
        quality = job.wait_quality(timeout=300)
        assert quality is not None and quality.state == "ready", (quality, stack.logs())
        assert quality.metrics is not None and quality.metrics["face_found_rate"] > 0.9

        # another key sees nothing of it
        with Client(stack.base_url, api_key=KEY_B) as other:
            with pytest.raises(LipsyncAPIError) as err:
                other.job(job.task_id).status()
            assert (err.value.status, err.value.code) == (404, "not_found")

        # a finished job (its measurement too) cannot be canceled: the API's 409, typed
        with pytest.raises(LipsyncAPIError) as err:
            job.cancel()
        assert (err.value.status, err.value.code) == (409, "finished")

        job.delete()
        with pytest.raises(LipsyncAPIError) as err:
            job.status()
        assert (err.value.status, err.value.code) == (404, "not_found")
        with pytest.raises(LipsyncAPIError) as err:
            job.download(tmp_path / "again.mp4")
        assert err.value.status == 404
        _check_deleted(stack, job.task_id)


def test_async_submit_wait_download_delete(
    stack: Any, media: dict[str, Path], tmp_path: Path
) -> None:
    seen: list[tuple[str, float]] = []

    async def progress(stage: str, fraction: float) -> None:
        await asyncio.sleep(0)
        seen.append((stage, fraction))

    async def scenario() -> tuple[JobStatus, Path, str]:
        async with AsyncClient(stack.base_url + PREFIX, api_key=KEY_A) as client:
            job = await client.submit(
                video=media["astronaut"], audio=media["speech"], pads=(0, 12, 0, 0)
            )
            final = await job.wait(progress=progress, timeout=300)
            out = await job.download(tmp_path / "async.mp4")
            await job.delete()
            with pytest.raises(LipsyncAPIError) as err:
                await job.status()
            assert (err.value.status, err.value.code) == (404, "not_found")
            assert client._s.events is True, "wait() followed the event stream, not polls"
            return final, out, job.task_id

    final, out, task_id = asyncio.run(scenario())
    assert final.state == "succeeded", stack.logs()
    _check_progress(seen)
    frames, has_audio = _decode(out)
    assert frames > 10 and has_audio
    _check_deleted(stack, task_id)


def test_bad_option_fails_before_any_request(
    stack: Any, media: dict[str, Path], silent_port: socket.socket
) -> None:
    before = _upload_dirs(stack)
    bad: list[dict[str, Any]] = [
        {"engine": "no-such-engine"},
        {"max_size": 10},
        {"pads": (1, 2)},
        {"face_index": 1, "face_point": (3, 4)},
        {"crf": 20},  # not a push option
        {"enhancer": "onnx:../../etc/x.onnx"},  # a path is fine locally, never in a push
    ]
    port = silent_port.getsockname()[1]
    for base in (stack.base_url, f"http://127.0.0.1:{port}"):
        with Client(base, api_key=KEY_A) as client:
            for options in bad:
                with pytest.raises(LipsyncAPIError) as err:
                    client.submit(video=media["astronaut"], audio=media["speech"], **options)
                assert err.value.status == 0, options
                assert err.value.code == "invalid_option", options
                assert err.value.field in options, (options, err.value.field)
            with pytest.raises(LipsyncAPIError) as err:  # neither file nor URL
                client.submit(audio=media["speech"])
            assert (err.value.status, err.value.code, err.value.field) == (
                0,
                "missing_field",
                "video",
            )
    assert _no_connection(silent_port), "the client connected although it refused the push"
    assert not _upload_dirs(stack) - before  # (a measured job's uploads may go meanwhile)


def test_wrong_key_is_a_typed_401(stack: Any, media: dict[str, Path]) -> None:
    for key in ("wrong-key", None):
        with Client(stack.base_url, api_key=key) as client:
            with pytest.raises(LipsyncAPIError) as err:
                client.submit(video=media["astronaut"], audio=media["speech"])
            assert err.value.status == 401 and err.value.code == "unauthorized", err.value
            assert err.value.message and err.value.field is None
            assert str(err.value).startswith("unauthorized: ")


def _remote_run(stack: Any, media: dict[str, Path], out: Path, *extra: str, key: str | None):
    env = {k: v for k, v in os.environ.items() if k != "LIPSYNC_API_KEY"}
    if key is not None:
        env["LIPSYNC_API_KEY"] = key
    args = ["remote", "run", "--server", stack.base_url, "--video", str(media["astronaut"])]
    args += ["--audio", str(media["speech"]), "-o", str(out), *extra]
    return subprocess.run([*LIPSYNC, *args], capture_output=True, text=True, timeout=400, env=env)


def test_remote_run_cli_end_to_end(stack: Any, media: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "remote.mp4"
    proc = _remote_run(stack, media, out, "--sync-mode", "loop", "--timeout", "300", key=KEY_A)
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}\n{stack.logs()}"
    assert f"wrote {out}" in proc.stdout
    assert "[#" not in proc.stderr, "no progress bar when stderr is not a terminal"
    frames, has_audio = _decode(out)
    assert frames > 10 and has_audio


def test_remote_run_cli_makes_the_output_folder_and_shows_the_measurement(
    stack: Any, media: dict[str, Path], tmp_path: Path
) -> None:
    """``-o missing/dir/out.mp4``: the folder is made before the upload (it was an
    internal_error after the whole render); the lip-sync numbers follow the download."""
    out = tmp_path / "missing" / "dir" / "out.mp4"
    proc = _remote_run(stack, media, out, "--timeout", "300", key=KEY_A)
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}\n{stack.logs()}"
    assert f"wrote {out}" in proc.stdout and _decode(out)[0] > 10
    assert "measuring the lip sync" in proc.stdout
    assert "lip sync: " in proc.stdout and "face found" in proc.stdout, proc.stdout
    assert proc.stdout.index("wrote") < proc.stdout.index("lip sync:")

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    before = _upload_dirs(stack)
    proc = _remote_run(stack, media, blocker / "out.mp4", key=KEY_A)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error [output_error]: "), proc.stderr
    assert not _upload_dirs(stack) - before, "it uploaded although the output cannot be written"

    proc = _remote_run(stack, media, tmp_path / "quiet.mp4", "--no-evaluate", key=KEY_A)
    assert proc.returncode == 0, proc.stderr
    assert "lip sync not measured: skipped (evaluate=false)" in proc.stdout, proc.stdout


def test_remote_run_cli_errors(stack: Any, media: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "nope.mp4"
    proc = _remote_run(stack, media, out, "--api-key", "wrong-key", key=KEY_A)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error [unauthorized]: "), proc.stderr
    assert "Traceback" not in proc.stderr and not out.exists()

    proc = _remote_run(stack, media, out, key=None)  # no key anywhere
    assert proc.returncode == 2 and "error [unauthorized]" in proc.stderr, proc.stderr


def test_remote_run_cli_progress_bar_on_a_terminal(
    stack: Any, media: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "tty.mp4"
    master, slave = pty.openpty()
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:  # EIO: the other end is closed
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    env = {**os.environ, "LIPSYNC_API_KEY": KEY_A}
    args = ["remote", "run", "--server", stack.base_url, "--video", str(media["astronaut"])]
    args += ["--audio", str(media["speech"]), "-o", str(out)]
    try:
        proc = subprocess.run(
            [*LIPSYNC, *args], stdout=subprocess.PIPE, stderr=slave, timeout=400, env=env
        )
    finally:
        os.close(slave)
    reader.join(10)
    os.close(master)
    bar = b"".join(chunks).decode(errors="replace")
    assert proc.returncode == 0, f"{bar}\n{stack.logs()}"
    assert "[" + "#" * 30 + "] 100%" in bar, bar
    assert _decode(out)[0] > 10
