"""Headless Chromium for the browser tests: Debian's ``/usr/bin/chromium`` driven by
playwright (the ``browser`` fixture in tests/app/conftest.py), and the mark that skips a
module where it is not installed."""

from __future__ import annotations

from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip

#: Skips a module without Chromium (scripts/bootstrap.sh installs it).
NEEDED = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="Debian's chromium is not installed (/usr/bin/chromium); scripts/bootstrap.sh "
    "installs it",
)
