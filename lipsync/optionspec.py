"""The form of a job option's declaration: :func:`option` makes a dataclass field that
carries an :class:`OptionMeta`; :class:`OptionSpec` is how every interface reads one (parse
from text, check a value, describe as JSON); :func:`specs_of` reads a class's declarations.
The declarations themselves are the fields of :class:`lipsync.options.RunOptions` (the
pipeline's options) and of each engine's options class (its wing's ``options``).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal, get_args, get_type_hints

from lipsync.errors import InvalidOption

Kind = Literal["str", "int", "float", "bool", "path", "ints", "json"]


@dataclass(frozen=True)
class OptionMeta:
    """What a declaration says beyond the field's name, type and default."""

    help: str
    label: str = ""  # the web form's label (default: the name)
    choices: Callable[[], Mapping[str, str]] | None = None  # value -> description
    minimum: float | None = None  # also for each number of an "ints" option
    maximum: float | None = None
    pattern: str | None = None  # values accepted beyond the choices (full match)
    public_pattern: str | None = None  # the same for pushes (no server paths)
    public: bool = False  # a push may set it (else: CLI, library and service settings only)
    engines: tuple[str, ...] = ()  # the engines that read it; () = the whole pipeline
    group: str | None = None  # at most one option of a group may be given
    metavar: str | None = None
    example: str | None = None
    advanced: bool = False  # the web page shows it under "More options"
    cli: bool = True
    # A structured option (kind "json": a JSON list or object, e.g. segments): checks and
    # normalises the decoded value, raising InvalidOption with the field path at fault.
    structured: Callable[[Any], Any] | None = None


def option(
    default: Any = MISSING, *, default_factory: Any = MISSING, help: str, **meta: Any
) -> Any:
    """Declare one job option (a :class:`RunOptions` field); see :class:`OptionMeta`."""
    metadata = {"option": OptionMeta(help=help, **meta)}
    if default_factory is not MISSING:
        return field(default_factory=default_factory, metadata=metadata)
    return field(default=default, metadata=metadata)


_SPLIT = re.compile(r"[\s,]+")
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}


