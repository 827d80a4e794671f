"""Encode + mux: H.264 yuv420p + AAC in MP4 with faststart, written to a temporary name
and renamed into place only when complete (no half-written output, ever)."""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import uuid
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import numpy.typing as npt

from lipsync.errors import Canceled, OutputError


def temp_path_for(output: Path) -> Path:
    """A unique sibling temp name (same filesystem, so the final rename is atomic)."""
    return output.with_name(f".{output.stem}.{uuid.uuid4().hex[:12]}.part{output.suffix}")


class VideoWriter:
    """Streaming MP4 writer. Use as a context manager; call :meth:`commit` to publish.

    Audio (all of it, planar float32 ``(C, N)``) is given up front and interleaved with the
    video as frames arrive, so the file is properly interleaved.
    """

    def __init__(
        self,
        output: Path,
        width: int,
        height: int,
        fps: Fraction,
        audio: npt.NDArray[np.float32] | None,
        audio_rate: int,
        crf: int = 12,
        preset: str = "veryfast",
        threads: int = 0,
        queue_size: int = 8,
        audio_codec: str = "aac",
    ) -> None:
        self.output = Path(output)
        self.width, self.height = width + width % 2, height + height % 2  # yuv420p needs even
        self.src_width, self.src_height = width, height
        self.fps = Fraction(fps).limit_denominator(100000)
        self.audio = audio
        self.audio_rate = audio_rate
        self.audio_codec = audio_codec  # aac, or flac (lossless, 16-bit)
        self.crf, self.preset, self.threads = crf, preset, threads
        self.tmp = temp_path_for(self.output)
        self.frames_written = 0  # accepted by write()
        self._encoded = 0  # handed to the encoder
        self._queue: queue.Queue[npt.NDArray[np.uint8] | None] = queue.Queue(maxsize=queue_size)
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._queue_size = queue_size
        self._audio_pos = 0
        self._container: Any = None
        self._vstream: Any = None
        self._astream: Any = None
        self._committed = False

    def __enter__(self) -> VideoWriter:
        import av

        self.output.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._container = av.open(
                str(self.tmp), mode="w", format="mp4", options={"movflags": "+faststart"}
            )
            vs = self._container.add_stream("libx264", rate=self.fps)
            vs.width, vs.height = self.width, self.height
            vs.pix_fmt = "yuv420p"
            vs.options = {"crf": str(self.crf), "preset": self.preset}
            vs.codec_context.thread_count = self.threads
            self._vstream = vs
            if self.audio is not None:
                layout = "mono" if self.audio.shape[0] == 1 else "stereo"
                ast = self._container.add_stream(
                    self.audio_codec, rate=self.audio_rate, layout=layout
                )
                if self.audio_codec == "aac":
                    ast.bit_rate = 160_000
                self._astream = ast
        except Exception as exc:
            self._cleanup()
            raise OutputError(f"cannot create {self.output.name}: {exc}") from exc
        if self._queue_size > 0:
            self._thread = threading.Thread(target=self._worker, name="lipsync-encode", daemon=True)
            self._thread.start()
        return self

    def write(self, image: npt.NDArray[np.uint8]) -> None:
        """Append a frame: RGB (H, W, 3), or I420 (H*3/2, W) at the even-padded size.

        Frames are encoded on a background thread (x264 and muxing release the GIL), so
        encoding overlaps with the next batch's work; at most ``queue_size`` frames wait.
        """
        self._raise_worker_error()
        if image.ndim == 2 and image.shape != (self.height * 3 // 2, self.width):
            raise OutputError(
                f"I420 frame of shape {image.shape} does not fit {self.width}x{self.height}"
            )
        if self._thread is None:
            self._encode(image)
        else:
            self._queue.put(image)
        self.frames_written += 1

    def _encode(self, image: npt.NDArray[np.uint8]) -> None:
        import av

        if image.ndim == 2:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="yuv420p")
        else:
            if image.shape[1] != self.width or image.shape[0] != self.height:
                image = np.pad(
                    image,
                    ((0, self.height - image.shape[0]), (0, self.width - image.shape[1]), (0, 0)),
                    mode="edge",
                )
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        frame.pts = self._encoded
        frame.time_base = 1 / self.fps
        for packet in self._vstream.encode(frame):
            self._container.mux(packet)
        self._encoded += 1
        self._write_audio_until(self._encoded / self.fps)

    def _worker(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self._error is not None:
                continue  # drain after a failure; the caller sees the error
            try:
                self._encode(item)
            except BaseException as exc:  # surfaced to the caller's thread
                self._error = exc

    def _raise_worker_error(self) -> None:
        if self._error is not None:
            raise OutputError(f"encoding {self.output.name} failed: {self._error}") from self._error

    def _stop_worker(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    def _write_audio_until(self, t: Fraction | float | None) -> None:
        import av

        if self._astream is None or self.audio is None:
            return
        total = self.audio.shape[1]
        end = total if t is None else min(total, int(float(t) * self.audio_rate))
        step = 1024
        while self._audio_pos < end:
            stop = min(end, self._audio_pos + step * 8)
            chunk = np.ascontiguousarray(self.audio[:, self._audio_pos : stop], dtype=np.float32)
            layout = "mono" if chunk.shape[0] == 1 else "stereo"
            if self.audio_codec == "flac":  # 16-bit, rounded (no dither)
                pcm = np.clip(np.round(chunk * 32768.0), -32768, 32767).astype(np.int16)
                frame = av.AudioFrame.from_ndarray(
                    np.ascontiguousarray(pcm.T.reshape(1, -1)), format="s16", layout=layout
                )
            else:
                frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=layout)
            frame.sample_rate = self.audio_rate
            frame.pts = self._audio_pos
            frame.time_base = Fraction(1, self.audio_rate)
            for packet in self._astream.encode(frame):
                self._container.mux(packet)
            self._audio_pos = stop

    def commit(self) -> Path:
        """Flush encoders, close the file and rename it into place."""
        self._stop_worker()
        self._raise_worker_error()
        try:
            for packet in self._vstream.encode(None):
                self._container.mux(packet)
            self._write_audio_until(None)
            if self._astream is not None:
                for packet in self._astream.encode(None):
                    self._container.mux(packet)
            self._container.close()
            self._container = None
            os.replace(self.tmp, self.output)
        except Canceled:  # a stop that landed during the flush is a stop, not a bad output
            self._cleanup()
            raise
        except Exception as exc:
            self._cleanup()
            raise OutputError(f"cannot finish {self.output.name}: {exc}") from exc
        self._committed = True
        return self.output

    def _cleanup(self) -> None:
        self._stop_worker()
        if self._container is not None:
            with contextlib.suppress(Exception):  # best effort on the error path
                self._container.close()
            self._container = None
        self.tmp.unlink(missing_ok=True)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self._committed:
            self._cleanup()
