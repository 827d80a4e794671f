"""Run options: one immutable value passed through the pipeline (no global config).

Every job option is declared once, as a field of :class:`RunOptions` made with
:func:`option`: its name, type and default are the field's; its help, choices or range,
whether a push may set it and which engines read it are the declaration's. From these
declarations come the CLI's flags (:mod:`lipsync.cli`), the API's form fields with their
OpenAPI schema and the web page's choices (``GET /api/v1/lipsync/options``), and all
validation: :meth:`OptionSpec.check` is the only place a value's range or choice is tested.
Choices come from their registries (engines, sync modes, detectors, devices, enhancers).

Adding an option is one :func:`option` field here plus the code that reads it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from functools import cache
from pathlib import Path
from typing import Any, get_args, get_type_hints

from lipsync.errors import InvalidOption
from lipsync.optionspec import Kind, OptionMeta, OptionSpec, option

__all__ = [
    "MediaLimits",
    "OptionMeta",
    "OptionSpec",
    "RunOptions",
    "option",
    "option_specs",
    "engine_options",
    "parse_public_fields",
    "public_specs",
    "spec_of",
]


def default_models_dir() -> Path:
    """``$LIPSYNC_MODELS_DIR`` or ``./models`` (resolved when called, never at import)."""
    return Path(os.environ.get("LIPSYNC_MODELS_DIR", "models"))


# -- registries the choices come from (imported when first asked, never at import) ----------
def _engines() -> dict[str, str]:
    from lipsync.engines import ENGINES

    return {name: spec.summary for name, spec in ENGINES.items()}


def _face_modes() -> dict[str, str]:
    return {
        "auto": "in each shot, the face whose mouth moves with the video's own speech when "
        "it shows several and has a sound track, else the largest",
        "largest": "the largest face of each shot",
    }


def _occlusion_modes() -> dict[str, str]:
    return {
        "auto": "the new mouth is drawn only where the person's own skin, lips or mouth "
        "show (learnt from their own face in each shot); a frame whose lips are mostly "
        "hidden keeps its own pixels",
        "off": "the new mouth is drawn over whatever is there",
    }


def _sync_modes() -> dict[str, str]:
    from lipsync.media.timeline import SYNC_MODES

    return dict(SYNC_MODES)


def _detectors() -> dict[str, str]:
    from lipsync.face import DETECTORS

    return dict(DETECTORS)


def _landmarkers() -> dict[str, str]:
    from lipsync.face.landmarks import LANDMARKERS

    return dict(LANDMARKERS)


def _commercial_only() -> bool:
    from lipsync.licences import commercial_only_from_env

    return commercial_only_from_env()


def _devices() -> dict[str, str]:
    from lipsync.device import DEVICES

    return dict(DEVICES)


def _enhancers() -> dict[str, str]:
    from lipsync.enhance import ENHANCERS

    return dict(ENHANCERS)


MUSETALK_PARSING_MODES: dict[str, str] = {
    "jaw": "MuseTalk 1.5: the lower face grown down to the jaw, cheeks kept, nose left out",
    "raw": "the skin and lips as parsed",
    "neck": "the skin, lips and neck",
}

X264_PRESETS: dict[str, str] = dict.fromkeys(
    ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow"), ""
)


@dataclass(frozen=True)
class MediaLimits:
    """Bounds applied at probe time, before any heavy work."""

    max_width: int = 4096
    max_height: int = 4096
    max_duration_s: float = 600.0
    max_streams: int = 16
    max_file_bytes: int = 2 * 1024**3
    probe_timeout_s: float = 10.0


_ONNX_ANY = r"onnx:.+"
_ONNX_NAME = r"onnx:[A-Za-z0-9][A-Za-z0-9._-]{0,127}\.onnx"


@dataclass(frozen=True)
class RunOptions:
    """Everything one job may be told; each field made with :func:`option` is a job option."""

    engine: str = option(
        "retrieval",
        help="the generator; retrieval re-uses the person's own mouths from the video and "
        "falls back to the viseme warp for stills and videos with too little mouth movement",
        label="Engine",
        choices=_engines,
        public=True,
    )
    checkpoint: Path | None = option(
        None,
        help="weights file for engines that need one (default: the engine's file in models/)",
        engines=("wav2lip", "wav2lip-onnx", "musetalk"),
        metavar="PATH",
    )
    enhancer: str = option(
        "classical",
        help="what is applied to the new mouth after it is drawn",
        label="Face enhancer",
        choices=_enhancers,
        pattern=_ONNX_ANY,
        public_pattern=_ONNX_NAME,
        example="onnx:NAME.onnx",
        public=True,
    )
    sync_mode: str = option(
        "loop",
        help="how a video shorter or longer than the speech is fitted",
        label="When lengths differ",
        choices=_sync_modes,
        public=True,
    )
    fps: float = option(
        25.0,
        help="frame rate of the output for a still image (videos keep their own)",
        label="Frame rate for a photo",
        minimum=1,
        maximum=120,
        example="25",
        public=True,
        advanced=True,
    )
    pads: tuple[int, int, int, int] = option(
        (0, 10, 0, 0),
        help="pixels added to the face box: top, bottom, left, right (as Wav2Lip)",
        label="Face box padding",
        minimum=-512,
        maximum=512,
        metavar="T,B,L,R",
        example="0,10,0,0",
        public=True,
        advanced=True,
    )
    box: tuple[int, int, int, int] | None = option(
        None,
        help="fixed face box for every frame, no detection: Y1,Y2,X1,X2 pixels (Wav2Lip's --box)",
        minimum=0,
        metavar="Y1,Y2,X1,X2",
    )
    face: str | None = option(
        None,
        help="which face in each shot (default auto)",
        label="Which face (automatic)",
        choices=_face_modes,
        group="face",
        public=True,
        advanced=True,
    )
    face_index: int | None = option(
        None,
        help="which face: the n-th from the left, 0-based (default: the largest)",
        label="Which face",
        minimum=0,
        maximum=64,
        group="face",
        public=True,
        advanced=True,
    )
    face_point: tuple[int, int] | None = option(
        None,
        help="which face: the one containing this X,Y pixel",
        label="Face at point",
        group="face",
        metavar="X,Y",
        example="256,200",
        public=True,
        advanced=True,
    )
    detector: str = option(
        "dlib",
        help="face box detector",
        label="Face detector",
        choices=_detectors,
        public=True,
        advanced=True,
    )
    landmarks: str | None = option(
        None,
        help="face landmark model (default: dlib68, or mediapipe in commercial-only mode; "
        "mediapipe: Apache-2.0, commercially clean; dlib68: trained on iBUG 300-W, not for "
        "commercial use)",
        label="Landmark model",
        choices=_landmarkers,
        public=True,
        advanced=True,
    )
    commercial_only: bool = option(
        default_factory=_commercial_only,
        help="refuse every component whose licence excludes commercial use (the 68-point "
        "landmarks, Wav2Lip, CodeFormer, ...) with error licence_restricted (default: "
        "$LIPSYNC_COMMERCIAL_ONLY)",
    )
    device: str = option("auto", help="where model engines run", choices=_devices)
    batch_size: int = option(
        16,
        help="frames per generator batch",
        minimum=1,
        maximum=512,
        engines=("wav2lip", "wav2lip-onnx", "musetalk"),
    )
    fp16: bool = option(
        False,
        help="half precision on a CUDA GPU (faster, less memory)",
        engines=("wav2lip", "musetalk"),
    )
    bbox_shift: int = option(
        0,
        help="MuseTalk: move the face crop's middle (the nose point) down by this many pixels, "
        "up when negative; changes how much of the face is regenerated (MuseTalk's bbox_shift)",
        label="Crop shift (MuseTalk)",
        minimum=-64,
        maximum=64,
        example="0",
        engines=("musetalk",),
        public=True,
        advanced=True,
    )
    extra_margin: int = option(
        10,
        help="MuseTalk 1.5: pixels added below the chin to the face crop: how far the jaw may "
        "move (MuseTalk's extra_margin)",
        label="Jaw margin (MuseTalk)",
        minimum=0,
        maximum=40,
        example="10",
        engines=("musetalk",),
        public=True,
        advanced=True,
    )
    parsing_mode: str = option(
        "jaw",
        help="MuseTalk: the region pasted back when the face-parsing weights "
        "(face-parse-bisent/79999_iter.pth) are in models/ (MuseTalk's parsing_mode)",
        label="Blend region (MuseTalk)",
        choices=lambda: MUSETALK_PARSING_MODES,
        engines=("musetalk",),
        public=True,
        advanced=True,
    )
    left_cheek_width: int = option(
        90,
        help="MuseTalk, parsing_mode jaw: pixels (of the 512-pixel parsing) left of the face's "
        "middle where the jaw region may grow; beyond, the cheek is kept",
        label="Left cheek width (MuseTalk)",
        minimum=20,
        maximum=160,
        example="90",
        engines=("musetalk",),
        public=True,
        advanced=True,
    )
    right_cheek_width: int = option(
        90,
        help="MuseTalk, parsing_mode jaw: the same on the right of the face's middle",
        label="Right cheek width (MuseTalk)",
        minimum=20,
        maximum=160,
        example="90",
        engines=("musetalk",),
        public=True,
        advanced=True,
    )
    occlusion: str = option(
        "auto",
        help="things in front of the mouth (a hand, a microphone) stay in front",
        label="Occlusions",
        choices=_occlusion_modes,
        public=True,
        advanced=True,
    )
    blend: float = option(1.0, help="strength of the new mouth, 0..1", minimum=0, maximum=1)
    crf: int = option(
        12, help="x264 quality of the output (lower is better)", minimum=0, maximum=51
    )
    preset: str = option("veryfast", help="x264 speed preset", choices=lambda: X264_PRESETS)
    max_size: int | None = option(
        None,
        help="scale the output so its longer side is at most this many pixels (sides even); "
        "the frames are scaled before anything works on them (default: the input's size)",
        label="Largest side",
        minimum=64,
        maximum=8192,
        metavar="N",
        example="1920",
        public=True,
        advanced=True,
    )
    models_dir: Path = option(
        default_factory=default_models_dir,
        help="where weights live (default: $LIPSYNC_MODELS_DIR or ./models)",
        metavar="DIR",
    )
    limits: MediaLimits = field(default_factory=MediaLimits)

    @property
    def landmark_model(self) -> str:
        """The landmark model a job uses: the one asked for, else dlib68 (the measured
        default), or mediapipe in commercial-only mode."""
        if self.landmarks is not None:
            return self.landmarks
        return "mediapipe" if self.commercial_only else "dlib68"

    def __post_init__(self) -> None:
        for spec in option_specs():
            value = getattr(self, spec.name)
            checked = spec.check(value)
            if checked is not value:
                object.__setattr__(self, spec.name, checked)
        check_groups({s.name: getattr(self, s.name) for s in option_specs()})
        if self.commercial_only:
            from lipsync.licences import check_options

            check_options(self)
        if self.box is not None and (self.box[0] >= self.box[1] or self.box[2] >= self.box[3]):
            raise InvalidOption(
                "box is Y1 Y2 X1 X2 in pixels with Y1 < Y2 and X1 < X2", field="box"
            )

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], **settings: Any) -> RunOptions:
        """Options stored as JSON (a job record) plus the caller's own fields; unknown keys
        are refused."""
        known = {s.name for s in option_specs()}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InvalidOption(f"unknown option {unknown[0]!r}", field=unknown[0])
        return cls(**{**values, **settings})


def check_groups(values: Mapping[str, Any]) -> None:
    """At most one option of each group given (e.g. ``face_index`` or ``face_point``)."""
    seen: dict[str, str] = {}
    for spec in option_specs():
        group = spec.meta.group
        if group is None or values.get(spec.name) is None:
            continue
        if group in seen:
            raise InvalidOption(f"give {seen[group]} or {spec.name}, not both", field=spec.name)
        seen[group] = spec.name


def _kind_of(hint: Any) -> tuple[Kind, int, bool]:
    args = get_args(hint)
    optional = type(None) in args
    if optional:
        (hint,) = [a for a in args if a is not type(None)]
    if get_args(hint):  # tuple[int, ...] of a fixed length
        return "ints", len(get_args(hint)), optional
    kinds: dict[Any, Kind] = {str: "str", int: "int", float: "float", bool: "bool", Path: "path"}
    return kinds[hint], 1, optional


@cache
def option_specs() -> tuple[OptionSpec, ...]:
    """Every declared option, in declaration order."""
    hints = get_type_hints(RunOptions)
    specs = []
    for f in fields(RunOptions):
        meta = f.metadata.get("option")
        if meta is None:
            continue
        kind, count, optional = _kind_of(hints[f.name])
        default = f.default if f.default is not MISSING else None
        specs.append(OptionSpec(f.name, kind, count, optional, default, meta))
    return tuple(specs)


def engine_options(options: RunOptions) -> tuple[tuple[str, Any], ...]:
    """``(name, value)`` of the options declared for the job's engine alone (e.g. musetalk's
    ``extra_margin``), for :class:`~lipsync.engines.base.EngineContext`'s ``options``."""
    return tuple(
        (s.name, getattr(options, s.name))
        for s in option_specs()
        if s.meta.engines == (options.engine,)
    )


def public_specs() -> tuple[OptionSpec, ...]:
    """The options a push may set (the API's form fields and the web page's)."""
    return tuple(s for s in option_specs() if s.meta.public)


def spec_of(name: str) -> OptionSpec:
    for spec in option_specs():
        if spec.name == name:
            return spec
    raise KeyError(name)


def parse_public_fields(fields_: Mapping[str, str]) -> dict[str, Any]:
    """A push's option form fields -> checked values, JSON-ready (empty fields are ignored).

    Raises :class:`InvalidOption` naming the field for an unknown field or a bad value."""
    specs = {s.name: s for s in public_specs()}
    values: dict[str, Any] = {}
    for name, text in fields_.items():
        if not text.strip():
            continue
        spec = specs.get(name)
        if spec is None:
            raise InvalidOption(f"unknown field {name!r}", field=name)
        values[name] = spec.parse(text, public=True)
    check_groups(values)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}
