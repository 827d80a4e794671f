"""single_threaded_blas: OpenBLAS on one thread inside the block, as many as before after."""

from __future__ import annotations

import numpy as np
import pytest

from lipsync.evaluate.blas import _controls, single_threaded_blas


def test_one_thread_inside_and_the_count_back_after() -> None:
    controls = _controls()
    if not controls:
        pytest.skip("no OpenBLAS loaded in this process (another BLAS or OS)")
    before = [get() for _, get in controls]
    with single_threaded_blas():
        assert [get() for _, get in controls] == [1] * len(controls)
        with single_threaded_blas():  # nested: still one, and not restored early
            pass
        assert [get() for _, get in controls] == [1] * len(controls)
        a = np.random.default_rng(0).standard_normal((300, 200))
        u, s, vt = np.linalg.svd(a, full_matrices=False)
        assert np.allclose((u * s) @ vt, a)  # the linear algebra still works
    assert [get() for _, get in controls] == before
