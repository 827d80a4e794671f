"""Serve source frames in any order a timeline asks for, with bounded memory.

Forward runs stream from one decoder; a jump back (loop) restarts near the target with a
keyframe seek; a backward run (bounce) is served window by window, each window decoded
forward and then played in reverse. At most ``window`` frames are held at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt

from lipsync.media.decode import DecodedFrame, iter_frames, read_image

Image = npt.NDArray[np.uint8]  # a decoded frame in the reader's pixel format


class FrameReader:
    def __init__(
        self,
        path: Path,
        frame_times: npt.NDArray[np.float64],
        is_image: bool,
        window: int = 16,
        pixel_format: str = "i420",
        size: tuple[int, int] | None = None,
    ) -> None:
        self.path = path
        self.pixel_format = pixel_format
        self.size = size  # frames are scaled to this (width, height); None: as decoded
        self.times = frame_times
        self.is_image = is_image
        self.window = max(2, window)
        self._it: Iterator[DecodedFrame] | None = None
        self._pos = -1  # index of the frame last taken from _it
        self._last: tuple[int, Image] | None = None
        self.seeks = 0

    def _open_at(self, index: int) -> None:
        self._close()
        self.seeks += 1
        start_t = float(self.times[index]) if index > 0 else None
        self._it = iter_frames(
            self.path,
            start_index=index,
            start_time_s=start_t,
            pixel_format=self.pixel_format,
            size=self.size,
        )
        self._pos = index - 1

    def _close(self) -> None:
        if self._it is not None:
            close = getattr(self._it, "close", None)
            if close:
                close()
        self._it = None

    def _forward_to(self, index: int) -> Image:
        if self._it is None or index <= self._pos:
            # Restart (jump back) or first use; seek only when far from the start.
            self._open_at(index if index > 0 else 0)
        assert self._it is not None
        # Large forward jumps: seek instead of decoding everything in between.
        if index - self._pos > 250:
            self._open_at(index)
        frame: DecodedFrame | None = None
        while self._pos < index:
            frame = next(self._it)
            self._pos = frame.index
        assert frame is not None
        return frame.image

    def frames(self, sequence: npt.NDArray[np.int64]) -> Iterator[tuple[int, int, Image]]:
        """Yield ``(output_index, source_index, image)`` for every entry of ``sequence``."""
        if self.is_image:
            image = read_image(self.path, self.pixel_format, self.size)
            for i, d in enumerate(sequence):
                yield i, int(d), image
            return
        n = len(sequence)
        i = 0
        try:
            while i < n:
                d = int(sequence[i])
                if self._last is not None and self._last[0] == d:
                    yield i, d, self._last[1]
                    i += 1
                    continue
                if self._last is not None and d == self._last[0] - 1:
                    # Backward run: find its extent and serve it in reversed windows.
                    j = i
                    while j + 1 < n and int(sequence[j + 1]) == int(sequence[j]) - 1:
                        j += 1
                    yield from self._backward(sequence, i, j)
                    i = j + 1
                    continue
                image = self._forward_to(d)
                self._last = (d, image)
                yield i, d, image
                i += 1
        finally:
            self._close()

    def _backward(
        self, sequence: npt.NDArray[np.int64], i: int, j: int
    ) -> Iterator[tuple[int, int, Image]]:
        hi = int(sequence[i])
        lo_end = int(sequence[j])
        k = i
        while hi >= lo_end:
            lo = max(lo_end, hi - self.window + 1)
            self._open_at(lo)
            assert self._it is not None
            buf: list[Image] = []
            while self._pos < hi:
                f = next(self._it)
                self._pos = f.index
                if f.index >= lo:
                    buf.append(f.image)
            for d in range(hi, lo - 1, -1):
                image = buf[d - lo]
                self._last = (d, image)
                yield k, d, image
                k += 1
            hi = lo - 1
