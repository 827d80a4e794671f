"""Streaming multipart upload straight to the shared volume, under a hard size cap.

Starlette's own form parsing spools every file (to memory, then /tmp) before the endpoint
sees it, so a size check afterwards is too late. This parser reads the request body chunk by
chunk, writes file parts to their final place, and stops with :class:`UploadTooLarge` the
moment the byte count passes the cap, whether or not the client sent a Content-Length.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from python_multipart.multipart import MultipartParser, parse_options_header

from service.urlcheck import MAX_URL_LENGTH

FILE_FIELDS = ("audio", "video")
MAX_FIELD_BYTES = 1024
MAX_PARTS = 16
_SAFE_EXT = re.compile(r"^\.[A-Za-z0-9]{1,8}$")
_EXTRA_AUDIO = re.compile(r"^audio_[1-7]$")  # audio inputs 1, 2, … of a job with segments


class UploadError(Exception):
    """A malformed or incomplete upload (answered 422 with ``code``)."""

    def __init__(
        self, message: str, field: str | None = None, code: str = "invalid_upload"
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.code = code


class UploadTooLarge(Exception):
    """The body passed the configured cap (answered 413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"upload exceeds the limit of {limit} bytes")
        self.limit = limit


@dataclass
class SavedFile:
    path: Path
    size: int
    filename: str
    sha256: str


@dataclass
class ParsedUpload:
    files: dict[str, SavedFile] = field(default_factory=dict)
    fields: dict[str, str] = field(default_factory=dict)

    def digest(self) -> str:
        """Fingerprint of the payload (file contents and form fields) for idempotency."""
        doc = {
            "files": {name: f.sha256 for name, f in sorted(self.files.items())},
            "fields": dict(sorted(self.fields.items())),
        }
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def boundary_of(content_type: str | None) -> bytes:
    ctype, params = parse_options_header(content_type or "")
    boundary = params.get(b"boundary")
    if ctype != b"multipart/form-data" or not boundary:
        raise UploadError("the request body must be multipart/form-data with files audio and video")
    return boundary


def _extension(filename: str) -> str:
    suffix = Path(filename.replace("\\", "/")).suffix.lower()
    return suffix if _SAFE_EXT.match(suffix) else ""


class _Receiver:
    """Parser callbacks: file parts go to ``dest``, small text parts are kept in memory."""

    def __init__(self, dest: Path) -> None:
        self.dest = dest
        self.result = ParsedUpload()
        self._header_field = b""
        self._header_value = b""
        self._headers: dict[bytes, bytes] = {}
        self._name = ""
        self._file: IO[bytes] | None = None
        self._hash: hashlib._Hash | None = None
        self._size = 0
        self._filename = ""
        self._value = bytearray()
        self._parts = 0

    def callbacks(self) -> dict[str, object]:
        return {
            "on_part_begin": self.on_part_begin,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
        }

    def on_part_begin(self) -> None:
        self._parts += 1
        if self._parts > MAX_PARTS:
            raise UploadError("too many parts in the form")
        self._headers = {}
        self._header_field = self._header_value = b""

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        self._headers[self._header_field.lower()] = self._header_value
        self._header_field = self._header_value = b""

    def on_headers_finished(self) -> None:
        disposition, params = parse_options_header(self._headers.get(b"content-disposition", b""))
        name = params.get(b"name", b"").decode("utf-8", "replace")
        if disposition != b"form-data" or not name:
            raise UploadError("every form part needs a Content-Disposition with a name")
        self._name = name
        self._value = bytearray()
        self._size = 0
        filename = params.get(b"filename")
        if name in FILE_FIELDS or _EXTRA_AUDIO.match(name):
            if name in self.result.files:
                raise UploadError(f"{name} was sent twice", field=name)
            self._filename = (filename or b"").decode("utf-8", "replace")
            path = self.dest / f"{name}{_extension(self._filename)}"
            self._file = path.open("xb")
            self._hash = hashlib.sha256()
            self.result.files[name] = SavedFile(path, 0, self._filename, "")
        elif filename is not None:
            raise UploadError(
                f"unexpected file field {name!r}; send files as audio (audio_1, …) and video"
            )

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        if self._file is not None and self._hash is not None:
            self._file.write(chunk)
            self._hash.update(chunk)
            self._size += len(chunk)
            return
        self._value += chunk
        if self._name.endswith("_url"):
            # a URL field is judged as a URL (check_url: invalid_url past MAX_URL_LENGTH
            # characters); here only a bound on its bytes (4 per character at most)
            if len(self._value) > 4 * MAX_URL_LENGTH:
                message = f"{self._name}: the URL is longer than {MAX_URL_LENGTH} characters"
                raise UploadError(message, field=self._name, code="invalid_url")
            return
        if len(self._value) > MAX_FIELD_BYTES:
            raise UploadError(f"form field {self._name!r} is too long", field=self._name)

    def on_part_end(self) -> None:
        if self._file is not None and self._hash is not None:
            self._file.close()
            saved = self.result.files[self._name]
            saved.size, saved.sha256 = self._size, self._hash.hexdigest()
            self._file, self._hash = None, None
            return
        if self._name in self.result.fields:
            raise UploadError(f"form field {self._name!r} was sent twice", field=self._name)
        try:
            self.result.fields[self._name] = self._value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise UploadError(f"form field {self._name!r} is not UTF-8", field=self._name) from exc

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


async def receive_multipart(
    chunks: AsyncIterator[bytes], content_type: str | None, dest: Path, max_bytes: int
) -> ParsedUpload:
    """Parse the body from ``chunks`` into ``dest``; raises as soon as ``max_bytes`` is passed.

    The caller owns ``dest`` and removes it when this raises.
    """
    parser = MultipartParser(boundary_of(content_type))
    receiver = _Receiver(dest)
    parser.callbacks = receiver.callbacks()  # type: ignore[assignment]
    total = 0
    try:
        async for chunk in chunks:
            total += len(chunk)
            if total > max_bytes:
                raise UploadTooLarge(max_bytes)
            if chunk:
                parser.write(chunk)
        parser.finalize()
    except (UploadError, UploadTooLarge):
        raise
    except Exception as exc:  # the parser's own errors: malformed multipart
        raise UploadError(f"malformed multipart body: {exc}") from exc
    finally:
        receiver.close()
    if receiver._file is not None or any(f.sha256 == "" for f in receiver.result.files.values()):
        raise UploadError("the upload ended in the middle of a file")
    return receiver.result
