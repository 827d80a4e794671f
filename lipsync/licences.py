"""Licences of every model the project loads, and the commercial-only mode.

Two lists:

* :data:`BUNDLED`: the model files that come with installed packages or with the set-up
  (``scripts/bootstrap.sh``), which a job or ``lipsync evaluate`` loads without anyone
  putting weights in ``models/``: file, package, use, licence, whether commercial use is
  allowed, where that statement comes from, and what the model was trained on (or that it
  could not be found).
* the optional weights of ``models/`` (:func:`lipsync.models.model_files`: the shared ones
  and each engine's, declared in its wing), each with its own ``commercial`` flag.

``commercial`` is ``True`` (allowed), ``False`` (excluded by the licence or by the rights
holders' stated terms) or ``None`` (not settled: the terms of the model or of its training
data need checking upstream). Commercial-only mode (``LIPSYNC_COMMERCIAL_ONLY=1``, or
``--commercial-only``, the :class:`~lipsync.options.RunOptions` field ``commercial_only``)
refuses every choice that would load a ``False`` component, with
:class:`LicenceRestricted` (code ``licence_restricted``, naming the component) when the
options are built: before any file is opened, and at the push for the service (422).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from lipsync.errors import InvalidOption
from lipsync.models import default_models_dir, model_by_filename, model_files
from lipsync.registry import engine_specs

COMMERCIAL_ONLY_ENV = "LIPSYNC_COMMERCIAL_ONLY"
_TRUE = {"1", "true", "yes", "on"}

DLIB_MODELS_README = "davisking/dlib-models README.md"
IBUG_NOTE = (
    "The license for this dataset excludes commercial use and Stefanos Zafeiriou, one of "
    "the creators of the dataset, asked me to include a note here saying that the trained "
    "model therefore can't be used in a commerical product."
)


class LicenceRestricted(InvalidOption):
    """A choice that loads a component whose licence excludes commercial use, refused in
    commercial-only mode. ``component`` names it; ``field`` the option that chose it."""

    code = "licence_restricted"

    def __init__(self, component: str, licence: str, field: str | None = None) -> None:
        super().__init__(
            f"{component}: its licence excludes commercial use ({licence}); commercial-only "
            f"mode ({COMMERCIAL_ONLY_ENV}=1 / --commercial-only) refuses it",
            field=field,
        )
        self.component = component

    def to_dict(self) -> dict[str, str]:
        return {**super().to_dict(), "component": self.component}


@dataclass(frozen=True)
class Component:
    """One model file (or built-in model) the project loads."""

    key: str  # stable id
    name: str
    file: str  # file name; "(built in)" for a model compiled into a library
    package: str  # where the file comes from
    used_for: str
    licence: str
    commercial: bool | None  # True: allowed; False: excluded; None: check upstream
    source: str  # where the licence and commercial statements come from
    training_data: str  # what it was trained on, with the source, or that none was found
    note: str = ""  # a quoted note where the source has one
    location: str = ""  # how the file is found: "package:<module>/<path>" or "models:<path>"

    @property
    def commercial_text(self) -> str:
        return {True: "yes", False: "NO", None: "check"}[self.commercial]

    def path(self, models_dir: Path | None = None) -> Path | None:
        """Where the file is on this machine (None: built in, or not installed)."""
        kind, _, rel = self.location.partition(":")
        if kind == "package":
            import importlib.util

            module, _, inner = rel.partition("/")
            spec = importlib.util.find_spec(module)
            if spec is None or not spec.submodule_search_locations:
                return None
            return Path(next(iter(spec.submodule_search_locations))) / inner
        if kind == "models":
            return Path(models_dir or default_models_dir()) / rel
        return None

    def to_dict(self, models_dir: Path | None = None) -> dict[str, Any]:
        path = self.path(models_dir)
        data = asdict(self)
        data.pop("location")
        data["commercial_use"] = self.commercial_text
        data["path"] = str(path) if path is not None else None
        data["present"] = None if path is None else path.is_file()
        return data


_FRM = "face-recognition-models 0.3.0 (wheel metadata: MIT; its licence file: CC0 1.0)"
_FRM_LOC = "package:face_recognition_models/models/"

#: Every model file a default job (engines ``retrieval``/``viseme``, enhancer ``classical``,
#: detector ``dlib``) or ``lipsync evaluate`` loads, whatever package it comes from.
BUNDLED: tuple[Component, ...] = (
    Component(
        key="dlib-hog-face-detector",
        name="dlib HOG frontal face detector",
        file="(built in: dlib.get_frontal_face_detector)",
        package="dlib-bin (dlib 20)",
        used_for="face boxes in the face tracker (detector dlib, the default)",
        licence="Boost Software License 1.0 (dlib's source, the model's serialised filters "
        "included)",
        commercial=True,
        source="davisking/dlib dlib/image_processing/frontal_face_detector.h (licence header)",
        training_data="Labeled Faces in the Wild: frontal_faces.xml (4,748 images, mirrored) "
        "and left_faces.xml (493 images, and their mirror images), per the training log in "
        "frontal_face_detector.h. LFW's images are news photos (Yahoo News, 2002-2004); no "
        "licence for them, and no statement restricting models trained on them, was found",
    ),
    Component(
        key="dlib-shape-predictor-68",
        name="dlib 68-point shape predictor",
        file="shape_predictor_68_face_landmarks.dat",
        package=_FRM,
        used_for="68-point face landmarks, only with --landmarks dlib68 (or when the "
        "default mesh file is not set up)",
        licence="model: public domain (Davis King); trained on iBUG 300-W, whose licence "
        "excludes commercial use",
        commercial=False,
        source=f"{DLIB_MODELS_README}, shape_predictor_68_face_landmarks.dat.bz2",
        training_data="iBUG 300-W (Sagonas et al., IMAVIS 2016), per the dlib-models README",
        note=IBUG_NOTE,
        location=_FRM_LOC + "shape_predictor_68_face_landmarks.dat",
    ),
    Component(
        key="dlib-shape-predictor-5",
        name="dlib 5-point shape predictor",
        file="shape_predictor_5_face_landmarks.dat",
        package=_FRM,
        used_for="lipsync evaluate: the face frame (eye corners, nose base)",
        licence="public domain (Davis King)",
        commercial=True,
        source=f"{DLIB_MODELS_README}, shape_predictor_5_face_landmarks.dat.bz2",
        training_data="dlib's 5-point face landmark dataset: 7,198 faces in images downloaded "
        "from the internet, annotated by Davis King (dlib-models README)",
        location=_FRM_LOC + "shape_predictor_5_face_landmarks.dat",
    ),
    Component(
        key="dlib-mmod-face-detector",
        name="dlib CNN (MMOD) face detector",
        file="mmod_human_face_detector.dat",
        package=_FRM,
        used_for="lipsync evaluate: face boxes",
        licence="public domain (Davis King)",
        commercial=True,
        source=f"{DLIB_MODELS_README}, mmod_human_face_detector.dat.bz2",
        training_data="dlib face detection dataset 2016-09-30: face images Davis King found "
        "in ImageNet, AFLW, Pascal VOC, the VGG dataset, WIDER and FaceScrub, all annotated "
        "by him (dlib-models README); those collections have their own terms",
        location=_FRM_LOC + "mmod_human_face_detector.dat",
    ),
    Component(
        key="dlib-face-recognition-resnet",
        name="dlib face recognition ResNet v1",
        file="dlib_face_recognition_resnet_model_v1.dat",
        package=_FRM,
        used_for="face descriptors: grouping faces by identity (lipsync/face/identity.py)",
        licence="public domain (Davis King)",
        commercial=True,
        source=f"{DLIB_MODELS_README}, dlib_face_recognition_resnet_model_v1.dat.bz2",
        training_data="about 3 million faces of 7,485 identities: FaceScrub, the VGG face "
        "dataset and images scraped from the internet, about half from VGG and FaceScrub "
        "(dlib-models README); a cautious company checks FaceScrub's and VGG's terms",
        location=_FRM_LOC + "dlib_face_recognition_resnet_model_v1.dat",
    ),
    Component(
        key="silero-vad",
        name="Silero VAD",
        file="silero_vad.onnx",
        package="silero-vad 6.2.3",
        used_for="voice activity: the engines' speech analysis, lipsync evaluate's pauses",
        licence="MIT",
        commercial=True,
        source="the LICENSE file in the silero-vad wheel (snakers4/silero-vad)",
        training_data="not stated in the wheel; not found",
        location="package:silero_vad/data/silero_vad.onnx",
    ),
    Component(
        key="pocketsphinx-en-us",
        name="PocketSphinx US English acoustic model and phone language model",
        file="en-us/ (acoustic model), en-us-phone.lm.bin",
        package="pocketsphinx 5.1.1",
        used_for="lipsync evaluate: English phones for the viseme contrast",
        licence="BSD-2-Clause style (model: Copyright 2015 Alpha Cephei Inc.; pocketsphinx: "
        "Carnegie Mellon University)",
        commercial=True,
        source="pocketsphinx/model/en-us/en-us/README and the LICENSE file in the wheel",
        training_data="'generic US english acoustic model trained with latest sphinxtrain' "
        "(the model's README); the corpora are not named there; not found",
        location="package:pocketsphinx/model/en-us/en-us-phone.lm.bin",
    ),
    Component(
        key="mediapipe-face-mesh",
        name="MediaPipe face mesh (face landmark model)",
        file="face_landmark.tflite",
        package="mediapipe 0.10.21 wheel on PyPI, taken out by scripts/bootstrap.sh into "
        "models/mediapipe/; run with ai-edge-litert",
        used_for="face landmarks (the default, --landmarks mediapipe), mapped to the "
        "68-point layout",
        licence="Apache-2.0",
        commercial=True,
        source="the LICENSE file in the mediapipe wheel; google/mediapipe "
        "docs/solutions/face_mesh.md",
        training_data="Google's own annotated face photos, per the MediaPipe Face Mesh model "
        "card and paper (Kartynnik et al. 2019, arXiv:1907.06724); not re-read here",
        location="models:mediapipe/face_landmark.tflite",
    ),
)

BUNDLED_BY_KEY: dict[str, Component] = {c.key: c for c in BUNDLED}


def commercial_only_from_env() -> bool:
    """``$LIPSYNC_COMMERCIAL_ONLY`` as a boolean (read when called, never at import)."""
    return os.environ.get(COMMERCIAL_ONLY_ENV, "").strip().lower() in _TRUE


#: Choices of an option that load a component excluded from commercial use:
#: option -> value -> component key (BUNDLED) or registry file name (models.model_files).
#: The engines' come from their wings (:func:`restricted_choices`).
RESTRICTED_CHOICES: dict[str, dict[str, str]] = {
    "landmarks": {"dlib68": "dlib-shape-predictor-68"},
}


def restricted_choices() -> dict[str, dict[str, str]]:
    """:data:`RESTRICTED_CHOICES`, and each engine whose weights include a file excluded
    from commercial use (named by its first such file)."""
    engines = {
        spec.name: refused[0].filename
        for spec in engine_specs()
        if (refused := [m for m in spec.weights if m.commercial is False])
    }
    return {**RESTRICTED_CHOICES, "engine": engines}


def _describe(ref: str) -> tuple[str, str]:
    """(name, licence) of a component key or a registry file name."""
    if ref in BUNDLED_BY_KEY:
        c = BUNDLED_BY_KEY[ref]
        return f"{c.name} ({c.file})", c.licence
    m = model_by_filename()[ref]
    return f"{m.name} weights ({m.filename})", m.licence


def restricted_file(path: Path | str) -> str | None:
    """The registry file name when ``path`` names a weights file excluded from commercial
    use (by its file name: a renamed copy is not recognised)."""
    name = Path(path).name
    for filename, model in model_by_filename().items():
        if model.commercial is False and (filename == name or filename.endswith("/" + name)):
            return filename
    return None


def restricted_values(option: str) -> set[str]:
    """The values of ``option`` that commercial-only mode refuses (for the web form)."""
    return set(restricted_choices().get(option, {}))


def check_commercial_use(values: Mapping[str, Any]) -> None:
    """Raise :class:`LicenceRestricted` for the first chosen component whose licence
    excludes commercial use (``values``: option name -> value, as in :class:`RunOptions`)."""
    for option, refused in restricted_choices().items():
        value = values.get(option)
        if isinstance(value, str) and value in refused:
            raise LicenceRestricted(*_describe(refused[value]), field=option)
    enhancer = values.get("enhancer")
    if isinstance(enhancer, str) and enhancer.startswith("onnx:"):
        hit = restricted_file(enhancer.removeprefix("onnx:"))
        if hit:
            raise LicenceRestricted(*_describe(hit), field="enhancer")
    checkpoint = values.get("checkpoint")
    if checkpoint is not None:
        hit = restricted_file(checkpoint)
        if hit:
            raise LicenceRestricted(*_describe(hit), field="checkpoint")


class Chosen(Protocol):
    """What :func:`notices` reads of a job's options (a :class:`~lipsync.options.RunOptions`)."""

    @property
    def landmark_model(self) -> str: ...

    @property
    def engine(self) -> str: ...


