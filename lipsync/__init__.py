"""lipsync: re-animate the mouth in a face video to new speech.

Python API::

    import lipsync
    result = lipsync.run("face.mp4", "speech.wav", "out.mp4", engine="retrieval")
    print(result.frames, result.timings)

Nothing heavy is imported until :func:`run` is called.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from os import PathLike
from typing import TYPE_CHECKING, Any

from lipsync.errors import LipsyncError
from lipsync.options import MediaLimits, RunOptions

if TYPE_CHECKING:
    from lipsync.engines import EngineCache
    from lipsync.types import CancelCheck, ProgressCallback, Result

__all__ = ["LipsyncError", "MediaLimits", "RunOptions", "run"]
__version__ = "0.1.0"


def run(
    video: str | PathLike[str],
    audio: str | PathLike[str] | Sequence[str | PathLike[str]],
    output: str | PathLike[str],
    options: RunOptions | None = None,
    *,
    progress: ProgressCallback | None = None,
    should_cancel: CancelCheck | None = None,
    engines: EngineCache | None = None,
    **overrides: Any,
) -> Result:
    """Lip-sync ``video`` (or a still image) to ``audio`` and write an MP4 to ``output``.

    ``overrides`` are :class:`RunOptions` fields (``engine="wav2lip"``, ``fps=30``).
    ``progress(stage, fraction)`` is called as the job advances; ``should_cancel()`` is polled
    between batches and a True answer raises :class:`lipsync.errors.Canceled`. ``engines`` is a
    per-process cache so a worker loads models once. Raises :class:`LipsyncError` subclasses
    with stable codes for every input problem.
    """
    from pathlib import Path

    from lipsync.pipeline import Pipeline

    opts = replace(options or RunOptions(), **overrides) if overrides else (options or RunOptions())
    pipeline = Pipeline(opts, engines=engines)
    audios = Path(audio) if isinstance(audio, str | PathLike) else [Path(a) for a in audio]
    return pipeline.run(
        Path(video), audios, Path(output), progress=progress, should_cancel=should_cancel
    )
