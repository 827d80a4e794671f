"""The probe as a child process: ``probe_bounded`` runs :func:`lipsync.media.probe.probe`
in ``python -m lipsync.media.probe`` with a time limit and an address-space limit (the API
uses it on untrusted uploads), and maps however the child ended to a typed error."""

from __future__ import annotations

import argparse
import json
import resource
import signal
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Literal

from lipsync.errors import (
    AudioEmpty,
    CorruptMedia,
    LipsyncError,
    TooLarge,
    UnsupportedMedia,
)
from lipsync.media.info import MediaInfo
from lipsync.options import MediaLimits

ProbeKind = Literal["video", "audio", "any"]

# Address space (RLIMIT_AS) of the probe child, Python and FFmpeg's libraries included.
# Sized from measurement (docs/RELIABILITY.md, "Probe memory bound";
# ``python -m benchmarks.probe_bombs``): the child starts at about 125 MiB of address space
# and a legitimate 4096x4096 file, the largest MediaLimits admits, peaks at 342 MiB
# (4:4:4 12-bit HEVC; 274 MiB resident); the limit leaves ~300 MiB above that. Hostile
# headers are refused from the headers well below it (~130 MiB resident); whatever still
# runs into it fails with ``too_large`` (or ``corrupt_media`` where FFmpeg reports it so).
PROBE_MEMORY_LIMIT_BYTES = 640 * 1024**2


def probe_command(
    path: Path,
    limits: MediaLimits | None = None,
    kind: ProbeKind = "any",
    memory_limit_bytes: int | None = PROBE_MEMORY_LIMIT_BYTES,
) -> list[str]:
    """The command line of the probe child (``python -m lipsync.media.probe ...``)."""
    cmd = [
        sys.executable,
        "-m",
        "lipsync.media.probe",
        str(path),
        "--kind",
        kind,
        "--limits",
        json.dumps(asdict(limits or MediaLimits())),
    ]
    if memory_limit_bytes is not None:
        cmd += ["--memory-limit", str(memory_limit_bytes)]
    return cmd


def probe_bounded(
    path: Path,
    limits: MediaLimits | None = None,
    kind: ProbeKind = "any",
    timeout_s: float | None = None,
    memory_limit_bytes: int | None = PROBE_MEMORY_LIMIT_BYTES,
) -> MediaInfo:
    """:func:`probe` in a child process, killed after ``timeout_s`` (default: the limit's),
    whose address space is capped at ``memory_limit_bytes`` (None: no cap).

    A child that ran out of memory answers ``too_large``; one that died without an answer
    (a crash, or killed by the memory limit) ``corrupt_media`` or ``too_large``; one that
    ran out of time ``unsupported_media``: never an unexplained failure.
    """
    limits = limits or MediaLimits()
    timeout = timeout_s if timeout_s is not None else limits.probe_timeout_s
    cmd = probe_command(path, limits, kind, memory_limit_bytes)
    name = Path(path).name
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=timeout, check=False, text=True)
    except subprocess.TimeoutExpired as exc:
        raise UnsupportedMedia(f"{name}: probing took longer than {timeout:g} s") from exc
    try:
        data = json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        if _ran_out_of_memory(proc.stderr):
            raise TooLarge(f"{name}: probing needs more memory than the probe allows") from exc
        raise CorruptMedia(f"{name}: the media probe failed{_how_it_ended(proc)}") from exc
    if proc.returncode == 0 and "info" in data:
        return MediaInfo.from_dict(data["info"])
    err = data.get("error", {})
    raise _error_from_code(err.get("code", "corrupt_media"), err.get("message", "probe failed"))


def _ran_out_of_memory(stderr: str) -> bool:
    """Whether a child that gave no answer said it ran out of memory (Python's
    ``MemoryError``, C's ENOMEM text, C++'s ``bad_alloc``)."""
    return any(mark in stderr for mark in ("MemoryError", "Cannot allocate memory", "bad_alloc"))


def _how_it_ended(proc: subprocess.CompletedProcess[str]) -> str:
    if proc.returncode < 0:
        try:
            return f" (it ended with {signal.Signals(-proc.returncode).name})"
        except ValueError:
            return f" (it ended with signal {-proc.returncode})"
    return f" (exit status {proc.returncode})" if proc.returncode else ""


def _error_from_code(code: str, message: str) -> LipsyncError:
    for cls in (UnsupportedMedia, CorruptMedia, TooLarge, AudioEmpty):
        if cls.code == code:
            return cls(message)
    return CorruptMedia(message)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lipsync.media.probe")
    parser.add_argument("path", type=Path)
    parser.add_argument("--kind", choices=("video", "audio", "any"), default="any")
    parser.add_argument("--limits", default="{}", help="MediaLimits fields as JSON")
    parser.add_argument(
        "--memory-limit", type=int, default=None, help="address-space limit (RLIMIT_AS), bytes"
    )
    args = parser.parse_args(argv)
    if args.memory_limit:
        resource.setrlimit(resource.RLIMIT_AS, (args.memory_limit, args.memory_limit))
    from lipsync.media.probe import media_reason, probe

    try:
        limits = MediaLimits(**json.loads(args.limits))
        info = probe(args.path, limits, args.kind)
    except LipsyncError as exc:
        print(json.dumps({"error": exc.to_dict()}))
        return 2
    except MemoryError:  # the address-space limit, met outside the places that expect it
        message = f"{args.path.name}: probing needs more memory than the probe allows"
        print(json.dumps({"error": {"code": "too_large", "message": message}}))
        return 2
    except Exception as exc:  # a crash inside the demuxer must still answer in JSON
        print(
            json.dumps(
                {
                    "error": {
                        "code": "corrupt_media",
                        "message": f"probe failed: {media_reason(exc)}",
                    }
                }
            )
        )
        return 2
    print(json.dumps({"info": info.to_dict()}))
    return 0
