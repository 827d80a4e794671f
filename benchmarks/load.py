"""Load on loopback: status polls at a fixed rate plus large pushes, against a real API.

    python -m benchmarks.load                       # 200 polls/s for 60 s + 20 pushes of
                                                    # 20 MB; writes docs/RELIABILITY.md
    python -m benchmarks.load --smoke --doc /tmp/R.md --json /tmp/load.json   # a few seconds
    python -m benchmarks.load --pollers 30          # 30 pollers: idle, then while one job
                                                    # renders (worker at nice 10, then at 0)

It starts its own private redis-server and the API (uvicorn) on 127.0.0.1, as the service
tests do; no worker runs, so every push stays queued. The clients are asyncio loops with
httpx: the poller fires status polls open-loop on a fixed schedule (a slow answer does not
slow the offered rate; at most ``--concurrency`` in flight) at the jobs pushed so far, while
a second process sends the pushes evenly over the run (so that building 20 MB bodies does
not stall the poller's own loop and count as server latency). The queue depth limit is
set to the number of pushes, so one more push at the end must be answered 429 with
``Retry-After``. Latency is measured per request from sending to the full answer. Only
loopback addresses are used and every loop is bounded in count and time.

``--pollers N`` measures something else: N clients each polling one job's status in a loop
(one request, then ``POLL_INTERVAL_S``, then the next), first with no worker running, then
while a worker renders one long job on the same machine: with its pool processes at the
priority the service gives them (``worker/tasks.py``: nice 10) and with that turned off
(``LIPSYNC_WORKER_NICE=0``). Each window starts once the job renders and ends before it
does (the job must still be running at the end, else the window is reported as cut short).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing
import os
import queue
import re
import sys
import tempfile
import time
import wave
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from benchmarks.common import ROOT, machine

BEGIN, END = "<!-- load:begin -->", "<!-- load:end -->"
RENDER_BEGIN, RENDER_END = "<!-- load-render:begin -->", "<!-- load-render:end -->"
POLL_INTERVAL_S = 0.1  # each poller's pause between an answer and its next poll


@dataclass
class Plan:
    polls_per_s: float = 200.0
    seconds: float = 60.0
    pushes: int = 20
    push_mb: float = 20.0
    concurrency: int = 64
    p99_target_ms: float = 50.0


@dataclass
class Figures:
    plan: dict[str, Any]
    machine: dict[str, str]
    polls: int = 0
    poll_errors: int = 0
    poll_rate: float = 0.0
    latency_ms: dict[str, float] = field(default_factory=dict)
    pushes: int = 0
    push_errors: int = 0
    push_bytes: int = 0
    push_s: dict[str, float] = field(default_factory=dict)
    over_depth_status: int = 0
    over_depth_retry_after: str = ""
    wall_s: float = 0.0
    cpu_cores: dict[str, float] = field(default_factory=dict)  # average cores used, by whom
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (
            self.poll_errors == 0
            and self.push_errors == 0
            and self.over_depth_status == 429
            and self.over_depth_retry_after.isdigit()
        )


def speech_wav(path: Path, megabytes: float) -> Path:
    """A WAV of about ``megabytes`` (44.1 kHz stereo: 20 MB is about 2 minutes)."""
    rate = 44100
    frames = int(megabytes * 1024 * 1024 / 4)
    t = np.arange(frames) / rate
    tone = np.sin(2 * np.pi * 180 * t) * (0.3 + 0.2 * np.sin(2 * np.pi * 3 * t)) * 12000
    samples = np.repeat(tone.astype("<i2")[:, None], 2, axis=1)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())
    return path


def percentile(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


async def _poll(
    client: httpx.AsyncClient, request: httpx.Request, lat: list[float], errors: list[str]
) -> None:
    t0 = time.perf_counter()
    try:
        resp = await client.send(request)
        if resp.status_code != 200:
            errors.append(f"status {resp.status_code}: {resp.text[:120]}")
    except httpx.HTTPError as exc:
        errors.append(f"status {type(exc).__name__}: {exc}")
    lat.append((time.perf_counter() - t0) * 1000)


async def _push(client: httpx.AsyncClient, audio: bytes, image: bytes) -> tuple[int, str, float]:
    """One push: (status, task id or error text, seconds)."""
    t0 = time.perf_counter()
    files = {"audio": ("speech.wav", audio), "video": ("face.png", image)}
    try:
        resp = await client.post("/api/v1/lipsync/push", files=files, timeout=120)
    except httpx.HTTPError as exc:
        return 0, f"push {type(exc).__name__}: {exc}", time.perf_counter() - t0
    took = time.perf_counter() - t0
    if resp.status_code != 202:
        return resp.status_code, f"push {resp.status_code}: {resp.text[:200]}", took
    return 202, str(resp.json()["task_id"]), took


def _pusher(base_url: str, plan: dict[str, Any], start_at: float, files: tuple[str, str],
            out: Any) -> None:  # fmt: skip
    """Child process: the pushes, spread evenly over the run from ``start_at`` (wall clock),
    so that building and sending 20 MB bodies never stalls the poller's event loop."""
    audio, image = Path(files[0]).read_bytes(), Path(files[1]).read_bytes()

    async def go() -> None:
        gap = plan["seconds"] / plan["pushes"]
        async with httpx.AsyncClient(base_url=base_url, timeout=120) as client:
            for i in range(1, plan["pushes"]):
                await asyncio.sleep(max(0.0, start_at + i * gap - time.time()))
                out.put(("push", *await _push(client, audio, image)))

    asyncio.run(go())
    out.put(("done", time.process_time()))