def notices(options: Chosen) -> list[str]:
    """One line per chosen component whose licence excludes commercial use, for a job to
    print or log when it uses one (e.g. ``--landmarks dlib68``); empty on the clean path."""
    lines = []
    for option, refused in restricted_choices().items():
        value = options.landmark_model if option == "landmarks" else getattr(options, option, None)
        if isinstance(value, str) and value in refused:
            name, licence = _describe(refused[value])
            lines.append(f"{option} {value}: {name} is not for commercial use ({licence})")
    return lines


def report(models_dir: Path | None = None, commercial_only: bool | None = None) -> dict[str, Any]:
    """What ``lipsync models --json`` and ``GET /api/v1/lipsync/options`` show: the mode,
    the bundled models and the optional weights' licences (no hashing)."""
    mode = commercial_only_from_env() if commercial_only is None else commercial_only
    return {
        "commercial_only": mode,
        "bundled": [c.to_dict(models_dir) for c in BUNDLED],
        "optional": [
            {
                "file": m.filename,
                "used_by": m.used_by,
                "licence": m.licence,
                "commercial": m.commercial,
                "commercial_use": {True: "yes", False: "NO", None: "check"}[m.commercial],
            }
            for m in model_files()
        ],
    }


def format_bundled(models_dir: Path | None = None) -> str:
    """The bundled models as a plain-text table (``lipsync models``)."""
    header = ("file", "package", "used for", "commercial", "licence")
    rows = [(c.file, c.package, c.used_for, c.commercial_text, c.licence) for c in BUNDLED]
    widths = [min(48, max(len(r[i]) for r in [header, *rows])) for i in range(4)]

    def line(row: tuple[str, ...]) -> str:
        cells = [row[i][: widths[i]].ljust(widths[i]) for i in range(4)]
        return "  ".join([*cells, row[4]]).rstrip()

    lines = [line(header), "  ".join("-" * w for w in widths) + "  -------", *map(line, rows)]
    restricted = [c for c in BUNDLED if c.commercial is False]
    for c in restricted:
        lines += ["", f"{c.file}: NOT for commercial use. {c.source}:", f'  "{c.note}"']
    return "\n".join(lines)
