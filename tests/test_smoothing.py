"""lipsync.smoothing against SciPy (the reference it replaces on the hot path)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.interpolate import RBFInterpolator
from scipy.signal import savgol_filter

from lipsync.smoothing import ThinPlateSpline, savgol


@pytest.mark.parametrize(("n", "window"), [(7, 7), (30, 5), (200, 7), (41, 11)])
def test_savgol_equals_scipy(n: int, window: int) -> None:
    rng = np.random.default_rng(n)
    x = np.cumsum(rng.normal(size=(n, 68, 2)), axis=0).astype(np.float32)
    ours = savgol(x, window, 2)
    ref = savgol_filter(x.astype(np.float64), window, 2, axis=0)
    assert ours.shape == x.shape
    np.testing.assert_allclose(ours, ref, atol=1e-9, rtol=1e-9)


def test_savgol_refuses_bad_windows() -> None:
    with pytest.raises(ValueError):
        savgol(np.zeros((5, 2)), 4)
    with pytest.raises(ValueError):
        savgol(np.zeros((5, 2)), 7)


def test_thin_plate_spline_equals_scipy() -> None:
    rng = np.random.default_rng(3)
    pts = rng.uniform(100, 400, size=(60, 2))
    vals = rng.normal(0, 5, size=(60, 2))
    query = rng.uniform(80, 420, size=(500, 2))
    for smoothing in (0.0, 1e-3, 1.0):
        ref = RBFInterpolator(pts, vals, kernel="thin_plate_spline", smoothing=smoothing)
        ours = ThinPlateSpline(pts, vals, smoothing=smoothing)
        np.testing.assert_allclose(ours(query), ref(query), atol=1e-6)
    # Without smoothing it interpolates: the control points map exactly.
    np.testing.assert_allclose(ThinPlateSpline(pts, vals)(pts), vals, atol=1e-6)