async def drive(base_url: str, plan: Plan, audio_path: Path, image_path: Path) -> Figures:
    figures = Figures(plan=asdict(plan), machine=machine())
    poll_lat: list[float] = []
    poll_errors: list[str] = []
    push_took: list[float] = []
    push_errors: list[str] = []
    audio, image = audio_path.read_bytes(), image_path.read_bytes()
    limits = httpx.Limits(max_connections=plan.concurrency + 4)
    async with httpx.AsyncClient(base_url=base_url, timeout=30, limits=limits) as client:
        status, first, took = await _push(client, audio, image)
        if status != 202:
            figures.errors = [first]
            return figures
        push_took.append(took)

        def status_of(task_id: str) -> httpx.Request:
            path = "/api/v1/lipsync/status"
            return client.build_request("GET", path, params={"task_id": task_id})

        targets = [status_of(first)]
        gate = asyncio.Semaphore(plan.concurrency)
        polls: set[asyncio.Task[None]] = set()

        async def gated_poll(request: httpx.Request) -> None:
            async with gate:
                await _poll(client, request, poll_lat, poll_errors)

        ctx = multiprocessing.get_context("spawn")
        results = ctx.Queue()
        start_at = time.time() + 2.0  # the pusher process needs a moment to start
        pusher = ctx.Process(
            target=_pusher,
            args=(base_url, asdict(plan), start_at, (str(audio_path), str(image_path)), results),
        )
        pusher.start()
        pusher_cpu = -1.0  # set by its "done" message

        def collect() -> bool:
            """Take in what the pusher reported; True once it is done."""
            nonlocal pusher_cpu
            while pusher_cpu < 0:
                try:
                    item = results.get_nowait()
                except queue.Empty:
                    return False
                if item[0] == "done":
                    pusher_cpu = float(item[1])
                    break
                _, code, text, seconds = item
                if code == 202:
                    push_took.append(seconds)
                    targets.append(status_of(text))
                else:
                    push_errors.append(text)
            return True

        await asyncio.sleep(max(0.0, start_at - time.time()))
        total = int(plan.polls_per_s * plan.seconds)
        interval = 1.0 / plan.polls_per_s
        start = time.perf_counter()
        for i in range(total):
            await asyncio.sleep(max(0.0, start + i * interval - time.perf_counter()))
            task = asyncio.create_task(gated_poll(targets[i % len(targets)]))
            polls.add(task)
            task.add_done_callback(polls.discard)
            if i % 20 == 0:
                collect()
        if polls:
            await asyncio.wait(polls, timeout=60)
        deadline = time.monotonic() + 300
        while not collect() and time.monotonic() < deadline:
            if not pusher.is_alive() and results.empty():
                push_errors.append(f"the pusher process ended with exit code {pusher.exitcode}")
                break
            await asyncio.sleep(0.1)
        pusher.join(timeout=30)
        results.close()
        results.join_thread()
        figures.wall_s = time.perf_counter() - start
        figures.cpu_cores["pusher process"] = max(pusher_cpu, 0.0)  # seconds; per core in run()
        # the queue now holds exactly the configured depth: one more push is refused
        files = {"audio": ("speech.wav", audio), "video": ("face.png", image)}
        over = await client.post("/api/v1/lipsync/push", files=files, timeout=120)
        figures.over_depth_status = over.status_code
        figures.over_depth_retry_after = over.headers.get("retry-after", "")

    figures.polls = len(poll_lat)
    figures.poll_errors = len(poll_errors)
    figures.poll_rate = len(poll_lat) / figures.wall_s if figures.wall_s else 0.0
    figures.latency_ms = {
        "p50": percentile(poll_lat, 50),
        "p90": percentile(poll_lat, 90),
        "p99": percentile(poll_lat, 99),
        "max": max(poll_lat, default=math.nan),
    }
    figures.pushes = len(push_took)
    figures.push_errors = len(push_errors)
    figures.push_bytes = len(audio) + len(image)
    figures.push_s = {
        "p50": percentile(push_took, 50),
        "max": max(push_took, default=math.nan),
    }
    figures.errors = (poll_errors + push_errors)[:20]
    return figures


