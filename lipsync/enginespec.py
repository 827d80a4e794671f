"""The form of an engine's declaration, its wing: :class:`EngineSpec`; and
:class:`EngineContext`, what an engine is given to load itself.

Each engine's folder ``lipsync/engines/<name>/`` holds a ``wing.py`` whose ``ENGINE`` is an
:class:`EngineSpec`: the engine's name, summary and factory; its own options (a frozen
dataclass of :func:`~lipsync.optionspec.option` fields, the form of
:class:`~lipsync.options.RunOptions`); the options declared elsewhere that it reads; its
weights files (:class:`~lipsync.modelspec.ModelFile`); and its pre-check. The wings are
listed in :mod:`lipsync.registry`, which everything else reads. A wing imports only these
forms, so reading it never loads the engine's code (torch, OpenCV).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lipsync.errors import ModelMissing
from lipsync.modelspec import ModelFile, require_file
from lipsync.optionspec import OptionSpec, read_by, specs_of


@dataclass(frozen=True)
class EngineContext:
    """What an engine may need to load itself. Frozen and hashable: an engine cache keys on
    it (with the engine's name), so engines built from different settings never mix."""

    device: str = "auto"  # auto | cpu | cuda
    checkpoint: Path | None = None
    models_dir: Path = Path("models")
    batch_size: int = 16
    pads: tuple[int, int, int, int] = (0, 10, 0, 0)
    fp16: bool = False  # half precision on CUDA, for engines that offer it
    # The job's options that this engine reads and that have no field above, as (name,
    # value) pairs in declaration order: e.g. musetalk's ``extra_margin``.
    options: tuple[tuple[str, Any], ...] = ()


#: Raises :class:`~lipsync.errors.ModelMissing` (or another
#: :class:`~lipsync.errors.LipsyncError`) when the engine cannot be built from the context.
Precheck = Callable[[EngineContext], None]


@dataclass(frozen=True)
class EngineSpec:
    """Everything about one engine, declared once in its wing."""

    name: str
    #: ``"module:attr"``; ``attr(ctx)`` builds the engine. Imported only then.
    factory: str
    #: One line: the engine choice's help (``--help``, ``GET /options``, the web form).
    summary: str
    #: What it does, at length: the README's engine table.
    about: str = ""
    #: Its own options: a frozen dataclass whose fields are made with ``option()``.
    options: type[Any] | None = None
    #: Options declared elsewhere that it reads (e.g. ``checkpoint``, ``batch_size``).
    reads: tuple[str, ...] = ()
    #: Every weights file it may load, the preferred first.
    weights: tuple[ModelFile, ...] = ()
    #: The weights are alternatives (the first one present is loaded), else all are needed.
    alternatives: bool = False
    #: Weights files it uses when present and does without (their file names).
    optional_weights: tuple[str, ...] = ()
    #: Checks that the engine can be built, before its code is imported; None: every
    #: weights file present (with ``alternatives``: one of them, or ``ctx.checkpoint``).
    precheck: Precheck | None = None

    @property
    def needs_weights(self) -> bool:
        return bool(self.weights)

    def option_specs(self) -> tuple[OptionSpec, ...]:
        """Its own options, each read by this engine."""
        if self.options is None:
            return ()
        return tuple(read_by(s, (self.name,)) for s in specs_of(self.options))

    def missing_weights(self, models_dir: Path) -> tuple[str, ...]:
        """The weights files (paths under ``models_dir``) it lacks to run: none when ready;
        for alternatives, each of them (any one would do)."""
        try:
            self.check(EngineContext(models_dir=Path(models_dir)))
        except ModelMissing:
            needed = [m.filename for m in self.weights if m.filename not in self.optional_weights]
            return tuple(n for n in needed if not (Path(models_dir) / n).is_file()) or tuple(needed)
        return ()

    def check(self, ctx: EngineContext) -> None:
        """The pre-check: raises when the engine cannot be built from ``ctx``."""
        if self.precheck is not None:
            self.precheck(ctx)
        elif self.alternatives:
            find_weights(ctx, [m.filename for m in self.weights], self.name)
        else:
            for model in self.weights:
                require_file(ctx.models_dir, model.filename, model)


def find_weights(ctx: EngineContext, candidates: Sequence[str], engine: str) -> Path:
    """``ctx.checkpoint`` if given, else the first of ``candidates`` present in models_dir."""
    if ctx.checkpoint is not None:
        path = Path(ctx.checkpoint)
        if not path.is_file():
            raise ModelMissing(
                f"checkpoint {path} for engine {engine} not found "
                "(see models/README.md for where to get it)"
            )
        return path
    models_dir = Path(ctx.models_dir)
    for name in candidates:
        path = models_dir / name
        if path.is_file():
            return path
    names = " or ".join(candidates)
    raise ModelMissing(
        f"engine {engine} needs {names} in {models_dir}/ "
        "(put the file under models/; see models/README.md for where to get it)"
    )
