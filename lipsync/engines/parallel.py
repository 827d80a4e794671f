"""Per-frame rendering on a few threads.

The weight-free engines render each frame independently of the others once the speech
track and the landmarks are known, and their work is OpenCV and NumPy calls that release the
GIL. Rendering a batch on ``min(2, usable cores)`` threads lets the second core work while
the first is inside Python; the encoder thread takes whatever is left.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from lipsync.device import cpu_threads

_T = TypeVar("_T")

MAX_THREADS = 2


class FrameMapper:
    """``map(fn, calls)``: ``fn(*args)`` for each args tuple, results in order."""

    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads if threads is not None else min(MAX_THREADS, cpu_threads())
        self._pool: ThreadPoolExecutor | None = None

    def map(self, fn: Callable[..., _T], calls: Sequence[tuple[object, ...]]) -> list[_T]:
        if self.threads <= 1 or len(calls) < 2:
            return [fn(*args) for args in calls]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="lipsync-render")
        return list(self._pool.map(lambda args: fn(*args), calls))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
