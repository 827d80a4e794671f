"""Peak memory of the upload probe's child process on hostile headers (issue 17).

    python -m benchmarks.probe_bombs                      # the probe as it is now
    python -m benchmarks.probe_bombs --legit              # also 4096x4096 files per codec
    python -m benchmarks.probe_bombs --script OLD.py      # another copy of probe.py, run
                                                          # as a script (e.g. before a change)

Each input is probed by the same child command line the API's ``probe_bounded`` runs
(``python -m lipsync.media.probe PATH --kind video --limits ... --memory-limit ...``), once
alone and then four at once (as the API does from its threadpool, one upload's files in
parallel, or several uploads). A child's peak resident memory is its own ``ru_maxrss``
from ``wait4``; "4 at once" gives the largest of the four and their sum (an upper bound of
what the four held together). The inputs are made on the spot by
``tests/app/hostile_media.py`` and ``tests/media/probe_media.py``; nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

from benchmarks.common import ROOT
from lipsync.media.probe import PROBE_MEMORY_LIMIT_BYTES, probe_command
from lipsync.options import MediaLimits
from tests.app import hostile_media as hm
from tests.media import probe_media as pm

MiB = 1024 * 1024


def bombs(root: Path) -> list[tuple[str, Path]]:
    """(name, path) of every hostile input measured."""
    small = hm.small_video(root / "small.mp4", "mp4").read_bytes()
    (root / "day.mp4").write_bytes(hm.mp4_claiming_duration(small, 86400))
    (root / "huge.png").write_bytes(hm.png_claiming(100000, 100000))
    return [
        ("h264 SPS 16000x16000, mp4 says 64x64",
         hm.h264_claiming_size(root / "sps.mp4", 16000, 16000, "mp4")),
        ("h264 SPS + mp4 header 16000x16000",
         hm.h264_claiming_size(root / "sps-both.mp4", 16000, 16000, "mp4", in_container=True)),
        ("h264 SPS 16000x16000, mkv",
         hm.h264_claiming_size(root / "sps.mkv", 16000, 16000, "matroska")),
        ("mp4 claiming 24 h", root / "day.mp4"),
        ("mkv with 1000 streams", hm.many_streams(root / "streams.mkv", 1000)),
        ("mp4 with 100 streams", hm.many_streams(root / "streams.mp4", 100, "mp4")),
        ("png claiming 100000x100000", root / "huge.png"),
    ]  # fmt: skip


def command(path: Path, script: Path | None) -> list[str]:
    if script is None:
        return probe_command(path, MediaLimits(), "video", PROBE_MEMORY_LIMIT_BYTES)
    limits = json.dumps(asdict(MediaLimits()))
    return [sys.executable, str(script), str(path), "--kind", "video", "--limits", limits]


# The children are started by this small launcher, not by the benchmark itself: a child's
# ru_maxrss starts from its parent's resident size at fork (the kernel keeps the larger
# across exec), and the benchmark holds the media it made.
_LAUNCHER = """
import json, os, subprocess, sys, time
t0 = time.monotonic()
procs = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
         for c in json.loads(sys.argv[1])]
out = []
for p in procs:
    text = p.stdout.read()
    _, status, usage = os.wait4(p.pid, 0)
    out.append([text.decode(errors="replace"), os.waitstatus_to_exitcode(status),
                usage.ru_maxrss, time.monotonic() - t0])
print(json.dumps(out))
"""


def run_at_once(cmds: list[list[str]]) -> list[tuple[str, float, float]]:
    """Start every command at once; (answer code, peak RSS in MiB, seconds) of each."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    launched = subprocess.run(
        [sys.executable, "-c", _LAUNCHER, json.dumps(cmds)],
        capture_output=True, text=True, env=env, cwd=ROOT, check=True,
    )  # fmt: skip
    results = []
    for out, returncode, maxrss_kib, seconds in json.loads(launched.stdout):
        try:
            data = json.loads(out)
            code = "accepted" if "info" in data else data["error"]["code"]
        except (json.JSONDecodeError, KeyError):
            code = f"no answer (exit {returncode})"
        results.append((code, maxrss_kib / 1024, seconds))
    return results


def measure(inputs: list[tuple[str, Path]], script: Path | None) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for name, path in inputs:
        ((code, alone, seconds),) = run_at_once([command(path, script)])
        four = run_at_once([command(path, script)] * 4)
        rows.append({
            "input": name,
            "bytes": path.stat().st_size,
            "answer": code,
            "alone_mib": alone,
            "alone_s": seconds,
            "four_max_mib": max(r[1] for r in four),
            "four_sum_mib": sum(r[1] for r in four),
            "four_answers": sorted({r[0] for r in four}),
        })  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.probe_bombs")
    parser.add_argument("--script", type=Path, help="probe.py copy to run instead")
    parser.add_argument("--legit", action="store_true", help="also 4096x4096 legit files")
    parser.add_argument("--json", type=Path, help="write the rows here too")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="probe-bombs-") as tmp:
        root = Path(tmp)
        inputs = bombs(root)
        if args.legit:
            inputs += pm.edge_files(root)
        rows = measure(inputs, args.script)
    which = args.script or f"lipsync.media.probe, RLIMIT_AS {PROBE_MEMORY_LIMIT_BYTES // MiB} MiB"
    print(f"probe: {which}; peak RSS of the probe child (ru_maxrss), MiB")
    print("| Input | Bytes | Answer | Alone: peak RSS | Alone: time | 4 at once: max | sum |")
    print("| --- | ---: | --- | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(
            f"| {r['input']} | {r['bytes']:,} | {r['answer']} | {r['alone_mib']:.0f} "
            f"| {r['alone_s']:.2f} s | {r['four_max_mib']:.0f} | {r['four_sum_mib']:.0f} |"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
