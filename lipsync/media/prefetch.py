"""Decode ahead on a thread of its own while the caller works on the frames it has.

FFmpeg's decoding, PyAV's frame copies and OpenCV's resizes release the GIL, so a decoder
running one step ahead of the face analysis (dlib) or the render (the engine, the encoder)
uses the time those spend inside Python or waiting. :class:`Prefetch` runs any iterator on
a daemon thread and hands its items over through a bounded queue: at most ``depth`` items
are held ahead (memory stays flat in the length of the input), an error raised by the
iterator is raised again in the caller at the point it would have been, and leaving the
``with`` block early (an error, a cancel) stops the thread and closes the iterator.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from types import TracebackType
from typing import Generic, TypeVar

_T = TypeVar("_T")

_POLL_S = 0.05  # how often a blocked producer looks whether it was told to stop


class _End:
    """The iterator's end (``error`` None) or its failure."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error


class Prefetch(Generic[_T]):
    """Iterate ``source`` on a background thread, ``depth`` items ahead of the caller.

    Use as a context manager and iterate it once; ``depth=0`` iterates ``source`` in the
    caller's thread (no thread at all)."""

    def __init__(self, source: Iterator[_T], depth: int = 4, name: str = "lipsync-decode"):
        self._source = source
        self._depth = depth
        self._name = name
        self._queue: queue.Queue[_T | _End] = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Prefetch[_T]:
        if self._depth > 0:
            self._thread = threading.Thread(target=self._produce, name=self._name, daemon=True)
            self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _put(self, item: _T | _End) -> bool:
        """Hand ``item`` over; False when the caller has stopped listening."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self) -> None:
        try:
            for item in self._source:
                if not self._put(item):
                    return
            self._put(_End())
        except BaseException as exc:  # raised again in the caller's thread
            self._put(_End(exc))
        finally:
            close = getattr(self._source, "close", None)
            if close is not None:
                close()  # a generator's finally blocks (the decoder's container) run here

    def __iter__(self) -> Iterator[_T]:
        if self._thread is None:
            yield from self._source
            return
        while True:
            item = self._queue.get()
            if isinstance(item, _End):
                if item.error is not None:
                    raise item.error
                return
            yield item

    def close(self) -> None:
        """Stop the producer (it finishes the item it is decoding) and wait for it."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is None:
            close = getattr(self._source, "close", None)
            if close is not None:
                close()
            return
        while thread.is_alive():
            try:  # a producer blocked on a full queue sees the stop at its next poll
                self._queue.get_nowait()
            except queue.Empty:
                thread.join(timeout=_POLL_S)
        thread.join()
