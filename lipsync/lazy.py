"""Names a package exports from its submodules, imported only when first read (PEP 562).

An engine's package is imported whenever its declaration (``wing.py``) is read, e.g. for
``--help`` or ``GET /options``; its engine module (torch, OpenCV) must wait until the engine
is built. ``__getattr__ = lazy_exports(__name__, {"Engine": ".engine"})`` in the package's
``__init__`` keeps ``from package import Engine`` working without importing it up front.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, names: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports ``names[name]`` (relative to ``package``) on
    first use and returns its attribute ``name``."""

    def __getattr__(name: str) -> Any:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module, package), name)

    return __getattr__
