"""Real processes for the service tests: a private redis-server, a Celery worker, uvicorn.

No mocks: each piece is the real program on a loopback port, configured through the same
``LIPSYNC_*`` variables a deployment uses. Shared by tests/app and tests/worker.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import redis

from tests.app.openapi_check import api_client
from tests.service.loopback_http import Acceptor

if TYPE_CHECKING:
    from service.jobs import JobStore

REPO = Path(__file__).resolve().parents[2]
KEY_A = "test-key-alpha"
KEY_B = "test-key-bravo"
PREFIX = "lipsync"
PYTHON = sys.executable


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tail(path: Path, lines: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def stop(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """Stop one child we started: SIGTERM, then SIGKILL if it lingers."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


@dataclass
class RedisServer:
    port: int
    proc: subprocess.Popen[bytes]
    log: Path
    workdir: Path | None = None
    appendonly: bool = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def db_url(self, db: int) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, decode_responses=True)


def start_redis(workdir: Path, appendonly: bool = False, port: int | None = None) -> RedisServer:
    """A private redis-server on loopback; ``appendonly`` persists to ``workdir`` as in compose."""
    exe = shutil.which("redis-server")
    if exe is None:
        raise RuntimeError("redis-server is not installed")
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    log = workdir / "redis.log"
    args = [
        exe, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir),
        "--save", "", "--appendonly", "yes" if appendonly else "no",
        "--maxmemory-policy", "noeviction", "--logfile", str(log),
    ]  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    server = RedisServer(port, proc, log, workdir, appendonly)

    def answers() -> bool:
        with contextlib.suppress(redis.RedisError):
            return bool(server.client().ping())
        return False

    _wait_up(proc, answers, 10, 0.05, log, "redis-server")
    return server


def _wait_up(
    proc: subprocess.Popen[bytes],
    ready: Callable[[], bool],
    timeout: float,
    pause: float,
    log: Path,
    what: str,
) -> None:
    """Wait until ``ready()`` while ``proc`` lives; else stop it and raise with its log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        if proc.poll() is not None:
            break
        time.sleep(pause)
    stop(proc)
    raise RuntimeError(f"{what} did not come up:\n{tail(log)}")


@contextlib.contextmanager
def private_redis(workdir: Path, appendonly: bool = False) -> Iterator[RedisServer]:
    """A private redis-server (:func:`start_redis`) while the block runs, stopped after."""
    server = start_redis(workdir, appendonly)
    try:
        yield server
    finally:
        stop(server.proc)


def stop_redis(server: RedisServer) -> None:
    """Shut Redis down the way ``docker compose restart`` does (SIGTERM: AOF flushed)."""
    stop(server.proc)


def restart_redis(server: RedisServer) -> RedisServer:
    """Start Redis again on the same port and data dir (it reloads its append-only file)."""
    assert server.workdir is not None
    stop(server.proc)
    fresh = start_redis(server.workdir, server.appendonly, server.port)
    server.proc = fresh.proc
    return server


def service_env(redis_url: str, data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIPSYNC_")}
    env.update(
        {
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
            "LIPSYNC_REDIS_URL": redis_url,
            "LIPSYNC_DATA_DIR": str(data_dir),
            "LIPSYNC_DEVICE": "cpu",
            "LIPSYNC_MODELS_DIR": str(REPO / "models"),
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


@dataclass
class Proc:
    proc: subprocess.Popen[bytes]
    log: Path
    extra: dict[str, str] = field(default_factory=dict)

    def alive(self) -> bool:
        return self.proc.poll() is None


def start_worker(
    env: dict[str, str], logdir: Path, name: str = "test", app: str = "worker.celery_app"
) -> Proc:
    """A real ``celery worker`` (prefork, one pool process); ``app`` may name a test-only app."""
    log = logdir / f"worker-{name}.log"
    args = [
        PYTHON, "-m", "celery", "-A", app, "worker",
        "--pool=prefork", "--concurrency=1", "--loglevel=INFO",
        "-n", f"{name}@%h", "--without-gossip", "--without-mingle",
    ]  # fmt: skip
    with log.open("ab") as out:
        proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    return Proc(proc, log)


def threads_report(pid: int) -> str:
    """What each thread of ``pid`` and of its children is doing, read from /proc (state,
    kernel wait channel, system call): for a test's failure message when a worker stalls."""

    def read(path: Path) -> str:
        try:
            return path.read_text(errors="replace").strip()
        except OSError:
            return "?"

    lines = []
    for p in [pid, *pool_children(pid)]:
        for task in sorted(Path(f"/proc/{p}/task").glob("*"), key=lambda t: int(t.name)):
            stat = read(task / "stat")
            state = stat.rsplit(")", 1)[-1].split()[0] if ")" in stat else "?"
            syscall = read(task / "syscall").split(" ")[0]
            lines.append(
                f"pid {p} tid {task.name} {read(task / 'comm')!r} state {state} "
                f"wchan {read(task / 'wchan')} syscall {syscall}"
            )
    return "\n".join(lines)


