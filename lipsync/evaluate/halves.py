"""A long comparison measured in two halves at once: the later frames in a process of its own.

The comparison of an output with its reference (:func:`.reference.measure_with_reference`)
is one pass over both videos, and nearly all of it runs under the interpreter lock (dlib's
face models hold it for their whole calls, the per-frame numpy work takes it often), so a
second thread would not help, but a second process does: on a 2-core machine a 20 s 720p
comparison took 10.4-13.2 s in one process and 8.2-9.1 s in two (``python -m
benchmarks.evaluate_speed``, docs/BENCHMARKS.md).

* **Where to split**: :func:`split_at`. Only with two CPUs or more, and only for videos of
  :data:`MIN_SPLIT_FRAMES` frames or more (a short one is not worth a process's start-up,
  about 1 s of imports). The second process first runs what the caller gives it to do
  beside (``also``), then measures the last :data:`LATER_SHARE` of the frames: the
  evaluation gives it the phone recognition, whose recogniser holds the interpreter lock
  for its whole call and would stall this process's pass (:func:`lipsync.evaluate.evaluate`),
  and which takes about as long as this process's whole-frame face detection, which the
  other's first detection waits for (below): run after its frames, as it was, that
  process sat idle for that second.
  This one carries the rest of the sound's side (voice activity, the sync step's
  imports) on a thread; the other pays its start-up.
* **The same numbers**: each half runs :func:`.reference.measure_part` on its own frames.
  The later half's decoders seek to the keyframe before its first frame, found by the
  frames' times read from the packets (:func:`~lipsync.media.decode.frame_times`, no
  decoding). Frames must stay paired by index as one pass pairs them, whatever the
  videos' timestamps: the first process's last pair must have the times of the frame
  before the split and the second's first pair those of the split frame, else the later
  frames are measured again here (a decoder that gave other than one frame per packet).
  Where a packet has no timestamp, the later half decodes from the start without
  converting. What a pass carries from frame to frame
  starts again at the split: the later half detects its face anew (one CNN run more), its
  occlusion skin model is fitted on its own frames, and the mouth patch's flicker is
  carried across the split. Its numbers differ from one pass's as much as two passes'
  face detections differ (tests/evaluate/test_halves.py).
* **The process**: a fresh interpreter, ``python -m lipsync.evaluate.halves FD PID`` (not a
  fork of a process whose other threads may hold locks, and not multiprocessing's spawn,
  which runs the caller's main script again in the child: a script without an
  ``if __name__ == "__main__"`` guard would fail). Its arguments go in pickled on stdin,
  its part comes back pickled on its own pipe. It dies with this one (Linux:
  ``PR_SET_PDEATHSIG``). As soon as this process has found the reference's face in the
  first frame it sends that box, and the other's first detection looks near it first
  (a whole-frame CNN pass costs about six near-face ones; one pass would have been
  following the face there, not looking for it on the whole frame).
* **Stopping**: this process polls the cancel while it measures its own half and while
  it waits, and kills the other at once on a cancel or an error.
* **Never worse**: when the second process cannot start, fails or dies, its frames are
  measured here after all (a warning in the log): slower, the same numbers.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import select
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lipsync.evaluate.cancel import die_with_parent
from lipsync.evaluate.faces import BoxF
from lipsync.evaluate.reference import Part, measure_part
from lipsync.media.decode import frame_times

log = logging.getLogger("lipsync.evaluate")

MIN_SPLIT_FRAMES = 250  # 10 s at 25 fps: shorter comparisons stay in one process
LATER_SHARE = 0.5  # share of the frames (the last ones) the second process measures: it also
# starts an interpreter and recognises the phones while the first finds its first face
# (0.45 when it recognised them after its frames; 0.48-0.55 tried since, 0.5 the fastest)
WAIT_STEP_S = 0.05  # how often the cancel is polled while waiting for the second process


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def split_at(frames: int, processes: int | None = None) -> int | None:
    """The first frame of the later half, or None to measure in one process: ``frames``
    the output's frame count (0: unknown), ``processes`` 1 or 2 (None: 2 when there are two
    CPUs or more and :data:`MIN_SPLIT_FRAMES` frames or more)."""
    if processes is None:
        processes = 2 if _cpus() >= 2 and frames >= MIN_SPLIT_FRAMES else 1
    if processes < 2 or frames < 2:
        return None
    return max(1, min(frames - 1, round(frames * (1.0 - LATER_SHARE))))


def _no_poll() -> None:
    return None


def _later_half(result_fd: int, parent: int) -> int:
    """The second process (``python -m lipsync.evaluate.halves FD PID``): the arguments of
    :func:`.reference.measure_part` pickled on stdin, the part (or the error) pickled back
    on file descriptor ``FD`` (not stdout, where libraries may print); ``PID``: the first
    process, which may have died before this one asked to die with it."""
    die_with_parent()
    if os.getppid() != parent:
        return 1
    args = pickle.load(sys.stdin.buffer)
    output, reference, fps, ref_fps, ssim_every, start, start_times, also = args

    def seed() -> Any:
        try:  # the first process's first face box, sent as soon as it has it
            return pickle.load(sys.stdin.buffer)
        except (EOFError, pickle.UnpicklingError):
            return None

    try:
        # ``also`` first: the first process sends its first face box only after its
        # whole-frame detection (about 1 s on a 2-core CPU), which this one's first
        # detection waits for; that second is spent on ``also`` instead of waiting
        extra = None if also is None else also()
        part = measure_part(
            output,
            reference,
            fps,
            ref_fps,
            ssim_every,
            _no_poll,
            start,
            seed=seed,
            threads=1,
            start_times=start_times,
        )
        answer: tuple[str, Any] = ("ok", (part, extra))
    except Exception as exc:  # raised again in the first process
        answer = ("error", exc)
    with os.fdopen(result_fd, "wb") as out:
        try:
            out.write(pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL))
        except Exception as exc:  # an error that does not pickle
            out.write(pickle.dumps(("error", RuntimeError(repr(exc)))))
    return 0


def _child_env() -> dict[str, str]:
    """This environment, with the folder this ``lipsync`` was imported from first on the
    child's import path (a checkout run without installing it finds itself)."""
    import lipsync

    root = str(Path(lipsync.__file__).resolve().parents[1])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    return env


