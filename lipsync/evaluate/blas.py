"""One BLAS thread for the evaluator's small linear algebra.

The offset search (:mod:`.sync`) does hundreds of small products, solves and one SVD
(matrices of a few hundred rows). OpenBLAS splits each over all cores, and on a CPU shared
with other work (a render in the next process, other jobs) its threads spin waiting for each
other: on a loaded 2-core machine the search took 3.5 s on a 5 s clip, 14 s on a 20 s one,
against 0.25 s and ~1 s on one thread, with the same results. :func:`single_threaded_blas`
sets OpenBLAS (numpy's bundled copy, found among the libraries this process has loaded) to
one thread for the duration and back after; where there is no OpenBLAS (another BLAS,
another OS), it does nothing.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

# (set, get) symbol pairs of OpenBLAS builds: plain, numpy's/scipy's 64-bit and 32-bit copies.
_SYMBOLS = (
    ("openblas_set_num_threads", "openblas_get_num_threads"),
    ("scipy_openblas_set_num_threads64_", "scipy_openblas_get_num_threads64_"),
    ("scipy_openblas_set_num_threads", "scipy_openblas_get_num_threads"),
    ("openblas_set_num_threads64_", "openblas_get_num_threads64_"),
)

_lock = threading.Lock()
_depth = 0
_saved: list[int] = []


@lru_cache(maxsize=1)
def _controls() -> tuple[tuple[Callable[[int], None], Callable[[], int]], ...]:
    """The thread-count setters and getters of the OpenBLAS copies loaded in this process."""
    import numpy  # noqa: F401  (its OpenBLAS is loaded with it)

    maps = Path("/proc/self/maps")
    if not maps.is_file():
        return ()
    paths = sorted(
        {
            line.split()[-1]
            for line in maps.read_text().splitlines()
            if "openblas" in line.lower() and line.split()[-1].startswith("/")
        }
    )
    found = []
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for set_name, get_name in _SYMBOLS:
            if hasattr(lib, set_name) and hasattr(lib, get_name):
                setter, getter = getattr(lib, set_name), getattr(lib, get_name)
                setter.argtypes, setter.restype = [ctypes.c_int], None
                getter.argtypes, getter.restype = [], ctypes.c_int
                found.append((setter, getter))
                break
    return tuple(found)


@contextmanager
def single_threaded_blas() -> Iterator[None]:
    """OpenBLAS on one thread inside the block (nested and concurrent blocks: until the
    last one ends)."""
    global _depth
    controls = _controls()
    with _lock:
        if _depth == 0:
            _saved[:] = [get() for _, get in controls]
            for set_, _ in controls:
                set_(1)
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                for (set_, _), n in zip(controls, _saved, strict=True):
                    set_(n)
