"""What clients are told when something fails: fit-for-clients messages."""

from __future__ import annotations

import re

from service.settings import Settings


def public_message(message: str, settings: Settings) -> str:
    """An error message fit for clients: paths inside the data dir (FFmpeg quotes the file
    it failed on) are cut down to the file's name, so server paths never leak."""
    roots = {str(settings.data_dir), str(settings.data_dir.resolve())}
    for root in sorted(roots, key=len, reverse=True):
        tail = r"/(?:[^\s'\"/]+/)*([^\s'\"/]+)"
        message = re.sub(r"(?<![\w.-])" + re.escape(root) + tail, r"\1", message)
    return message