def pool_children(pid: int) -> list[int]:
    """Pids of the pool processes of the worker whose main process is ``pid``."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(x) for x in text.split()]


def wait_worker(
    redis_url: str,
    prefix: str,
    proc: Proc,
    timeout: float = 60.0,
    name: str | None = None,
    since: float = 0.0,
) -> None:
    """Wait for a worker heartbeat (of node ``name`` sent after ``since``, when given)."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(redis.RedisError):
            if name is None and client.zcard(f"{prefix}:workers") > 0:
                return
            if name is not None:
                node = f"{name}@{socket.gethostname()}"
                beat = client.zscore(f"{prefix}:workers", node)
                if beat is not None and beat >= since:
                    return
        if not proc.alive():
            break
        time.sleep(0.2)
    raise RuntimeError(f"worker did not come up:\n{tail(proc.log)}")


def start_api(env: dict[str, str], logdir: Path, name: str = "api") -> tuple[Proc, str]:
    port = free_port()
    log = logdir / f"{name}.log"
    args = [
        PYTHON, "-m", "uvicorn", "--factory", "app.main:create_app",
        "--host", "127.0.0.1", "--port", str(port), "--log-level", "info",
    ]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
        return False

    _wait_up(proc, healthy, 30, 0.1, log, "API")
    return Proc(proc, log), base


@contextlib.contextmanager
def running(*procs: Proc) -> Iterator[None]:
    try:
        yield
    finally:
        for p in procs:
            stop(p.proc)


@contextlib.contextmanager
def api_beside(env: dict[str, str], logdir: Path, name: str, **extra: str) -> Iterator[str]:
    """Another API process on a running deployment's ``env`` (its Redis, data dir and
    workers) changed by ``extra``: its base URL while the block runs, stopped after."""
    api, base = start_api({**env, **extra}, logdir, name=name)
    with running(api):
        yield base


def push(
    client: httpx.Client,
    audio: Path,
    video: Path,
    headers: dict[str, str] | None = None,
    **fields: Any,
) -> httpx.Response:
    with audio.open("rb") as a, video.open("rb") as v:
        files = {"audio": (audio.name, a), "video": (video.name, v)}
        data = {k: str(val) for k, val in fields.items()}
        return client.post("/api/v1/lipsync/push", files=files, data=data, headers=headers)