def _cpu_s(pid: int) -> float:
    """CPU seconds of a process and of its waited-for children (the API's probes)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def _busy_s() -> float:
    """CPU seconds the whole machine spent busy (all processes, all cores)."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = (
        int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
    )
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def run(plan: Plan, workdir: Path) -> Figures:
    """Start Redis and the API on loopback, drive the load, stop everything."""
    from tests.app import service_harness as sh
    from tests.media_factory import astronaut, write_png

    workdir.mkdir(parents=True, exist_ok=True)
    audio = speech_wav(workdir / "speech.wav", plan.push_mb)
    image = write_png(workdir / "face.png", astronaut())
    server = sh.start_redis(workdir / "redis")
    try:
        extra = {
            "LIPSYNC_MAX_QUEUE_DEPTH": str(plan.pushes),
            "LIPSYNC_RETRY_AFTER_S": "30",
            "LIPSYNC_MAX_UPLOAD_BYTES": str(int((plan.push_mb + 8) * 1024 * 1024)),
        }
        with sh.service(server, workdir / "service", broker_db=1, **extra) as svc:
            base = svc.start_api()
            assert svc.api is not None
            pids = {"api (with its probes)": svc.api.proc.pid, "redis": server.proc.pid}
            before = {name: _cpu_s(pid) for name, pid in pids.items()}
            client0, busy0, t0 = time.process_time(), _busy_s(), time.perf_counter()
            figures = asyncio.run(drive(base, plan, audio, image))
            wall = time.perf_counter() - t0
            used = {name: (_cpu_s(pid) - before[name]) / wall for name, pid in pids.items()}
            used["poller"] = (time.process_time() - client0) / wall
            used["pusher"] = figures.cpu_cores.pop("pusher process", 0.0) / wall
            used["everything else"] = max(0.0, (_busy_s() - busy0) / wall - sum(used.values()))
            figures.cpu_cores = {k: round(v, 2) for k, v in used.items()}
            return figures
    finally:
        sh.stop(server.proc)


