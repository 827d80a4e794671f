"""The engines: one line each, naming the module that declares the engine (its wing).

Adding an engine is one folder, ``lipsync/engines/<name>/`` with a ``wing.py`` whose
``ENGINE`` is an :class:`~lipsync.enginespec.EngineSpec`, and one line in :data:`WINGS`.
Every list of engines is a view over these declarations: :data:`ENGINES` and
:func:`~lipsync.engines.create_engine`, the ``engine`` choice and the engines' own options
(:mod:`lipsync.options`: the CLI's flags, the push form, ``GET /options``, the web page),
the weights table (:func:`lipsync.models.model_files`, ``lipsync models``), the licence
checks and the README's engine and option tables (:mod:`lipsync.readme`).

The wings are imported by name when first asked for, never at import: this module, and
:mod:`lipsync.options` which reads it, depend on the declarations' forms
(:mod:`lipsync.enginespec`), never on the engines' code.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from functools import cache

from lipsync.enginespec import EngineSpec
from lipsync.modelspec import ModelFile

#: The wing of each engine, in the order they are listed everywhere.
WINGS: tuple[str, ...] = (
    "lipsync.engines.viseme.wing",
    "lipsync.engines.retrieval.wing",
    "lipsync.engines.wav2lip.wing",
    "lipsync.engines.wav2lip_onnx.wing",
    "lipsync.engines.musetalk.wing",
)


@cache
def _read(wings: tuple[str, ...]) -> tuple[EngineSpec, ...]:
    specs: dict[str, EngineSpec] = {}
    for path in wings:
        spec = getattr(importlib.import_module(path), "ENGINE", None)
        if not isinstance(spec, EngineSpec):
            raise TypeError(f"{path}.ENGINE must be an EngineSpec")
        if spec.name in specs:
            raise ValueError(f"engine {spec.name!r} is declared twice ({path})")
        specs[spec.name] = spec
    return tuple(specs.values())


def engine_specs() -> tuple[EngineSpec, ...]:
    """Every engine's declaration, in :data:`WINGS`' order."""
    return _read(WINGS)


def engine_weights() -> tuple[ModelFile, ...]:
    """Every engine's weights files, engine by engine (a file two engines share: once)."""
    seen: dict[str, ModelFile] = {}
    for spec in engine_specs():
        for model in spec.weights:
            seen.setdefault(model.filename, model)
    return tuple(seen.values())


class EngineTable(Mapping[str, EngineSpec]):
    """The declared engines by name, read from :data:`WINGS` on each use."""

    def _specs(self) -> dict[str, EngineSpec]:
        return {spec.name: spec for spec in engine_specs()}

    def __getitem__(self, name: str) -> EngineSpec:
        return self._specs()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._specs())

    def __len__(self) -> int:
        return len(engine_specs())

    def __repr__(self) -> str:
        return f"EngineTable({', '.join(self)})"


ENGINES: Mapping[str, EngineSpec] = EngineTable()