@dataclass(frozen=True)
class OptionSpec:
    """One declared option, as every interface reads it."""

    name: str
    kind: Kind
    count: int  # how many integers an "ints" option takes (else 1)
    optional: bool  # None is a valid value (the option may be absent)
    default: Any
    meta: OptionMeta

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def shown_default(self) -> str | None:
        """The default as a user writes it (``0,10,0,0``); None for none and for a flag."""
        if self.default is None or self.kind == "bool":
            return None
        if self.kind == "ints":
            return ",".join(map(str, self.default))
        return str(self.default)

    def choice_map(self) -> dict[str, str]:
        return dict(self.meta.choices()) if self.meta.choices else {}

    def _fail(self, message: str) -> InvalidOption:
        return InvalidOption(f"{self.name} {message}", field=self.name)

    def parse(self, text: str, *, public: bool = False) -> Any:
        """A value from text (a form field, a CLI argument), checked (``public``: as a
        push's value, see :meth:`check`)."""
        text = text.strip()
        if self.kind == "json":
            try:
                decoded = json.loads(text)
            except ValueError:
                raise self._fail("must be JSON") from None
            return self.check(decoded, public=public)
        if self.kind == "ints":
            parts = [p for p in _SPLIT.split(text) if p]
            what = f"takes {self.count} integers separated by commas or spaces"
            if len(parts) != self.count:
                raise self._fail(what)
            try:
                return self.check(tuple(int(p) for p in parts), public=public)
            except ValueError:
                raise self._fail(what) from None
        if self.kind == "bool":
            if text.lower() not in _TRUE | _FALSE:
                raise self._fail("must be true or false")
            return text.lower() in _TRUE
        if self.kind in ("int", "float"):
            try:
                number = int(text) if self.kind == "int" else float(text)
            except ValueError:
                what = "an integer" if self.kind == "int" else "a number"
                raise self._fail(f"must be {what}") from None
            return self.check(number, public=public)
        return self.check(Path(text) if self.kind == "path" else text, public=public)

    def check(self, value: Any, *, public: bool = False) -> Any:
        """``value`` normalised (lists to tuples, text to paths), or :class:`InvalidOption`.

        ``public``: judged as a push's value (server paths refused)."""
        if value is None:
            if self.optional:
                return None
            raise self._fail("must be given")
        checker = getattr(self, f"_check_{self.kind}")
        return checker(value, public)

    def _range(self, number: float) -> None:
        low, high = self.meta.minimum, self.meta.maximum
        if (low is not None and number < low) or (high is not None and number > high):
            if low is not None and high is not None:
                raise self._fail(f"must be between {low:g} and {high:g}")
            raise self._fail(f"must be >= {low:g}" if low is not None else f"must be <= {high:g}")

    def _check_int(self, value: Any, public: bool) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._fail("must be an integer")
        self._range(value)
        return value

    def _check_float(self, value: Any, public: bool) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._fail("must be a number")
        if not math.isfinite(value):
            raise self._fail(f"must be a number, not {value}")
        self._range(float(value))
        return float(value)

    def _check_ints(self, value: Any, public: bool) -> tuple[int, ...]:
        if not isinstance(value, list | tuple) or len(value) != self.count:
            raise self._fail(f"takes {self.count} integers")
        for v in value:
            if isinstance(v, bool) or not isinstance(v, int):
                raise self._fail(f"takes {self.count} integers")
            self._range(v)
        return tuple(value)

    def _check_json(self, value: Any, public: bool) -> Any:
        assert self.meta.structured is not None
        return self.meta.structured(value)

    def to_json(self, value: Any) -> Any:
        """A checked value as JSON (a job record's, a push's)."""
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, tuple):
            return [v.to_json() if hasattr(v, "to_json") else v for v in value]
        return value

    def _check_bool(self, value: Any, public: bool) -> bool:
        if not isinstance(value, bool):
            raise self._fail("must be true or false")
        return value

    def _check_path(self, value: Any, public: bool) -> Path:
        if not isinstance(value, str | Path) or not str(value):
            raise self._fail("must be a file path")
        return Path(value)

    def _check_str(self, value: Any, public: bool) -> str:
        if not isinstance(value, str):
            raise self._fail("must be text")
        choices = self.choice_map()
        pattern = self.meta.public_pattern if public else self.meta.pattern
        if not choices or value in choices or (pattern and re.fullmatch(pattern, value)):
            return value
        extra = f" or {self.meta.example}" if pattern and self.meta.example else ""
        raise self._fail(f"must be one of {', '.join(choices)}{extra}, not {value!r}")

    def describe(self) -> dict[str, Any]:
        """The declaration as JSON (``GET /api/v1/lipsync/options`` and the docs)."""
        default = self.default
        if isinstance(default, tuple):
            default = self.to_json(default)
        return {
            "name": self.name,
            "type": self.kind,
            "count": self.count if self.kind == "ints" else None,
            "label": self.meta.label or self.name.replace("_", " "),
            "help": self.meta.help,
            "default": str(default) if isinstance(default, Path) else default,
            "choices": [{"value": k, "help": v} for k, v in self.choice_map().items()] or None,
            "minimum": self.meta.minimum,
            "maximum": self.meta.maximum,
            "example": self.meta.example,
            "engines": list(self.meta.engines) or None,
            "group": self.meta.group,
            "advanced": self.meta.advanced,
        }


def _kind_of(hint: Any) -> tuple[Kind, int, bool]:
    args = get_args(hint)
    optional = type(None) in args
    if optional:
        (hint,) = [a for a in args if a is not type(None)]
    if get_args(hint):  # tuple[int, ...] of a fixed length
        return "ints", len(get_args(hint)), optional
    kinds: dict[Any, Kind] = {str: "str", int: "int", float: "float", bool: "bool", Path: "path"}
    return kinds[hint], 1, optional


def specs_of(cls: type[Any]) -> tuple[OptionSpec, ...]:
    """The options declared as ``cls``'s fields (made with :func:`option`), in declaration
    order; a field made otherwise is not an option."""
    hints = get_type_hints(cls)
    specs = []
    for f in fields(cls):
        meta = f.metadata.get("option")
        if meta is None:
            continue
        kind: Kind
        if meta.structured is not None:
            kind, count, optional = "json", 1, False
        else:
            kind, count, optional = _kind_of(hints[f.name])
        default = f.default if f.default is not MISSING else None
        specs.append(OptionSpec(f.name, kind, count, optional, default, meta))
    return tuple(specs)


def read_by(spec: OptionSpec, engines: tuple[str, ...]) -> OptionSpec:
    """``spec`` with the engines that read it (``()``: the whole pipeline)."""
    if spec.meta.engines == engines:
        return spec
    return replace(spec, meta=replace(spec.meta, engines=engines))
