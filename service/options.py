"""A job's stored options plus the service's own settings -> :class:`RunOptions`.

A push stores only what its form fields said (:func:`lipsync.options.parse_public_fields`,
as JSON); the service's settings supply the rest when the job runs: the default engine and
enhancer, the device, where weights live, the media limits and the output size cap.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lipsync.enhance import ONNX_PREFIX
from lipsync.options import RunOptions
from service.settings import Settings


def build_run_options(options: Mapping[str, Any], settings: Settings) -> RunOptions:
    """The validated push options plus the service's settings -> :class:`RunOptions`.

    Raises :class:`lipsync.errors.InvalidOption` (naming the field) for a bad value."""
    values = dict(options)
    engine = values.pop("engine", None) or settings.default_engine
    enhancer = str(values.pop("enhancer", None) or settings.default_enhancer)
    if enhancer.startswith(ONNX_PREFIX) and "/" not in enhancer:  # a file in models/
        enhancer = f"{ONNX_PREFIX}{settings.models_dir / enhancer.removeprefix(ONNX_PREFIX)}"
    # The service's output cap applies to every job; a push's max_size can only lower it.
    caps = [c for c in (settings.max_output_size, values.pop("max_size", None)) if c is not None]
    return RunOptions.from_mapping(
        values,
        engine=engine,
        enhancer=enhancer,
        max_size=min(caps) if caps else None,
        device=settings.device,
        models_dir=settings.models_dir,
        limits=settings.media_limits,
    )
