"""Time to the download: the service against ``lipsync run`` for the same job, same machine.

    python -m benchmarks.latency                  # 720p, 10 s, 3 rounds; writes its section
                                                  # of docs/BENCHMARKS.md
    python -m benchmarks.latency --seconds 20 --rounds 5 --json /tmp/latency.json
    python -m benchmarks.latency --smoke --doc /tmp/B.md   # a tiny job, one round

Each round runs one job three ways, one after the other (each starts
only once the previous one's measurement is over, so none runs beside another):

* ``lipsync run`` as a user runs it (a subprocess: imports, models, the render, the file);
* the web page's way: a push over HTTP (multipart upload), the status followed until
  ``succeeded``, then the whole download; "download" is the time from the push to the
  last byte of the MP4, "quality" the time until ``status.quality`` is ready;
* ``lipsync remote run`` (a subprocess: upload, wait, download, then the measurement):
  "download" is when it prints ``wrote``, i.e. the MP4 is on disk.

The service is the real one, on loopback: a private redis-server, one Celery worker (one
pool process, its models loaded by a warm-up job first, as a running service has them) and
uvicorn, started as the service tests start them. The ratio judged is the service's time to
the download over ``lipsync run``'s time, per round; the medians are published.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from benchmarks.common import ROOT, machine, speech, talking_video

BEGIN, END = "<!-- latency:begin -->", "<!-- latency:end -->"
LIPSYNC = [sys.executable, "-m", "lipsync.cli"]
TARGET_RATIO = 1.3


@dataclass
class Round:
    run_s: float  # lipsync run, wall
    pipeline_s: float  # lipsync run's own report of the pipeline (no start-up, no imports)
    web_download_s: float  # push -> the MP4's last byte
    web_quality_s: float  # push -> status.quality ready
    remote_download_s: float  # lipsync remote run: start -> "wrote"
    remote_exit_s: float  # ... -> exit (after the measurement)
    quality_state: str = ""
    web_worker_s: float = 0.0  # the web job's run in the worker (started_at -> finished_at)
    remote_worker_s: float = 0.0

    @property
    def web_overhead_s(self) -> float:
        """What the service adds to the pipeline's run: upload, queue, status, download."""
        return self.web_download_s - self.web_worker_s

    @property
    def remote_overhead_s(self) -> float:
        return self.remote_download_s - self.remote_worker_s

    @property
    def web_ratio(self) -> float:
        return self.web_download_s / self.run_s

    @property
    def remote_ratio(self) -> float:
        return self.remote_download_s / self.run_s


@dataclass
class Figures:
    height: int
    seconds: float
    rounds: list[Round] = field(default_factory=list)
    machine: dict[str, str] = field(default_factory=dict)
    warmup_s: float = 0.0


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIPSYNC_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["LIPSYNC_MODELS_DIR"] = str(ROOT / "models")
    return env


def time_run(video: Path, audio: Path, out: Path) -> tuple[float, float]:
    """(wall seconds of ``lipsync run``, its pipeline's own seconds: ``wall_s``)."""
    t0 = time.monotonic()
    proc = subprocess.run(
        [*LIPSYNC, "run", "--video", str(video), "--audio", str(audio), "-o", str(out),
         "--device", "cpu", "--no-progress", "--json"],
        capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=1800,
    )  # fmt: skip
    took = time.monotonic() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"lipsync run failed: {proc.stderr}")
    return took, float(json.loads(proc.stdout)["wall_s"])


def _status(client: httpx.Client, task_id: str) -> dict[str, Any]:
    resp = client.get("/api/v1/lipsync/status", params={"task_id": task_id})
    resp.raise_for_status()
    return dict(resp.json())


def worker_seconds(client: httpx.Client, task_id: str) -> float:
    """How long the job ran in the worker (its status's started_at -> finished_at)."""
    from datetime import datetime

    body = _status(client, task_id)
    started = datetime.fromisoformat(str(body["started_at"]).replace("Z", "+00:00"))
    finished = datetime.fromisoformat(str(body["finished_at"]).replace("Z", "+00:00"))
    return (finished - started).total_seconds()


