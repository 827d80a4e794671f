"""Small numerical tools the pipeline needs on every run, in NumPy.

SciPy's ``signal`` and ``interpolate`` packages take about a second to import (they build
their docstrings at import time); a command-line run paid that on every video. These
replacements compute the same results (tests/test_smoothing.py checks them against SciPy).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]


@lru_cache(maxsize=16)
def _savgol_matrices(window: int, order: int) -> tuple[F64, F64]:
    """``pinv`` of the window's Vandermonde matrix and the matrix that evaluates the fitted
    polynomial at each of the window's positions."""
    pos = np.arange(window, dtype=np.float64) - window // 2
    vander = np.vander(pos, order + 1, increasing=True)  # (window, order + 1)
    return np.asarray(np.linalg.pinv(vander), np.float64), vander


def savgol(x: npt.NDArray[np.floating], window: int, order: int = 2) -> F64:
    """Savitzky-Golay smoothing along axis 0 with SciPy's default ``mode="interp"``: inside,
    each sample is the value at the centre of a least-squares polynomial over its window;
    within half a window of either end, the polynomial fitted to the first (last) window is
    evaluated there."""
    data = np.asarray(x, np.float64)
    n = data.shape[0]
    if window % 2 != 1 or window > n or order >= window:
        raise ValueError("window must be odd, at most the length and above the order")
    fit, vander = _savgol_matrices(window, order)
    flat = data.reshape(n, -1)
    half = window // 2
    weights = fit[0]  # the fitted constant term: the value at the window's centre
    out = np.empty_like(flat)
    # windows[i] = flat[i : i + window] for every full window, as a strided view
    windows = np.lib.stride_tricks.sliding_window_view(flat, window, axis=0)
    out[half : n - half] = windows @ weights
    out[:half] = (vander @ (fit @ flat[:window]))[:half]
    out[n - half :] = (vander @ (fit @ flat[n - window :]))[window - half :]
    return out.reshape(data.shape)


class ThinPlateSpline:
    """Smoothed thin-plate-spline interpolation of vector values over 2-D points, with a
    linear polynomial part: what ``scipy.interpolate.RBFInterpolator(kernel=
    "thin_plate_spline", smoothing=s)`` fits (same linear system, same solution)."""

    def __init__(self, points: F64, values: F64, smoothing: float = 0.0) -> None:
        pts = np.asarray(points, np.float64)
        vals = np.asarray(values, np.float64)
        n = pts.shape[0]
        # Centre and scale the polynomial's domain for conditioning, as SciPy does.
        self._shift = (pts.max(axis=0) + pts.min(axis=0)) / 2
        scale = (pts.max(axis=0) - pts.min(axis=0)) / 2
        self._scale = np.where(scale > 0, scale, 1.0)
        poly = self._poly(pts)
        system = np.zeros((n + 3, n + 3))
        system[:n, :n] = self._kernel(pts, pts) + smoothing * np.eye(n)
        system[:n, n:] = poly
        system[n:, :n] = poly.T
        rhs = np.zeros((n + 3, vals.shape[1]))
        rhs[:n] = vals
        coef = np.linalg.solve(system, rhs)
        self._points, self._w, self._c = pts, coef[:n], coef[n:]

    def _poly(self, x: F64) -> F64:
        return np.column_stack([np.ones(len(x)), (x - self._shift) / self._scale])

    @staticmethod
    def _kernel(a: F64, b: F64) -> F64:
        # Squared distances as |a|^2 + |b|^2 - 2 a.b (a matrix product, not an (n, m, 2)
        # temporary); r^2 log r written with r^2, and 0 at r = 0.
        d2 = (a * a).sum(axis=1)[:, None] + (b * b).sum(axis=1)[None, :] - 2.0 * (a @ b.T)
        d2 = np.maximum(d2, 0.0)
        return 0.5 * d2 * np.log(np.maximum(d2, 1e-300))

    def __call__(self, x: F64) -> F64:
        x = np.asarray(x, np.float64)
        return self._kernel(x, self._points) @ self._w + self._poly(x) @ self._c
