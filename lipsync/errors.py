"""Typed errors with stable codes.

Every failure the pipeline reports to a user is a :class:`LipsyncError` subclass with a
machine-readable ``code`` (stable across releases: the service returns it in job status, the
CLI prints it) and a one-line human message. Anything else escaping the pipeline is a bug.
"""

from __future__ import annotations


class LipsyncError(Exception):
    """Base class: ``code`` is stable, ``message`` is one line for people."""

    code: str = "internal_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


class UnsupportedMedia(LipsyncError):
    code = "unsupported_media"


class CorruptMedia(LipsyncError):
    code = "corrupt_media"


class AudioEmpty(LipsyncError):
    code = "audio_empty"


class TooLarge(LipsyncError):
    code = "too_large"


class NoFace(LipsyncError):
    code = "no_face"


class ModelMissing(LipsyncError):
    code = "model_missing"


class ModelMismatch(LipsyncError):
    code = "model_mismatch"


class InvalidOption(LipsyncError):
    """A bad option value; ``field`` names the option (as the API's form field) when known."""

    code = "invalid_option"

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field

    def to_dict(self) -> dict[str, str]:
        data = super().to_dict()
        if self.field:
            data["field"] = self.field
        return data


class Canceled(LipsyncError):
    code = "canceled"


class DeviceUnavailable(LipsyncError):
    code = "device_unavailable"


class OutputError(LipsyncError):
    code = "output_error"


ERROR_CODES: tuple[str, ...] = tuple(
    cls.code
    for cls in (
        UnsupportedMedia,
        CorruptMedia,
        AudioEmpty,
        TooLarge,
        NoFace,
        ModelMissing,
        ModelMismatch,
        InvalidOption,
        Canceled,
        DeviceUnavailable,
        OutputError,
        LipsyncError,
    )
)