def wait_for(
    client: httpx.Client,
    task_id: str,
    states: tuple[str, ...] = ("succeeded", "failed", "canceled"),
    timeout: float = 180.0,
    min_progress: float = -1.0,
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        resp = client.get("/api/v1/lipsync/status", params={"task_id": task_id})
        assert resp.status_code == 200, resp.text
        body = resp.json()
        if body["state"] in states and body["progress"] >= min_progress:
            return body
        time.sleep(0.1)
    raise AssertionError(f"task {task_id} did not reach {states}: last status {body}")


@dataclass
class Service:
    """One isolated deployment on a shared redis-server: its own key prefix, broker db and
    data dir, so several can share one Redis without taking each other's jobs. Workers can
    be killed (``kill -9``) and started again; the API is optional."""

    redis: RedisServer
    root: Path
    env: dict[str, str]
    prefix: str
    workers: dict[str, Proc] = field(default_factory=dict)
    api: Proc | None = None
    base_url: str = ""

    @property
    def data_dir(self) -> Path:
        return Path(self.env["LIPSYNC_DATA_DIR"])

    def store(self) -> JobStore:
        from service.jobs import JobStore

        return JobStore.from_url(self.redis.url, self.prefix, 3600)

    def start_worker(self, name: str = "w1", app: str = "worker.celery_app") -> Proc:
        since = time.time() - 1.0
        proc = start_worker(self.env, self.root, name=f"{self.prefix}-{name}", app=app)
        self.workers[name] = proc
        wait_worker(self.redis.url, self.prefix, proc, name=f"{self.prefix}-{name}", since=since)
        return proc

    def kill_worker(self, name: str = "w1") -> None:
        """``kill -9`` the worker's main process; its pool process dies with it (PDEATHSIG)."""
        proc = self.workers[name]
        children = pool_children(proc.proc.pid)
        proc.proc.kill()
        proc.proc.wait(timeout=10)
        deadline = time.monotonic() + 10
        while any(Path(f"/proc/{c}").exists() for c in children):
            assert time.monotonic() < deadline, f"pool processes {children} outlived the worker"
            time.sleep(0.05)

    def redeliver_unacked(self) -> int:
        """Do now what the broker does once the visibility timeout has passed: put every
        delivered but unacknowledged message back on the queue (as kombu's
        ``restore_visible`` does). Returns how many messages were put back."""
        import json

        with redis.Redis.from_url(self.env["LIPSYNC_BROKER_URL"]) as r:
            unacked = r.hgetall("unacked")
            for tag, raw in unacked.items():
                message, _exchange, routing_key = json.loads(raw)
                message.setdefault("headers", {})["redelivered"] = True
                pipe = r.pipeline()
                pipe.lpush(routing_key or "lipsync", json.dumps(message))
                pipe.hdel("unacked", tag)
                pipe.zrem("unacked_index", tag)
                pipe.execute()
        return len(unacked)

    def settings(self) -> Any:
        """The service's settings for this deployment (its Redis, broker, prefix, data)."""
        from service.settings import Settings

        return Settings(
            redis_url=self.redis.url,
            broker_url=self.env["LIPSYNC_BROKER_URL"],
            redis_prefix=self.prefix,
            data_dir=self.data_dir,
        )

    def start_api(self, **extra: str) -> str:
        self.api, self.base_url = start_api({**self.env, **extra}, self.root, name="api")
        return self.base_url

    def client(self) -> httpx.Client:
        """A client whose every answer is checked against the API's OpenAPI document."""
        return api_client(self.base_url, timeout=60)

    def worker_log(self) -> str:
        return "\n".join(p.log.read_text(errors="replace") for p in self.workers.values())

    def broker_keys(self) -> dict[str, int]:
        """What the broker holds: unacked messages (hash and index) and queued ones."""
        from service.queue import QUEUE

        with redis.Redis.from_url(self.env["LIPSYNC_BROKER_URL"]) as b:
            return {
                "unacked": int(b.hlen("unacked")),
                "unacked_index": int(b.zcard("unacked_index")),
                "queue": int(b.llen(QUEUE)),
            }

    def wait_broker_empty(self, timeout: float = 10.0) -> None:
        """Nothing unacked and nothing queued (a task's ack follows its last write)."""
        deadline = time.monotonic() + timeout
        while self.broker_keys() != {"unacked": 0, "unacked_index": 0, "queue": 0}:
            assert time.monotonic() < deadline, (self.broker_keys(), self.logs())
            time.sleep(0.1)

    def flush_broker(self) -> None:
        """Empty this deployment's broker database (one that other tests share)."""
        with redis.Redis.from_url(self.env["LIPSYNC_BROKER_URL"]) as b:
            b.flushdb()

    def wait_log(self, needle: str, timeout: float = 60.0) -> None:
        """Wait until a worker has logged ``needle`` (a job's end is logged just after it is
        recorded: its record can be read first)."""
        deadline = time.monotonic() + timeout
        while needle not in self.worker_log():
            assert time.monotonic() < deadline, f"{needle!r} not logged\n{self.logs()}"
            time.sleep(0.1)

    def logs(self) -> str:
        parts = [f"--- {n} ---\n{tail(p.log)}" for n, p in self.workers.items()]
        if self.api is not None:
            lines = self.api.log.read_text(errors="replace").splitlines()
            quiet = [line for line in lines if "GET /api/v1/lipsync/status" not in line]
            parts.append("--- api ---\n" + "\n".join(quiet[-40:]))
        return "\n".join(parts)

    def close(self) -> None:
        for proc in [*self.workers.values(), *([self.api] if self.api else [])]:
            stop(proc.proc)


@dataclass(frozen=True)
class Deployment:
    """What a test module declares as ``DEPLOYMENT`` to get its own deployment from the
    ``svc`` fixture (tests/app/conftest.py): a :func:`service` on broker db ``broker_db``
    with ``env``, its worker started unless ``worker`` is False, then its API with
    ``api_env`` added."""

    broker_db: int
    env: dict[str, str] = field(default_factory=dict)
    worker: bool = True
    api_env: dict[str, str] = field(default_factory=dict)


@contextlib.contextmanager
def service(
    redis_server: RedisServer, root: Path, broker_db: int, **extra: str
) -> Iterator[Service]:
    """An isolated :class:`Service` (nothing started yet); everything is stopped at the end."""
    prefix = f"s{os.urandom(4).hex()}"
    root.mkdir(parents=True, exist_ok=True)
    env = service_env(
        redis_server.url,
        root / "data",
        LIPSYNC_REDIS_PREFIX=prefix,
        LIPSYNC_BROKER_URL=redis_server.db_url(broker_db),
        **extra,
    )
    svc = Service(redis_server, root, env, prefix)
    try:
        yield svc
    finally:
        svc.close()


def job_executions(log: str, task_id: str) -> int:
    """How many times a worker ran the pipeline for ``task_id`` to an end (its log lines)."""
    import re

    ends = re.findall(rf"job {task_id} (succeeded|failed|canceled)\b", log)
    return len(ends)


class Listener(Acceptor):
    """A TCP listener on loopback that records every connection made to it (none expected):
    hostile files point their URLs here, so a connection attempt is caught, not sent out."""

    def __init__(self) -> None:
        self.connections: list[tuple[str, int]] = []
        super().__init__("127.0.0.1")

    def took(self, conn: socket.socket, peer: Any) -> None:
        self.connections.append(peer)
        conn.close()


def terminal_signals() -> None:
    """For a child that must act on SIGINT / SIGQUIT as under a terminal (``preexec_fn``):
    a test run started in the background of a non-interactive shell (``./.ci/run &``)
    inherits both ignored, and a shell script cannot trap a signal ignored at its start."""
    for sig in (signal.SIGINT, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_DFL)


@dataclass
class SyscallTrace:
    """``strace`` attached to running processes (all threads, and every child they start):
    which files they open and which addresses they connect to."""

    proc: subprocess.Popen[bytes]
    out: Path

    @classmethod
    def attach(cls, pids: list[int], out: Path) -> SyscallTrace:
        exe = shutil.which("strace")
        if exe is None:
            raise RuntimeError("strace is not installed")
        args = [exe, "-f", "-qq", "-s", "256", "-e", "trace=connect,open,openat,execve",
                "-o", str(out)]  # fmt: skip
        for pid in pids:
            args += ["-p", str(pid)]
        proc = subprocess.Popen(
            args,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            preexec_fn=terminal_signals,  # its SIGINT detaches it
        )
        time.sleep(1.0)  # attaching to every thread takes a moment
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else b""
        return cls(proc, out)

    def stop(self) -> str:
        """Detach and return the trace. On a loaded machine detaching from every thread of
        the worker's pool can outlast a fixed wait (one CI run: over 15 s); then strace is
        made to end, and the kernel detaches its tracees, which go on. What it had written
        up to then is the trace."""
        for sig, wait_s in ((signal.SIGINT, 30.0), (signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
            if self.proc.poll() is not None:
                break
            self.proc.send_signal(sig)  # SIGINT detaches; the traced processes go on
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=wait_s)
        return self.out.read_text(errors="replace")


def traced_connects(trace: str) -> list[str]:
    """Every connect() in a trace, as ``family address`` text."""
    import re

    found = []
    for line in trace.splitlines():
        if " connect(" not in line:
            continue
        port = re.search(r"sin6?_port=htons\((\d+)\)", line)
        addr = re.search(r'(?:inet_addr|inet_pton\(AF_INET6, )\("?([^")]+)"?\)', line)
        path = re.search(r'sun_path="([^"]*)"', line)
        if path:
            found.append(f"unix {path.group(1)}")
        elif port:
            found.append(f"inet {addr.group(1) if addr else '?'}:{port.group(1)}")
        else:
            found.append(line.split(" ", 1)[-1][:120])
    return found


def traced_opens(trace: str) -> list[str]:
    """Every path passed to open()/openat() in a trace."""
    import re

    return re.findall(r'open(?:at)?\((?:(?:[A-Z_]+|\d+), )?"([^"]*)"', trace)


# --- media --------------------------------------------------------------------------------


def speech(path: Path, text: str, speed: int = 175) -> Path:
    """Real synthetic speech from espeak-ng."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise RuntimeError("espeak-ng is not installed")
    subprocess.run([exe, "-s", str(speed), "-w", str(path), text], check=True)
    return path


def astronaut_png(path: Path) -> Path:
    from PIL import Image

    from tests.media_factory import astronaut

    Image.fromarray(astronaut()).save(path)
    return path


def gradient_png(path: Path, size: int = 256) -> Path:
    import numpy as np
    from PIL import Image

    ramp = np.linspace(0, 255, size, dtype=np.uint8)
    img = np.stack([np.tile(ramp, (size, 1)), np.tile(ramp[:, None], (1, size)),
                    np.full((size, size), 128, np.uint8)], axis=-1)  # fmt: skip
    Image.fromarray(img).save(path)
    return path


def face_video(path: Path, seconds: float = 2.0, fps: int = 25) -> Path:
    """An MP4 (moov atom at the end) of the astronaut image, for truncation tests."""
    import av
    import numpy as np

    from tests.media_factory import astronaut

    frame = astronaut()[:256, 128:384].copy()
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 256, 256, "yuv420p"
        for i in range(int(seconds * fps)):
            shifted = np.roll(frame, i % 4, axis=1)
            for packet in stream.encode(av.VideoFrame.from_ndarray(shifted, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def wav_seconds(path: Path) -> float:
    import wave

    with wave.open(str(path)) as w:
        return w.getnframes() / float(w.getframerate())
