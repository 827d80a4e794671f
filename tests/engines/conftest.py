"""Fixtures of the engine tests: random networks in their published layout (no weights can
be downloaded), the directory a module's engines load them from, and a detected face.

A module names what its ``models_dir`` holds in ``MODELS``:

* ``"wav2lip"``: the random Wav2Lip generator (``model``) as ``wav2lip_gan.pth``;
* ``"wav2lip-onnx"``: the same generator exported as ``wav2lip_gan_96.onnx``;
* ``"musetalk"``: MuseTalk 1.5's UNet and VAE (reduced widths) and whisper-tiny;
* ``"face-parser"``: MuseTalk's BiSeNet face parser.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from lipsync.engines.wav2lip.net import Wav2Lip
    from lipsync.types import FaceObs


@pytest.fixture(scope="module")
def model() -> Wav2Lip:
    """A Wav2Lip generator with random weights, its BatchNorm fitted to real input."""
    from tests.engines._wav2lip_helpers import random_generator

    return random_generator(seed=1)


@pytest.fixture(scope="module")
def face() -> FaceObs:
    """The astronaut's face as dlib finds it, with Wav2Lip's padded box."""
    from tests.engines._wav2lip_helpers import detect_face
    from tests.media_factory import astronaut

    return detect_face(astronaut())


@pytest.fixture(scope="module")
def models_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models directory holding what the module's ``MODELS`` names (one per module)."""
    wanted = set(request.module.MODELS)
    directory = tmp_path_factory.mktemp("models")
    if wanted & {"wav2lip", "wav2lip-onnx"}:
        from lipsync.engines.wav2lip.export import export_onnx, save_published

        generator = request.getfixturevalue("model")
        if "wav2lip" in wanted:
            save_published(generator, directory / "wav2lip_gan.pth")
        if "wav2lip-onnx" in wanted:
            export_onnx(generator, directory / "wav2lip_gan_96.onnx", dynamic_batch=True)
    if "musetalk" in wanted:
        from tests.engines._musetalk_helpers import SMALL_UNET, SMALL_VAE, write_published

        write_published(directory, SMALL_UNET, SMALL_VAE)
    if "face-parser" in wanted:
        from tests.engines._musetalk_helpers import write_parser

        write_parser(directory)
    return directory