class _Later:
    """The second process, started at once; :meth:`result` waits for its part."""

    def __init__(self, args: tuple[Any, ...]) -> None:
        read_fd, write_fd = os.pipe()
        self._file = os.fdopen(read_fd, "rb")
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "lipsync.evaluate.halves", str(write_fd), str(os.getpid())],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                pass_fds=(write_fd,),
                env=_child_env(),
            )
        finally:
            os.close(write_fd)
        assert self._proc.stdin is not None
        self._stdin = self._proc.stdin
        self._stdin.write(pickle.dumps(args, protocol=pickle.HIGHEST_PROTOCOL))
        self._stdin.flush()

    def send_first_box(self, box: BoxF | None) -> None:
        """Tell the process where the reference's face was in the first frame: its own
        first detection looks there first. Once only; later calls do nothing."""
        if self._stdin.closed:
            return
        try:
            self._stdin.write(pickle.dumps(box))
            self._stdin.close()
        except OSError:  # it has ended; result() says how
            pass

    def result(self, poll: Callable[[], None]) -> tuple[Part, Any]:
        """The part and what ``also`` gave, read while the cancel is polled;
        RuntimeError when the process failed or died without them."""
        self.send_first_box(None)  # never sent (no reference frame): it must not wait for it
        chunks: list[bytes] = []
        fd = self._file.fileno()
        while True:
            ready, _, _ = select.select([fd], [], [], WAIT_STEP_S)
            if not ready:
                poll()
                continue
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
        self._proc.wait()
        if not chunks:
            raise RuntimeError(f"the second process ended with {self._proc.returncode}")
        status, value = pickle.loads(b"".join(chunks))
        if status != "ok":
            raise value
        if not isinstance(value, tuple) or not isinstance(value[0], Part):
            raise RuntimeError("the second process sent something else")
        return value

    def close(self) -> None:
        self._file.close()
        if not self._stdin.closed:
            with contextlib.suppress(OSError):
                self._stdin.close()
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()


Times = tuple[float, float]  # (output, reference) seconds, as iter_frames reports them


def _seek_plan(output: Path, reference: Path, at: int) -> tuple[Times, Times] | None:
    """Where the second process seeks to (the times of frame ``at`` of both videos, from
    their packets) and the times the first process's last pair must have for the seek to
    pair the frames as one pass does (those of frame ``at - 1``); None: it decodes from
    the start (a packet without a timestamp, a video shorter than that)."""
    out_t, ref_t = frame_times(output), frame_times(reference)
    if out_t is None or ref_t is None or min(len(out_t), len(ref_t)) <= at:
        return None
    return (out_t[at], ref_t[at]), (out_t[at - 1], ref_t[at - 1])


def _same_times(a: Times | None, b: Times) -> bool:
    return a is not None and all(abs(x - y) < 1e-6 for x, y in zip(a, b, strict=True))


def measure_in_halves(
    output: Path,
    reference: Path,
    fps: float,
    ref_fps: float,
    ssim_every: int,
    poll: Callable[[], None],
    at: int,
    also: Callable[[], Any] | None = None,
) -> tuple[list[Part], Any]:
    """Frames before ``at`` here and the rest in a second process, at the same time, which
    first runs ``also`` (picklable: a work that would hold this process's interpreter
    lock and stall its pass); returns the parts and what ``also`` gave (None without it).
    When that process cannot start or fails (not a cancel), the rest is done here after
    all: a measurement never fails for the sake of being faster."""
    plan = _seek_plan(output, reference, at)
    seek = None if plan is None else plan[0]
    try:
        args = (output, reference, fps, ref_fps, ssim_every, at, seek, also)
        later: _Later | None = _Later(args)
    except OSError:
        log.warning("the evaluation's second process did not start", exc_info=True)
        later = None
    try:
        first = measure_part(
            output,
            reference,
            fps,
            ref_fps,
            ssim_every,
            poll,
            0,
            at,
            first_box=None if later is None else later.send_first_box,
            threads=1,
        )
        if later is not None:
            try:
                part, extra = later.result(poll)
                if plan is None or (
                    _same_times(first.last_times, plan[1])
                    and _same_times(part.first_times, plan[0])
                ):
                    return [first, part], extra
                log.warning(
                    "the evaluation's second process sought to other frames than one pass "
                    "pairs (%s, %s against %s): measured here",
                    first.last_times,
                    part.first_times,
                    plan,
                )
            except (RuntimeError, OSError, EOFError, pickle.UnpicklingError):
                log.warning("the evaluation's second process failed", exc_info=True)
        rest = measure_part(output, reference, fps, ref_fps, ssim_every, poll, at)
        return [first, rest], None if also is None else also()
    finally:
        if later is not None:
            later.close()


if __name__ == "__main__":
    sys.exit(_later_half(int(sys.argv[1]), int(sys.argv[2])))