def time_web(
    client: httpx.Client, video: Path, audio: Path, out: Path
) -> tuple[float, float, str, str]:
    """(push -> downloaded, push -> quality over, quality state, task id)."""
    t0 = time.monotonic()
    with audio.open("rb") as a, video.open("rb") as v:
        resp = client.post(
            "/api/v1/lipsync/push", files={"audio": (audio.name, a), "video": (video.name, v)}
        )
    resp.raise_for_status()
    task_id = resp.json()["task_id"]
    while True:
        body = _status(client, task_id)
        if body["state"] in ("failed", "canceled"):
            raise RuntimeError(f"job {task_id} {body['state']}: {body.get('error')}")
        if body["state"] == "succeeded":
            break
        time.sleep(0.1)
    with client.stream("GET", "/api/v1/lipsync/download", params={"task_id": task_id}) as dl:
        dl.raise_for_status()
        with out.open("wb") as f:
            for chunk in dl.iter_bytes(1 << 20):
                f.write(chunk)
    downloaded = time.monotonic() - t0
    state = _wait_quality(client, task_id)
    return downloaded, time.monotonic() - t0, state, task_id


def _wait_quality(client: httpx.Client, task_id: str, timeout: float = 1800) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        quality = _status(client, task_id).get("quality") or {}
        if quality.get("state") in ("ready", "failed", "skipped"):
            return str(quality["state"])
        time.sleep(0.2)
    raise RuntimeError(f"the measurement of {task_id} did not end")


def time_remote(base_url: str, video: Path, audio: Path, out: Path) -> tuple[float, float, str]:
    """(start -> 'wrote' printed: the MP4 is on disk, start -> exit, task id)."""
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [*LIPSYNC, "remote", "run", "--server", base_url, "--video", str(video),
         "--audio", str(audio), "-o", str(out), "--no-progress"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=ROOT,
    )  # fmt: skip
    assert proc.stdout is not None
    wrote, task_id = None, ""
    for line in proc.stdout:
        if line.startswith("wrote ") and wrote is None:
            wrote = time.monotonic() - t0
            task_id = line.rsplit("(task ", 1)[-1].rstrip(")\n")
    proc.wait(timeout=1800)
    if proc.returncode != 0 or wrote is None:
        raise RuntimeError(
            f"lipsync remote run failed: {proc.stderr.read() if proc.stderr else ''}"
        )
    return wrote, time.monotonic() - t0, task_id


