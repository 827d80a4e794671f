"""Strict loading of PyTorch weights files, shared by every network the project runs
(the Wav2Lip generator, the S3FD face detector).

A neutral module so that the face layer loads its detector without importing an engine.
torch is imported here at module level: import this module only where torch is wanted.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import torch

from lipsync.errors import ModelMismatch

_OPTIONAL_SUFFIX = "num_batches_tracked"  # BatchNorm counter: absent from very old saves

_M = TypeVar("_M", bound=torch.nn.Module)


def _strip_prefix(state: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in state.items():
        while key.startswith("module."):  # saved from nn.DataParallel
            key = key[len("module.") :]
        out[key] = value
    return out


def _example(keys: list[str]) -> str:
    return keys[0] + (f" (+{len(keys) - 1} more)" if len(keys) > 1 else "")


def read_state_dict(path: Path, what: str = "a Wav2Lip checkpoint") -> dict[str, torch.Tensor]:
    """The weights in a checkpoint file (a state dict, bare or under ``state_dict``),
    ``module.`` prefixes stripped; ``what`` names the expected content in errors."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt file, not a torch file, disallowed pickle content
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelMismatch(f"{path.name} is not a readable PyTorch checkpoint: {reason}") from exc
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, Mapping) or not state:
        raise ModelMismatch(f"{path.name} holds no state dict (expected {what})")
    return _strip_prefix(state)


def state_dict_problems(
    state: Mapping[str, Any], expected: Mapping[str, torch.Tensor]
) -> list[str]:
    """Missing, unexpected and wrongly shaped keys of ``state`` against a network's own
    ``state_dict()``, one short phrase each (empty when it loads strictly). BatchNorm
    ``num_batches_tracked`` counters may be absent."""
    missing = [k for k in expected if k not in state and not k.endswith(_OPTIONAL_SUFFIX)]
    unexpected = [k for k in state if k not in expected]
    wrong = [
        f"{k} {tuple(getattr(state[k], 'shape', ()))} vs {tuple(expected[k].shape)}"
        for k in expected
        if k in state
        and (not isinstance(state[k], torch.Tensor) or state[k].shape != expected[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing {_example(missing)}")
    if unexpected:
        problems.append(f"unexpected {_example(unexpected)}")
    if wrong:
        problems.append(f"wrong shape {_example(wrong)}")
    return problems


def load_strict(
    model: _M, state: dict[str, torch.Tensor], path: Path, network: str, short: str
) -> _M:
    """``model`` in eval mode with ``state`` loaded strictly; :class:`ModelMismatch` (one
    line, naming ``network`` / ``short``) when keys, shapes or dtypes do not fit."""
    expected = model.state_dict()
    problems = state_dict_problems(state, expected)
    if problems:
        raise ModelMismatch(f"{path.name} does not match {network}: " + "; ".join(problems))
    for key, value in expected.items():  # tolerate saves without BatchNorm counters
        state.setdefault(key, value)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # dtype or other incompatibility the checks above missed
        first = str(exc).strip().splitlines()[0]
        raise ModelMismatch(f"{path.name} does not load into {short}: {first}") from exc
    return model.eval()
