"""Write Wav2Lip networks in the published layouts: a ``.pth`` like the released checkpoints
and an ONNX file like the ``wav2lip_96.onnx`` distributed for ONNX Runtime.

Used to convert your own checkpoint (``python -m lipsync.engines.wav2lip.export in.pth
out.onnx``), by the tests (random weights through the real loaders) and by the benchmarks.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path
from typing import Any


def save_published(model: Any, path: Path) -> Path:
    """Save like the released checkpoints: DataParallel names under ``state_dict``."""
    import torch

    state = {"module." + k: v for k, v in model.state_dict().items()}
    torch.save({"state_dict": state, "global_step": 0, "global_epoch": 0}, path)
    return path


def export_onnx(
    model: Any,
    path: Path,
    dynamic_batch: bool = True,
    inputs: tuple[Any, ...] | None = None,
    names: tuple[str, ...] = ("mel", "face"),
) -> Path:
    """Export with the TorchScript exporter (no onnxscript needed); default inputs are the
    generator's own (mel ``(N, 1, 80, 16)``, face ``(N, 6, 96, 96)``)."""
    import torch

    if inputs is None:
        inputs = (torch.zeros(1, 1, 80, 16), torch.zeros(1, 6, 96, 96))
    axes = {n: {0: "n"} for n in (*names, "out")} if dynamic_batch else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model.eval(),
            inputs,
            str(path),
            input_names=list(names),
            output_names=["out"],
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
        )
    return path


def main(argv: list[str] | None = None) -> int:
    from lipsync.engines.wav2lip.engine import load_generator

    parser = argparse.ArgumentParser(description="Convert a Wav2Lip .pth checkpoint to ONNX")
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("output", type=Path)
    args = parser.parse_args(argv)
    export_onnx(load_generator(args.checkpoint), args.output)
    print(args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
