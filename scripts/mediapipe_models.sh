#!/usr/bin/env bash
# Put MediaPipe's face-mesh model (face_landmark.tflite, Apache-2.0) into DEST (default
# ${LIPSYNC_MODELS_DIR:-models}/mediapipe), taken out of the mediapipe wheel on PyPI: the
# commercially clean landmark model of the face tracker (lipsync/face/landmarks.py).
# mediapipe itself is never installed (it pins numpy<2): only its model file is used, run with
# ai-edge-litert. The wheel and the file are checked against pinned SHA-256s. Safe to re-run:
# it does nothing when the file is there. Called by scripts/bootstrap.sh; images run it too.
# Usage: scripts/mediapipe_models.sh [DEST] (PYTHON: the interpreter whose pip downloads).
set -euo pipefail
cd "$(dirname "$0")/.."

DEST=${1:-${LIPSYNC_MODELS_DIR:-models}/mediapipe}
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
WHEEL_REQ='mediapipe==0.10.21 --hash=sha256:05dc4a9e593655a79558d05d6227d31018c2537a4bd3362b51e230cf22aecfe3'
MEMBER=mediapipe/modules/face_landmark/face_landmark.tflite
FILE_SHA=1055cb9d4a9ca8b8c688902a3a5194311138ba256bcc94e336d8373a5f30c814

if [ -f "$DEST/face_landmark.tflite" ] \
  && echo "$FILE_SHA  $DEST/face_landmark.tflite" | sha256sum -c --status; then
  exit 0
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "$WHEEL_REQ" >"$tmp/req.txt"
# The x86_64 CPython 3.11 wheel whatever this machine is: the model file is the same in all.
"$PY" -m pip download -q --no-deps --require-hashes --only-binary=:all: \
  --platform manylinux_2_28_x86_64 --python-version 3.11 --implementation cp --abi cp311 \
  -r "$tmp/req.txt" -d "$tmp"
"$PY" - "$tmp" "$DEST" "$MEMBER" "$FILE_SHA" <<'PY'
import hashlib
import sys
import zipfile
from pathlib import Path

tmp, dest, member, want = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4]
(wheel,) = tmp.glob("mediapipe-*.whl")
with zipfile.ZipFile(wheel) as zf:
    data = zf.read(member)
    licence = zf.read(next(n for n in zf.namelist() if n.endswith(".dist-info/LICENSE")))
got = hashlib.sha256(data).hexdigest()
if got != want:
    sys.exit(f"{member}: SHA-256 {got}, expected {want}")
dest.mkdir(parents=True, exist_ok=True)
part = dest / "face_landmark.tflite.part"
part.write_bytes(data)
part.replace(dest / "face_landmark.tflite")
(dest / "LICENSE").write_bytes(licence)
print(f"MediaPipe face mesh model (Apache-2.0): {dest / 'face_landmark.tflite'}")
PY