def report(figures: Figures) -> str:
    plan = Plan(**figures.plan)
    lat = figures.latency_ms
    verdict = "met" if lat.get("p99", math.inf) < plan.p99_target_ms else "NOT met"
    m = figures.machine
    return "\n".join(
        [
            BEGIN,
            f"Run by `python -m benchmarks.load` on {m['cores']} cores ({m['cpu']}, "
            f"{m['memory']}), Python {m['python']}, {time.strftime('%Y-%m-%d')}:",
            "",
            "| Figure | Value |",
            "| --- | --- |",
            f"| Offered status polls | {plan.polls_per_s:g}/s for {plan.seconds:g} s |",
            f"| Status polls answered | {figures.polls} ({figures.poll_rate:.1f}/s achieved), "
            f"{figures.poll_errors} errors |",
            f"| Status latency p50 / p90 / p99 / max | {lat['p50']:.1f} / {lat['p90']:.1f} / "
            f"**{lat['p99']:.1f}** / {lat['max']:.1f} ms (target p99 < "
            f"{plan.p99_target_ms:g} ms: {verdict}) |",
            f"| Pushes meanwhile | {figures.pushes} of {figures.push_bytes / 1024**2:.1f} MB "
            f"each, {figures.push_errors} errors; answered in {figures.push_s['p50']:.2f} s "
            f"(median), {figures.push_s['max']:.2f} s (max) |",
            f"| Push past the queue depth ({plan.pushes}) | {figures.over_depth_status}, "
            f"`Retry-After: {figures.over_depth_retry_after}` |",
            "| CPU in use meanwhile (cores, of "
            f"{m['cores']}) | "
            + ", ".join(f"{name} {cores:.2f}" for name, cores in figures.cpu_cores.items())
            + " |",
            "",
            END,
        ]
    )


def write_doc(doc: Path, section: str) -> None:
    text = doc.read_text() if doc.exists() else "# Reliability\n\n## Load\n\n"
    if BEGIN in text and END in text:
        text = re.sub(re.escape(BEGIN) + r".*?" + re.escape(END), lambda _: section, text,
                      flags=re.S)  # fmt: skip
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text)


@dataclass
class PollWindow:
    """One measurement of N closed-loop pollers: the case, latency percentiles, errors."""

    case: str
    pollers: int
    seconds: float
    polls: int = 0
    errors: int = 0
    latency_ms: dict[str, float] = field(default_factory=dict)
    job_state_after: str = ""  # the rendering job's state when the window ended
    job_progress: tuple[float, float] = (0.0, 0.0)  # at the window's start and end
    cpu_cores: dict[str, float] = field(default_factory=dict)


async def _pollers(
    base_url: str, task_id: str, pollers: int, seconds: float, interval: float
) -> tuple[list[float], list[str]]:
    lat: list[float] = []
    errors: list[str] = []
    limits = httpx.Limits(max_connections=pollers + 4)
    async with httpx.AsyncClient(base_url=base_url, timeout=30, limits=limits) as client:
        params = {"task_id": task_id}
        request = client.build_request("GET", "/api/v1/lipsync/status", params=params)
        end = time.perf_counter() + seconds

        async def one(k: int) -> None:
            await asyncio.sleep(interval * k / pollers)  # spread the pollers over a period
            while time.perf_counter() < end:
                await _poll(client, request, lat, errors)
                await asyncio.sleep(interval)

        await asyncio.gather(*(one(k) for k in range(pollers)))
    return lat, errors


def _long_speech(path: Path, seconds: float) -> Path:
    """Real speech (espeak-ng) of about ``seconds``: a job long enough to poll through."""
    from tests.app import service_harness as sh

    sentence = "This is a long piece of speech for the load benchmark, and it goes on. "
    return sh.speech(path, sentence * max(1, int(seconds / 4.5)), speed=150)


