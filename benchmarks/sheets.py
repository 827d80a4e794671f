"""Contact sheets for judging a result by eye: chosen frames of the input (top row of each
pair) and the output (bottom row), side by side, optionally cropped to a box.

``python -m benchmarks.sheets OUTPUT --reference INPUT --frames 70-84 -o sheet.png``
``python -m benchmarks.sheets OUTPUT --reference INPUT --around 75,175 --box 100,200,400,500``
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

RGB = npt.NDArray[np.uint8]


def frames_at(path: Path, wanted: set[int]) -> dict[int, RGB]:
    """The decoded RGB frames of ``path`` whose indices are in ``wanted``."""
    from lipsync.media.decode import iter_frames

    out: dict[int, RGB] = {}
    last = max(wanted) if wanted else -1
    for f in iter_frames(path):
        if f.index in wanted:
            out[f.index] = f.image
        if f.index >= last:
            break
    return out


def parse_frames(spec: str) -> list[int]:
    """``"3,7,10-14"`` -> [3, 7, 10, 11, 12, 13, 14]."""
    out: list[int] = []
    for part in spec.split(","):
        if "-" in part:
            a, b = part.split("-")
            out.extend(range(int(a), int(b) + 1))
        elif part:
            out.append(int(part))
    return out


def sheet(
    output: Path,
    reference: Path | None,
    indices: list[int],
    box: tuple[int, int, int, int] | None = None,
    cell: int = 160,
    per_row: int = 8,
) -> RGB:
    """Rows of ``per_row`` frames: the input's above the output's, each cell ``cell`` px
    high, labelled with the frame index."""
    want = set(indices)
    outs = frames_at(output, want)
    refs = frames_at(reference, want) if reference is not None else {}

    def cell_of(img: RGB | None, label: str) -> RGB:
        if img is None:
            return np.zeros((cell, cell, 3), np.uint8)
        if box is not None:
            x1, y1, x2, y2 = box
            img = img[y1:y2, x1:x2]
        h, w = img.shape[:2]
        im = cv2.resize(img, (max(1, int(w * cell / h)), cell), interpolation=cv2.INTER_AREA)
        im = np.ascontiguousarray(im)
        cv2.putText(im, label, (3, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 0), 1)
        return im

    rows: list[RGB] = []
    for k in range(0, len(indices), per_row):
        chunk = indices[k : k + per_row]
        pair = []
        if reference is not None:
            pair.append(np.hstack([cell_of(refs.get(i), f"in {i}") for i in chunk]))
        pair.append(np.hstack([cell_of(outs.get(i), f"out {i}") for i in chunk]))
        rows.extend(pair)
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 2), (0, width - r.shape[1]), (0, 0))) for r in rows]
    return np.vstack(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("output", type=Path)
    ap.add_argument("--reference", type=Path)
    ap.add_argument("--frames", default="", help="e.g. 3,7,10-14")
    ap.add_argument("--around", default="", help="frames k-3..k+4 around each k, e.g. 75,175")
    ap.add_argument("--box", default="", help="crop x1,y1,x2,y2 in input pixels")
    ap.add_argument("--cell", type=int, default=160)
    ap.add_argument("--per-row", type=int, default=8)
    ap.add_argument("-o", "--out", type=Path, default=Path("sheet.png"))
    args = ap.parse_args()
    indices = parse_frames(args.frames)
    for k in parse_frames(args.around):
        indices.extend(range(max(0, k - 3), k + 5))
    box = tuple(int(v) for v in args.box.split(",")) if args.box else None
    img = sheet(args.output, args.reference, indices, box, args.cell, args.per_row)  # type: ignore[arg-type]
    cv2.imwrite(str(args.out), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    print(args.out)


if __name__ == "__main__":
    main()
