"""The ``retrieval`` engine's tuning: one frozen value, every field documented with its
unit, taken by the engine, and an override changes the choice of mouths (on a synthetic
index: no media needed)."""

from __future__ import annotations

import ast
import dataclasses
import inspect
from dataclasses import replace

import numpy as np
import pytest

from lipsync.engines import EngineContext, create_engine
from lipsync.engines.retrieval import DEFAULT_TUNING, RetrievalEngine, RetrievalTuning
from lipsync.engines.retrieval import tuning as tuning_module
from lipsync.engines.retrieval.geometry import MouthShape
from lipsync.engines.retrieval.index import MouthIndex
from lipsync.engines.retrieval.plan import Plan, make_plan


def _field_docs() -> dict[str, str]:
    """Field name -> the docstring written under it in the class body."""
    tree = ast.parse(inspect.getsource(tuning_module))
    (cls,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "RetrievalTuning"]
    docs: dict[str, str] = {}
    for node, after in zip(cls.body, cls.body[1:], strict=False):
        field = isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
        doc = isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
        if field and doc:
            docs[node.target.id] = str(after.value.value)  # type: ignore[attr-defined]
    return docs


def test_every_field_is_documented_with_its_unit() -> None:
    docs = _field_docs()
    fields = [f.name for f in dataclasses.fields(RetrievalTuning)]
    assert len(fields) >= 30
    missing = [name for name in fields if name not in docs]
    assert not missing, f"fields without a docstring: {missing}"
    no_unit = [name for name in fields if "unit" not in docs[name].lower()]
    assert not no_unit, f"docstrings that name no unit: {no_unit}"


def test_frozen_and_taken_by_the_engine() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        DEFAULT_TUNING.w_opening = 0.5  # type: ignore[misc]
    assert create_engine("retrieval", EngineContext()).tuning == DEFAULT_TUNING  # type: ignore[attr-defined]
    mine = replace(DEFAULT_TUNING, w_opening=0.5)
    assert RetrievalEngine(tuning=mine).tuning is mine
    assert mine != DEFAULT_TUNING and mine.w_width == DEFAULT_TUNING.w_width


def _index(k: int = 60) -> MouthIndex:
    """A synthetic index: ``k`` candidate mouths whose gap rises and falls slowly over the
    source, with a little noise, and random looks."""
    rng = np.random.default_rng(3)
    t = np.arange(k)
    gap = (0.15 + 0.12 * np.sin(t / 5.0) + rng.normal(0, 0.02, k)).astype(np.float32)
    width = (0.9 - 0.2 * gap + rng.normal(0, 0.01, k)).astype(np.float32)
    z = np.zeros(k, np.float32)
    shape = MouthShape(gap, width, gap + 0.3, z, z + 0.7)
    return MouthIndex(
        template=np.zeros((13, 2)),
        shape=shape,
        valid=np.ones(k, bool),
        candidates=t.astype(np.int64),
        crops=[],
        thumbs=rng.normal(0, 1, (k, 24 * 16)).astype(np.float32),
        teeth=z,
        dark=z,
        opening=(gap * 0.8).astype(np.float32),
        skin=np.zeros((k, 3), np.float32),
        sharpness=np.ones(k, np.float32),
    )


def _cuts(plan: Plan, index: MouthIndex) -> int:
    step = np.diff(index.candidates[plan.path])
    return int(np.sum((step < -1) | (step > 2)))


def test_a_tuning_override_changes_the_plan() -> None:
    index = _index()
    n = 80
    rng = np.random.default_rng(5)
    gap = (0.15 + 0.12 * np.sin(np.arange(n) / 2.0) + rng.normal(0, 0.03, n)).astype(np.float32)
    width = (0.9 - 0.2 * gap).astype(np.float32)
    speech = np.ones(n, np.float32)
    default = make_plan(index, gap, width, speech)
    again = make_plan(index, gap, width, speech, DEFAULT_TUNING)
    assert np.array_equal(default.path, again.path), "the default tuning is the default"
    # Cuts for free: the choice follows the wanted shape frame by frame, with many cuts.
    free = make_plan(
        index, gap, width, speech, replace(DEFAULT_TUNING, c_jump=0.0, w_jump_look=0.0)
    )
    assert not np.array_equal(default.path, free.path)
    assert _cuts(free, index) > _cuts(default, index)
    # Fewer states per frame: the plan keeps at most that many.
    narrow = make_plan(index, gap, width, speech, replace(DEFAULT_TUNING, top_k=3, max_states=5))
    assert max(len(s) for s in narrow.states) <= 5 < max(len(s) for s in default.states)