def run(height: int, seconds: float, rounds: int, workdir: Path) -> Figures:
    from tests.app import service_harness as sh

    media = workdir / "media"
    video = talking_video(height, seconds, media / f"talk{height}_{seconds:g}s.mp4")
    audio = speech(seconds, media / f"speech_{seconds:g}s.wav")
    figures = Figures(height, seconds, machine=machine())
    redis_server = sh.start_redis(workdir / "redis")
    try:
        env = sh.service_env(redis_server.url, workdir / "data")
        env.update({"LIPSYNC_MODELS_DIR": str(ROOT / "models"), "LIPSYNC_WORKER_NICE": "0"})
        worker = sh.start_worker(env, workdir)
        with sh.running(worker):
            sh.wait_worker(redis_server.url, "lipsync", worker)
            api, base = sh.start_api(env, workdir)
            with sh.running(api), httpx.Client(base_url=base, timeout=600) as client:
                t0 = time.monotonic()  # warm-up: the pool process loads its models
                time_web(client, video, audio, workdir / "warmup.mp4")
                figures.warmup_s = round(time.monotonic() - t0, 2)
                for k in range(rounds):
                    run_s, pipeline_s = time_run(video, audio, workdir / f"run{k}.mp4")
                    web_dl, web_q, state, web_id = time_web(
                        client, video, audio, workdir / f"web{k}.mp4"
                    )
                    remote_dl, remote_exit, remote_id = time_remote(
                        base, video, audio, workdir / f"r{k}.mp4"
                    )
                    figures.rounds.append(
                        Round(
                            run_s, pipeline_s, web_dl, web_q, remote_dl, remote_exit, state,
                            worker_seconds(client, web_id), worker_seconds(client, remote_id),
                        )
                    )  # fmt: skip
                    r = figures.rounds[-1]
                    print(
                        f"round {k + 1}: run {run_s:.2f}s, web download {web_dl:.2f}s "
                        f"(x{r.web_ratio:.2f}), quality {web_q:.2f}s ({state}), remote run "
                        f"download {remote_dl:.2f}s (x{r.remote_ratio:.2f}), exit "
                        f"{remote_exit:.2f}s; in the worker {r.web_worker_s:.2f}s / "
                        f"{r.remote_worker_s:.2f}s",
                        flush=True,
                    )
    finally:
        sh.stop(redis_server.proc)
    return figures


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def report(f: Figures) -> str:
    m = f.machine
    rows = [
        "| round | `lipsync run` s (its pipeline) | web page: download s (ratio) "
        "| web page: quality ready s | `remote run`: download s (ratio) "
        "| `remote run`: exits s | service overhead s (web / remote) |",
        "|---|---|---|---|---|---|---|",
    ]
    for k, r in enumerate(f.rounds, 1):
        rows.append(
            f"| {k} | {r.run_s:.2f} ({r.pipeline_s:.2f}) | "
            f"{r.web_download_s:.2f} ({r.web_ratio:.2f}) | "
            f"{r.web_quality_s:.2f} | {r.remote_download_s:.2f} ({r.remote_ratio:.2f}) | "
            f"{r.remote_exit_s:.2f} | {r.web_overhead_s:.2f} / {r.remote_overhead_s:.2f} |"
        )
    web = _median([r.web_ratio for r in f.rounds])
    remote = _median([r.remote_ratio for r in f.rounds])
    strict = _median([max(r.web_download_s, r.remote_download_s) / r.pipeline_s
                      for r in f.rounds])  # fmt: skip
    verdict = "met" if max(web, remote) <= TARGET_RATIO else "NOT met"
    return "\n".join(
        [
            f"## Time to the download: service against `lipsync run` "
            f"({f.height}p, {f.seconds:g} s, retrieval)",
            "",
            "Written by `python -m benchmarks.latency`. One job, run three ways per round, one "
            "after the other (none of them beside another): `lipsync run` (a subprocess, "
            "models loaded each time), the web "
            "page's way (push over HTTP, status until `succeeded`, the whole download) and "
            "`lipsync remote run` (until it prints `wrote`: the MP4 is on disk). The service "
            "is the real one on loopback (Redis, one Celery worker with one pool process, "
            "uvicorn); its measurement (`quality`) runs after the result, at the lowest "
            "priority, and is timed separately. "
            f"Machine: {m.get('cores')} cores, {m.get('cpu')}, {m.get('memory')}, "
            f"GPU {m.get('gpu')}, Python {m.get('python')}. Warm-up job (the pool process "
            f"loads its models; its measurement included): {f.warmup_s:.1f} s.",
            "",
            *rows,
            "",
            f"Median ratio to `lipsync run`: web page **{web:.2f}**, `lipsync remote run` "
            f"**{remote:.2f}** (target <= {TARGET_RATIO}: {verdict}). Against the pipeline's "
            f"own seconds (`wall_s`: no interpreter start-up, no imports), the slower of the "
            f"two: {strict:.2f}. The service's own overhead (time to the download minus the "
            "job's run in the worker: upload, queue, status, download; the CLI's start-up for "
            f"`remote run`): median {_median([r.web_overhead_s for r in f.rounds]):.2f} s "
            f"(web) and {_median([r.remote_overhead_s for r in f.rounds]):.2f} s (remote). "
            "The quality numbers follow the download; before this change a job was "
            "`succeeded` only after them.",
        ]
    )


def write_section(doc: Path, section: str) -> None:
    text = doc.read_text() if doc.exists() else ""
    block = f"{BEGIN}\n\n{section}\n{END}"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + block + rest.split(END, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    doc.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="a tiny job, one round")
    parser.add_argument("--doc", type=Path, default=ROOT / "docs" / "BENCHMARKS.md")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON")
    args = parser.parse_args(argv)
    if args.smoke:
        args.height, args.seconds, args.rounds = 144, 2.0, 1
    with tempfile.TemporaryDirectory(prefix="lipsync-latency-") as tmp:
        figures = run(args.height, args.seconds, args.rounds, Path(tmp))
    section = report(figures)
    write_section(args.doc, section)
    if args.json:
        data = asdict(figures)
        args.json.write_text(json.dumps(data, indent=2))
    print(section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