def _thread_cpu_s(pid: int) -> float:
    """CPU seconds of a live process, all its threads (not its children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_pollers(
    workdir: Path,
    pollers: int = 30,
    seconds: float = 20.0,
    interval: float = POLL_INTERVAL_S,
    cases: tuple[str, ...] = ("idle", "render", "render-nice0"),
) -> list[PollWindow]:
    """Status latency with ``pollers`` pollers: idle, and while one job renders (per case)."""
    from tests.app import service_harness as sh
    from tests.media_factory import astronaut, write_png

    workdir.mkdir(parents=True, exist_ok=True)
    image = write_png(workdir / "face.png", astronaut())
    # the render must outlast the window (viseme: about 1 s of work per 2 to 4 s of speech)
    audio = _long_speech(workdir / "speech.wav", max(40.0, 8.0 * seconds))
    server = sh.start_redis(workdir / "redis")
    windows: list[PollWindow] = []
    try:
        for db, case in enumerate(cases, start=1):
            extra = {"LIPSYNC_DEFAULT_ENGINE": "viseme", "LIPSYNC_EVALUATE_RESULTS": "false"}
            if case == "render-nice0":
                extra["LIPSYNC_WORKER_NICE"] = "0"
            with sh.service(server, workdir / case, broker_db=db, **extra) as svc:
                base = svc.start_api()
                assert svc.api is not None
                store = svc.store()
                with httpx.Client(base_url=base, timeout=120) as client:
                    resp = sh.push(client, audio, image)
                    if resp.status_code != 202:
                        raise RuntimeError(f"push failed: {resp.status_code} {resp.text}")
                    task_id = str(resp.json()["task_id"])
                pids = {"api": svc.api.proc.pid}
                if case != "idle":
                    worker = svc.start_worker("w1")
                    deadline = time.monotonic() + 120
                    while True:  # past its start-up: the render itself
                        job = store.jobs.get(task_id)
                        if job is not None and job.state == "running" and job.progress >= 0.1:
                            break
                        if time.monotonic() > deadline:
                            raise RuntimeError(f"the job did not start: {job}")
                        time.sleep(0.05)
                    pids["worker pool"] = sh.pool_children(worker.proc.pid)[0]
                window = PollWindow(case, pollers, seconds)
                before = {name: _thread_cpu_s(pid) for name, pid in pids.items()}
                job = store.jobs.get(task_id)
                start_progress = job.progress if job else 0.0
                busy0, client0, t0 = _busy_s(), time.process_time(), time.perf_counter()
                lat, errors = asyncio.run(_pollers(base, task_id, pollers, seconds, interval))
                wall = time.perf_counter() - t0
                used = {
                    name: (_thread_cpu_s(pid) - before[name]) / wall for name, pid in pids.items()
                }
                used["pollers"] = (time.process_time() - client0) / wall
                # other processes on the machine (other work sharing the cores)
                used["others"] = max(0.0, (_busy_s() - busy0) / wall - sum(used.values()))
                window.cpu_cores = {name: round(v, 2) for name, v in used.items()}
                job = store.jobs.get(task_id)
                window.job_state_after = job.state if job else "missing"
                window.job_progress = (start_progress, job.progress if job else 0.0)
                window.polls, window.errors = len(lat), len(errors)
                window.latency_ms = {
                    "p50": percentile(lat, 50),
                    "p90": percentile(lat, 90),
                    "p99": percentile(lat, 99),
                    "max": max(lat, default=math.nan),
                }
                windows.append(window)
                store.client.close()
    finally:
        sh.stop(server.proc)
    return windows


def report_pollers(windows: list[PollWindow], target_ms: float = 100.0) -> str:
    m = machine()
    names = {
        "idle": "idle (no worker)",
        "render": "one job rendering, pool at nice 10 (the default)",
        "render-nice0": "one job rendering, pool at nice 0 (`LIPSYNC_WORKER_NICE=0`)",
    }
    lines = [
        RENDER_BEGIN,
        f"Run by `python -m benchmarks.load --pollers {windows[0].pollers}` on {m['cores']} "
        f"cores ({m['cpu']}, {m['memory']}), Python {m['python']}, "
        f"{time.strftime('%Y-%m-%d')}; {windows[0].pollers} pollers, each polling one job's "
        f"status {POLL_INTERVAL_S * 1000:.0f} ms after its last answer, "
        f"{windows[0].seconds:g} s per case:",
        "",
        f"| Case | Polls | p50 / p90 / p99 / max (ms) | p99 < {target_ms:g} ms "
        "| The job meanwhile | CPU (cores) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for w in windows:
        lat = w.latency_ms
        met = "yes" if lat["p99"] < target_ms else "**no**"
        if w.case == "idle":
            job = "queued (no worker)"
        elif w.job_state_after == "running":
            job = f"rendering, {w.job_progress[0]:.0%} to {w.job_progress[1]:.0%}"
        else:
            job = f"window cut short: {w.job_state_after}"
        cpu = ", ".join(f"{k} {v:.2f}" for k, v in w.cpu_cores.items())
        lines.append(
            f"| {names.get(w.case, w.case)} | {w.polls}, {w.errors} errors | {lat['p50']:.1f} / "
            f"{lat['p90']:.1f} / **{lat['p99']:.1f}** / {lat['max']:.1f} | {met} | {job} | "
            f"{cpu} |"
        )
    lines += ["", RENDER_END]
    return "\n".join(lines)


def write_section(doc: Path, section: str, begin: str = BEGIN, end: str = END) -> None:
    text = doc.read_text() if doc.exists() else "# Reliability\n\n## Load\n\n"
    if begin in text and end in text:
        text = re.sub(re.escape(begin) + r".*?" + re.escape(end), lambda _: section, text,
                      flags=re.S)  # fmt: skip
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text)


def main_pollers(args: argparse.Namespace) -> int:
    seconds = 3.0 if args.smoke else args.seconds
    with tempfile.TemporaryDirectory(prefix="lipsync-load-") as tmp:
        windows = run_pollers(Path(tmp), args.pollers, seconds)
    section = report_pollers(windows)
    print(section)
    if args.json:
        args.json.write_text(json.dumps([asdict(w) for w in windows], indent=2))
    write_section(args.doc, section, RENDER_BEGIN, RENDER_END)
    ok = all(w.errors == 0 and w.polls > 0 for w in windows)
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=200.0, help="status polls per second")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--pushes", type=int, default=20)
    parser.add_argument("--push-mb", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--smoke", action="store_true", help="50 polls/s for 3 s, 2 small pushes")
    parser.add_argument("--doc", type=Path, default=ROOT / "docs" / "RELIABILITY.md")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--pollers", type=int, default=0,
        help="N pollers of one job's status, idle and while a job renders (20 s each)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.pollers:
        if "--seconds" not in (argv if argv is not None else sys.argv):
            args.seconds = 20.0
        return main_pollers(args)
    plan = Plan(args.rate, args.seconds, args.pushes, args.push_mb, args.concurrency)
    if args.smoke:
        plan = Plan(polls_per_s=50, seconds=3, pushes=2, push_mb=1, concurrency=16)
    with tempfile.TemporaryDirectory(prefix="lipsync-load-") as tmp:
        figures = run(plan, Path(tmp))
    section = report(figures) if figures.polls else "\n".join([BEGIN, "(no polls ran)", END])
    print(section)
    for err in figures.errors:
        print("error:", err, file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps(asdict(figures) | {"ok": figures.ok}, indent=2))
    write_doc(args.doc, section)
    return 0 if figures.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
