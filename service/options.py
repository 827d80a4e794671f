"""A job's stored options plus the service's own settings -> :class:`RunOptions`, and the
push fields that belong to the service rather than the pipeline.

A push stores only what its form fields said (:func:`parse_push_fields`, as JSON); the
service's settings supply the rest when the job runs: the default engine and enhancer, the
device, where weights live, the media limits and the output size cap.

The pipeline's options are declared in :mod:`lipsync.options`; the service's own (today:
``evaluate``, whether the result is measured after it is made) are declared here, once,
with the same :class:`~lipsync.optionspec.OptionSpec`: the push form, its OpenAPI schema,
``GET /options`` and the web page read both lists.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lipsync.enhance import ONNX_PREFIX
from lipsync.errors import InvalidOption
from lipsync.options import RunOptions, parse_public_fields, public_specs
from lipsync.optionspec import OptionMeta, OptionSpec
from service.settings import Settings

#: Push fields the service reads itself (never passed to the pipeline).
SERVICE_SPECS: tuple[OptionSpec, ...] = (
    OptionSpec(
        name="evaluate",
        kind="bool",
        count=1,
        optional=False,
        default=True,
        meta=OptionMeta(
            help="measure the lip sync of the result (lipsync evaluate) after it is ready; "
            "the download never waits for it",
            label="Measure the lip sync",
            public=True,
            advanced=True,
        ),
    ),
)
SERVICE_FIELDS = frozenset(s.name for s in SERVICE_SPECS)


def push_specs() -> tuple[OptionSpec, ...]:
    """Every option a push may send: the pipeline's public ones, then the service's."""
    return (*public_specs(), *SERVICE_SPECS)


def parse_push_fields(fields: Mapping[str, str]) -> dict[str, Any]:
    """A push's option form fields -> checked values, JSON-ready; raises
    :class:`InvalidOption` naming the field."""
    own = {s.name: s for s in SERVICE_SPECS}
    values: dict[str, Any] = {}
    for name, text in fields.items():
        if name in own and text.strip():
            values[name] = own[name].parse(text, public=True)
    values.update(parse_public_fields({k: v for k, v in fields.items() if k not in own}))
    return values


def wants_evaluation(options: Mapping[str, Any], settings: Settings) -> tuple[bool, str]:
    """Whether the job's result is measured, and why not when it is not."""
    if not settings.evaluate_results:
        return False, "off on this server (LIPSYNC_EVALUATE_RESULTS=false)"
    if options.get("evaluate") is False:
        return False, "evaluate=false"
    return True, ""


def build_run_options(options: Mapping[str, Any], settings: Settings) -> RunOptions:
    """The validated push options plus the service's settings -> :class:`RunOptions`.

    Raises :class:`lipsync.errors.InvalidOption` (naming the field) for a bad value."""
    values = {k: v for k, v in options.items() if k not in SERVICE_FIELDS}
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


__all__ = [
    "SERVICE_FIELDS",
    "SERVICE_SPECS",
    "InvalidOption",
    "build_run_options",
    "parse_push_fields",
    "push_specs",
    "wants_evaluation",
]
