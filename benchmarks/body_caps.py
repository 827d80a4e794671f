"""200 MB bodies against a running API: every route answers 413 in the standard shape while
the body streams in, before parsing or authentication, and the API does not grow.

    python -m benchmarks.body_caps --base http://127.0.0.1:8000 [--api-pid PID] [--key KEY]

With no ``--api-pid`` the process listening on the base URL's port is looked up in /proc.
Prints one row per (route, with/without key, declared/chunked) and the API's resident memory
before and after (and its peak, VmHWM).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

ROUTES = (
    "/api/v1/lipsync/terminate",
    "/api/v1/lipsync/push",
    "/api/v1/lipsync/status",
    "/api/v1/lipsync/options",
    "/api/v1/lipsync/download",
    "/readyz",
)
BODY = 200 * 1024 * 1024
BLOCK = b"x" * (1024 * 1024)


def _memory_kib(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields


def _listener_pid(port: int) -> int:
    """The pid of the process with a listening TCP socket on ``port`` (via /proc)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            parts = line.split()
            if parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(parts[9])
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    return int(proc.name)
        except OSError:
            continue
    raise SystemExit(f"no process listens on port {port}; pass --api-pid")


def send(base: str, path: str, key: str | None, chunked: bool) -> tuple[int, str, float, int]:
    """POST 200 MB; (status, error code, seconds to the answer, bytes sent before it)."""
    url = urlsplit(base)
    head = [f"POST {path} HTTP/1.1", f"Host: {url.hostname}:{url.port}"]
    head.append("Content-Type: application/json")
    head.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {BODY}")
    if key:
        head.append(f"X-API-Key: {key}")
    t0 = time.perf_counter()
    sent = 0
    with socket.create_connection((url.hostname, url.port), timeout=60) as sock:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        sock.setblocking(False)
        reply = b""
        while sent < BODY:
            try:
                part = sock.recv(65536)
                if part:
                    reply += part
                    break
            except BlockingIOError:
                pass
            frame = (f"{len(BLOCK):x}\r\n".encode() + BLOCK + b"\r\n") if chunked else BLOCK
            try:
                sock.setblocking(True)
                sock.sendall(frame)
                sock.setblocking(False)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(BLOCK)
        sock.setblocking(True)
        sock.settimeout(30)
        while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
            part = sock.recv(65536)
            if not part:
                break
            reply += part
    seconds = time.perf_counter() - t0
    status = int(reply.split(b" ", 2)[1]) if reply else 0
    try:
        code = json.loads(reply.split(b"\r\n\r\n", 1)[1])["detail"]["code"]
    except (IndexError, ValueError, KeyError, TypeError):
        code = "?"
    return status, code, seconds, sent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="http://127.0.0.1:8000")
    parser.add_argument("--api-pid", type=int)
    parser.add_argument("--key", default=os.environ.get("LIPSYNC_API_KEY"))
    args = parser.parse_args()
    pid = args.api_pid or _listener_pid(urlsplit(args.base).port or 80)
    before = _memory_kib(pid)
    print(f"api pid {pid}: VmRSS {before['VmRSS'] / 1024:.0f} MiB before")
    print(f"{'route':28s} {'key':4s} {'body':8s} status code        seconds  MiB sent")
    for key in (None, args.key) if args.key else (None,):
        for path in ROUTES:
            for chunked in (False, True):
                status, code, seconds, sent = send(args.base, path, key, chunked)
                kind = "chunked" if chunked else "declared"
                print(
                    f"{path:28s} {'yes' if key else 'no':4s} {kind:8s} {status:6d} {code:12s}"
                    f" {seconds:7.3f} {sent / 2**20:8.0f}"
                )
    after = _memory_kib(pid)
    print(
        f"api VmRSS {before['VmRSS'] / 1024:.0f} -> {after['VmRSS'] / 1024:.0f} MiB "
        f"(peak VmHWM {after['VmHWM'] / 1024:.0f} MiB)"
    )


if __name__ == "__main__":
    main()
