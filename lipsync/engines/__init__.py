"""Generator engines: each one a folder that declares everything about itself (its wing),
listed by one line in :mod:`lipsync.registry`; modules are imported only when used.

Adding an engine means adding one folder ``lipsync/engines/<name>/`` with an
:class:`~lipsync.engines.base.Engine` subclass and a ``wing.py`` declaring it
(:class:`~lipsync.enginespec.EngineSpec`: name, factory, summary, its options, the options it
reads, its weights files, its pre-check), and one line in :data:`lipsync.registry.WINGS`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from lipsync.enginespec import EngineContext, EngineSpec
from lipsync.errors import InvalidOption
from lipsync.registry import ENGINES

if TYPE_CHECKING:
    from lipsync.engines.base import Engine

__all__ = ["ENGINES", "EngineCache", "EngineContext", "EngineSpec", "create_engine"]


def _resolve(factory: str) -> Callable[[EngineContext], Engine]:
    module_name, _, attr = factory.partition(":")
    built: Callable[[EngineContext], Engine] = getattr(importlib.import_module(module_name), attr)
    return built


def create_engine(name: str, ctx: EngineContext) -> Engine:
    """The engine ``name`` built from ``ctx``: its pre-check first (a missing weights file
    fails before the engine's code, torch included, is imported)."""
    spec = ENGINES.get(name)
    if spec is None:
        raise InvalidOption(f"unknown engine {name!r}; choose one of {', '.join(ENGINES)}")
    spec.check(ctx)
    return _resolve(spec.factory)(ctx)


class EngineCache:
    """Engines kept per process and reused across jobs (models load once per worker), one
    per engine name and context: the frozen :class:`EngineContext` is the key."""

    def __init__(self) -> None:
        self._engines: dict[tuple[str, EngineContext], Engine] = {}

    def get(self, name: str, ctx: EngineContext) -> Engine:
        key = (name, ctx)
        engine = self._engines.get(key)
        if engine is None:
            engine = create_engine(name, ctx)
            self._engines[key] = engine
        return engine

    def clear(self) -> None:
        for engine in self._engines.values():
            engine.close()
        self._engines.clear()
