"""Face stage: detect, 68-point landmarks, track, smooth, choose."""

from __future__ import annotations

#: Face box detectors: name -> what it is (read by the CLI, the API and the web page).
#: ``dlib`` is the tracker's own HOG detector; the others are built by
#: :func:`lipsync.face.detectors.create_detector`.
DETECTORS: dict[str, str] = {
    "dlib": "dlib's HOG detector, built in (no weights)",
    "s3fd": "Wav2Lip's S3FD detector, needs models/s3fd.pth",
}
