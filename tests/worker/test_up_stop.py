"""``make up`` (scripts/up.sh) stopped with Ctrl-C while a long job renders.

The script runs for real, on free ports, with its own redis-server and data dir; Ctrl-C is
what a terminal sends: SIGINT to the script's whole process group. Afterwards no process it
started may be left (beat included), the job is back in the queue with no attempt counted,
the next start finishes it (one attempt), nothing stays unacked in the broker, and the logs
of both runs are kept.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from tests.app import service_harness as sh

pytestmark = pytest.mark.slow

STOP_BOUND_S = 15.0
KEY = "up-test-key-1234"


class Up:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "data"
        self.out = root / "up.out"
        self.port, self.redis_port = sh.free_port(), sh.free_port()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("LIPSYNC_")}
        self.env.update(
            LIPSYNC_PORT=str(self.port),
            LIPSYNC_LOCAL_REDIS_PORT=str(self.redis_port),
            LIPSYNC_DATA_DIR=str(self.data),
            LIPSYNC_DEVICE="cpu",
            LIPSYNC_DEFAULT_ENGINE="viseme",
            LIPSYNC_MODELS_DIR=str(sh.REPO / "models"),
            LIPSYNC_API_KEYS=KEY,
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> int:
        """Start up.sh in a session of its own (as a terminal runs it); returns where its
        output of this run starts."""
        mark = self.out.stat().st_size if self.out.exists() else 0
        with self.out.open("ab") as out:
            self.proc = subprocess.Popen(
                ["bash", "scripts/up.sh"], cwd=sh.REPO, env=self.env, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=sh.terminal_signals,  # Ctrl-C as a terminal's shell gets it
            )  # fmt: skip
        return mark

    def output(self, since: int = 0) -> str:
        return self.out.read_text(errors="replace")[since:]

    def wait_output(self, text: str, since: int, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output(since):
            assert self.proc is not None and self.proc.poll() is None, self.output(since)[-3000:]
            assert time.monotonic() < deadline, self.output(since)[-3000:]
            time.sleep(0.2)

    def ctrl_c(self) -> float:
        """SIGINT to the script's process group, as a terminal's Ctrl-C; seconds to exit."""
        assert self.proc is not None
        t0 = time.monotonic()
        os.killpg(self.proc.pid, signal.SIGINT)
        self.proc.wait(timeout=120)
        return time.monotonic() - t0

    def redis(self) -> redis.Redis:
        return redis.Redis(port=self.redis_port, decode_responses=True, socket_timeout=3)

    def left_behind(self) -> list[str]:
        """Processes whose environment names this data dir: anything up.sh started."""
        needle = f"LIPSYNC_DATA_DIR={self.data}\0".encode()
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                if needle in (entry / "environ").read_bytes():
                    cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                    found.append(f"{entry.name} {cmd[:120]}")
            except OSError:
                continue
        return found

    def kill_all(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        for line in self.left_behind():
            os.kill(int(line.split()[0]), signal.SIGKILL)


@pytest.fixture
def up(tmp_path: Path) -> Iterator[Up]:
    runner = Up(tmp_path)
    try:
        yield runner
    finally:
        runner.kill_all()


def _job(r: redis.Redis, job_id: str) -> dict[str, str]:
    return {str(k): str(v) for k, v in r.hgetall(f"lipsync:job:{job_id}").items()}


def _wait_job(up: Up, job_id: str, pred: object, timeout: float = 240) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            job = _job(up.redis(), job_id)
            if job and pred(job):  # type: ignore[operator]
                return job
        except redis.RedisError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"job {job_id}: condition not met\n{up.output()[-3000:]}")


def test_ctrl_c_on_up_hands_the_job_back_and_leaves_no_process(
    up: Up, tmp_path: Path, media: dict[str, Path]
) -> None:
    text = " ".join(["This is a longer piece of speech for the stop test, it goes on."] * 4)
    speech = sh.speech(tmp_path / "long.wav", text, speed=140)
    mark = up.start()
    up.wait_output("Press Ctrl-C", mark)  # the demo job has run
    out = up.output(mark)
    # every curl example carries the key the server wants, the webhook one included
    examples = [line for line in out.splitlines() if line.strip().startswith("curl ")]
    assert len(examples) == 3, out[-3000:]
    assert all(f"-H 'X-API-Key: {KEY}'" in line for line in examples), examples
    assert "up: lip sync" in out, out[-3000:]  # the demo's measurement, after its result
    with httpx.Client(base_url=up.base, timeout=60, headers={"X-API-Key": KEY}) as client:
        resp = sh.push(client, speech, media["astronaut"], engine="viseme")
        assert resp.status_code == 202, resp.text
        job_id = resp.json()["task_id"]
    _wait_job(up, job_id, lambda j: j["state"] == "running" and float(j["progress"]) >= 0.1)

    took = up.ctrl_c()
    out = up.output(mark)
    print(f"\nup: Ctrl-C to exit {took:.2f} s; its report:")
    print("\n".join(line for line in out.splitlines()[-8:] if line.startswith("up: ")))
    assert took < STOP_BOUND_S, out[-3000:]
    assert up.left_behind() == [], out[-3000:]
    assert "up: 1 running job(s) or measurement(s) handed back" in out, out[-3000:]
    assert "SIGKILL" not in out and "no process left behind" in out, out[-3000:]
    # a clean stop is a clean exit: make up then ends without "make: *** Error 130"
    assert up.proc is not None and up.proc.returncode == 0, up.proc.returncode
    # each process's own stop time, not the time spent waiting for the ones before it:
    # beat and the API stop at once, whatever the worker takes
    times = dict(re.findall(r"up: (worker|beat|api) stopped after ([0-9.]+) s", out))
    assert set(times) == {"worker", "beat", "api"}, out[-3000:]
    assert float(times["beat"]) < 3 and float(times["api"]) < 3, times

    mark = up.start()  # the job resumes first (head of the queue), then the demo job
    job = _wait_job(up, job_id, lambda j: j["state"] in ("succeeded", "failed", "canceled"))
    assert (job["state"], job["attempts"]) == ("succeeded", "1"), (job, up.output(mark))
    print(f"up: after the next start: job {job['state']}, attempts {job['attempts']}")
    up.wait_output("Press Ctrl-C", mark)
    up.wait_output("up: lip sync", mark)
    broker = up.redis()  # the broker is db 0 of the same Redis here
    assert broker.hlen("unacked") == 0 and broker.zcard("unacked_index") == 0
    took = up.ctrl_c()
    assert took < STOP_BOUND_S and up.left_behind() == [], up.output(mark)[-3000:]

    logs = up.data / "logs"
    for name in ("worker.log", "beat.log", "api.log"):  # appended, with a line per start
        text = (logs / name).read_text(errors="replace")
        assert text.count("scripts/up.sh") == 2, name
    worker_log = (logs / "worker.log").read_text(errors="replace")
    assert f"job {job_id} handed back to the queue" in worker_log
    assert "beat: Starting" not in worker_log  # beat runs apart, in beat.log
    assert "beat: Starting" in (logs / "beat.log").read_text(errors="replace")
