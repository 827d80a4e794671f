#!/usr/bin/env bash
# Set up everything the project needs on a Debian/Ubuntu machine with Python 3.11+:
# system packages (redis-server, espeak-ng, chromium; installed with apt when run as root), the
# virtual environment .venv with every Python dependency, MediaPipe's face-mesh model (the
# commercially clean landmarks, from the mediapipe wheel on PyPI) and the bundled demo samples.
# Safe to re-run: it only does what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)'; then
  echo "Python 3.11 or newer is required (found: $("$PY" --version 2>&1))" >&2
  exit 1
fi

need_apt=()
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
command -v espeak-ng >/dev/null 2>&1 || need_apt+=(espeak-ng)
# Debian's chromium: the headless browser of the web page's test (tests/app/test_web_ui.py).
want_apt=()
[ -x /usr/bin/chromium ] || want_apt+=(chromium)
if [ $((${#need_apt[@]} + ${#want_apt[@]})) -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing system packages: ${need_apt[*]} ${want_apt[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" "${want_apt[@]}" >/dev/null
  elif [ ${#need_apt[@]} -gt 0 ]; then
    echo "missing system packages: ${need_apt[*]} ${want_apt[*]}" >&2
    echo "install them with: sudo apt-get install ${need_apt[*]} ${want_apt[*]}" >&2
    exit 1
  else
    echo "note: ${want_apt[*]} is not installed; the browser test of the web page will skip" >&2
    echo "install it with: sudo apt-get install ${want_apt[*]}" >&2
  fi
fi

# Python packages: exactly the versions and files of requirements/dev.lock (hashes required;
# `make lock` refreshes it from pyproject.toml + constraints.txt), then the project itself
# without dependencies. The lock's torch is the CPU build of the pinned version.
lock=requirements/dev.lock
stamp=.venv/.installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ constraints.txt -nt "$stamp" ] \
  || [ "$lock" -nt "$stamp" ]; then
  [ -x .venv/bin/python ] || "$PY" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q --require-hashes -r "$lock"
  .venv/bin/python -m pip install -q --no-deps -e .
  touch "$stamp"
fi

# The face tracker's landmark model (Apache-2.0): models/mediapipe/face_landmark.tflite (or
# under $LIPSYNC_MODELS_DIR), taken out of the pinned mediapipe wheel; git-ignored.
bash scripts/mediapipe_models.sh

if [ ! -f data/samples/astronaut.png ] || [ ! -f data/samples/speech_en.wav ]; then
  .venv/bin/python scripts/make_samples.py --out data/samples >/dev/null
fi
echo "environment ready: .venv (python $(.venv/bin/python -c 'import sys; print(sys.version.split()[0])'))"
