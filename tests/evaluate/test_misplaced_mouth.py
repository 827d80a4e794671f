"""The misplaced- and foreign-mouth measures of ``lipsync evaluate --reference`` on real frames
from ../shared/media (skipped when absent), edited the way a broken lip-sync would: a mouth
pasted on the forehead or below the chin, recoloured or another person's lips, a mouth
painted over a microphone; and edited the way a working one does (the same person's mouth
from another frame, a re-encode), which must stay quiet."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from lipsync.evaluate.faces import FaceFinder, FaceFrame
from lipsync.evaluate.lipcolour import LIP_SHIFT, lip_colour_shift
from lipsync.evaluate.occlusion import (
    OCCLUDED_SHARE,
    SkinModel,
    lower_face_patch,
    occluder_change,
    skin_samples,
)
from lipsync.evaluate.outside import BLOCK_CHANGE, block_changes, block_size, outside_change
from lipsync.evaluate.reference import measure_with_reference
from lipsync.media.decode import iter_frames
from tests import media_factory as mf

RGB = npt.NDArray[np.uint8]
FACE2 = "video_videoretalking_face2.mp4"  # 844x844, one man talking
KATIE = "video_SadTalker_WDA_KatieHill_000.mp4"  # 512x512, one woman talking


def _frames(path: Path, n: int) -> list[RGB]:
    out = []
    for f in iter_frames(path):
        out.append(f.image)
        if len(out) == n:
            break
    return out


def _face(rgb: RGB) -> FaceFrame:
    got = FaceFinder().update(rgb)
    assert got is not None
    return FaceFrame.from_points(got[0])


@pytest.fixture(scope="module")
def face2(shared_media: Path) -> list[RGB]:
    return _frames(mf.shared_file(shared_media, FACE2), 60)


@pytest.fixture(scope="module")
def face2_face(face2: list[RGB]) -> FaceFrame:
    return _face(face2[0])


def _rect(face: FaceFrame, x_d: tuple[float, float], y_d: tuple[float, float]) -> tuple[int, ...]:
    """Axis-aligned bounds (x0, y0, x1, y1) of a face-aligned rectangle."""
    poly = face.polygon(x_d, y_d)
    x0, y0 = np.floor(poly.min(axis=0)).astype(int)
    x1, y1 = np.ceil(poly.max(axis=0)).astype(int)
    return int(x0), int(y0), int(x1), int(y1)


def _mouth(rgb: RGB, face: FaceFrame) -> RGB:
    """The mouth (the lip box: 1.2 eye distances wide, 0.1-1.0 below the nose base)."""
    x0, y0, x1, y1 = _rect(face, (-0.6, 0.6), (0.1, 1.0))
    return rgb[y0:y1, x0:x1].copy()


def _paste(rgb: RGB, patch: RGB, centre: npt.NDArray[np.float32]) -> RGB:
    out = rgb.copy()
    h, w = patch.shape[:2]
    x0, y0 = int(centre[0]) - w // 2, int(centre[1]) - h // 2
    out[y0 : y0 + h, x0 : x0 + w] = patch
    return out


def _reencode(rgb: RGB, quality: int = 85) -> RGB:
    """A lossy round trip, as the output's encode makes one."""
    ok, buf = cv2.imencode(
        ".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    assert ok
    return np.asarray(
        cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB), np.uint8
    )


def _other_mouth(face2: list[RGB], face: FaceFrame) -> RGB:
    """Frame 0 with the mouth of the frame whose mouth differs most from it: what a working
    lip-sync does (the same person's own mouth, another shape)."""
    own = _mouth(face2[0], face).astype(np.float32)
    best = max(
        range(1, len(face2)), key=lambda i: float(np.abs(_mouth(face2[i], face) - own).mean())
    )
    return _paste(face2[0], _mouth(face2[best], face), face.nose + face.down * 0.55 * face.d)


def test_a_lower_face_edit_and_a_reencode_stay_quiet(
    face2: list[RGB], face2_face: FaceFrame
) -> None:
    ref, face = face2[0], face2_face
    assert outside_change(ref, ref, face) == 0.0
    assert outside_change(_reencode(ref), ref, face) < BLOCK_CHANGE / 3
    edited = _other_mouth(face2, face)
    # The edit is a real one: inside the lower face, blocks changed far past the threshold...
    changes = block_changes(edited, ref, block_size(*ref.shape[:2]))
    assert float(changes.max()) > 2 * BLOCK_CHANGE
    # ... and none outside it.
    assert outside_change(_reencode(edited), ref, face) < BLOCK_CHANGE


@pytest.mark.parametrize("where_d", [-1.7, 2.25])  # forehead; below the chin (neck, tie, beard)
def test_a_mouth_pasted_off_the_lower_face_is_flagged(
    where_d: float, face2: list[RGB], face2_face: FaceFrame
) -> None:
    ref, face = face2[0], face2_face
    mouth = _mouth(face2[0], face)
    pasted = _paste(ref, mouth, face.nose + face.down * where_d * face.d)
    assert outside_change(_reencode(pasted), ref, face) > BLOCK_CHANGE


def test_without_a_face_every_block_counts(face2: list[RGB], face2_face: FaceFrame) -> None:
    ref = face2[0]
    edited = _other_mouth(face2, face2_face)
    assert outside_change(edited, ref, face2_face) < BLOCK_CHANGE
    assert outside_change(edited, ref, None) > BLOCK_CHANGE


def test_lip_colour_quiet_for_own_mouth_loud_for_recoloured_or_foreign_lips(
    face2: list[RGB], face2_face: FaceFrame, shared_media: Path
) -> None:
    ref, face = face2[0], face2_face
    assert lip_colour_shift(ref, ref, face) == pytest.approx(0.0)
    own = lip_colour_shift(_reencode(_other_mouth(face2, face)), ref, face)
    assert own is not None and own < LIP_SHIFT / 2
    # Recoloured lips: the mouth's hue turned (a purple-blue lipstick) in the lip box.
    x0, y0, x1, y1 = _rect(face, (-0.6, 0.6), (0.1, 1.0))
    hsv = cv2.cvtColor(ref, cv2.COLOR_RGB2HSV)
    box = hsv[y0:y1, x0:x1]
    box[..., 0] = (box[..., 0].astype(np.int32) + 140) % 180
    recoloured = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    shift = lip_colour_shift(_reencode(recoloured), ref, face)
    assert shift is not None and shift > LIP_SHIFT
    # Another person's lips: Katie Hill's mouth, scaled to this face, in its place.
    katie = _frames(mf.shared_file(shared_media, KATIE), 1)[0]
    kface = _face(katie)
    theirs = _mouth(katie, kface)
    mine = _mouth(ref, face)
    theirs = cv2.resize(theirs, (mine.shape[1], mine.shape[0]), interpolation=cv2.INTER_AREA)
    foreign = _paste(ref, theirs, face.nose + face.down * 0.55 * face.d)
    shift = lip_colour_shift(_reencode(foreign), ref, face)
    assert shift is not None and shift > LIP_SHIFT


def test_lip_colour_quiet_for_every_shape_of_the_persons_own_mouth(shared_media: Path) -> None:
    """Each of Katie Hill's own mouths (wide smiles with teeth, pressed shut, half open) in
    place of her mouth in one frame: her lips, so no frame may read as recoloured. (A fixed
    reddest share of the area read the skin around her shut lips as lip: 12% of these
    swaps went over the threshold, up to 20.8.)"""
    katie = _frames(mf.shared_file(shared_media, KATIE), 200)
    for r in (0, 199):
        face = _face(katie[r])
        own = _mouth(katie[r], face)
        shifts = []
        for i in range(0, 200, 8):
            theirs = _mouth(katie[i], _face(katie[i]))
            theirs = cv2.resize(theirs, (own.shape[1], own.shape[0]), interpolation=cv2.INTER_AREA)
            swapped = _paste(katie[r], theirs, face.nose + face.down * 0.55 * face.d)
            shifts.append(lip_colour_shift(_reencode(swapped), katie[r], face))
        measured = [s for s in shifts if s is not None]
        assert len(measured) >= 20
        assert max(measured) < LIP_SHIFT, (r, np.round(measured, 1))


def _microphone(rgb: RGB, face: FaceFrame) -> RGB:
    """A dark grey microphone held from below, its head in front of the mouth."""
    out = rgb.copy()
    head = face.nose + face.down * 0.6 * face.d
    r = int(0.35 * face.d)
    cv2.rectangle(
        out,
        (int(head[0]) - r // 2, int(head[1])),
        (int(head[0]) + r // 2, out.shape[0]),
        (45, 45, 50),
        -1,
    )
    cv2.circle(out, (int(head[0]), int(head[1])), r, (70, 70, 75), -1)
    return out


def test_a_mouth_painted_over_a_microphone_is_flagged(
    face2: list[RGB], face2_face: FaceFrame
) -> None:
    face = face2_face
    model = SkinModel()
    for rgb in face2[::10]:
        model.add(skin_samples(rgb, _face(rgb)))
    clean = face2[0]
    ref = _microphone(clean, face)
    ref_patch = lower_face_patch(ref, face)
    # Untouched, or re-encoded: nothing.
    assert occluder_change(ref_patch, ref_patch, model) == 0.0
    quiet = occluder_change(lower_face_patch(_reencode(ref), face), ref_patch, model)
    assert quiet < OCCLUDED_SHARE
    # An edit of the lips that leaves the microphone alone (the mouth's sides and the
    # skin under it changed, the microphone kept): quiet.
    around = _microphone(_other_mouth(face2, face), face)
    assert (
        occluder_change(lower_face_patch(_reencode(around), face), ref_patch, model)
        < OCCLUDED_SHARE
    )
    # A mouth painted over the microphone (an engine that ignored it): flagged.
    painted = _paste(ref, _mouth(face2[30], face), face.nose + face.down * 0.55 * face.d)
    share = occluder_change(lower_face_patch(_reencode(painted), face), ref_patch, model)
    assert share > OCCLUDED_SHARE


def test_the_skin_model_tells_skin_from_a_microphone(
    face2: list[RGB], face2_face: FaceFrame
) -> None:
    face = face2_face
    model = SkinModel()
    model.add(skin_samples(face2[0], face))
    with_mic = _microphone(face2[0], face)
    lab = cv2.cvtColor(lower_face_patch(with_mic, face).astype(np.float32) / 255, cv2.COLOR_RGB2LAB)
    not_skin = model.not_skin(lab)
    # Where the microphone is in the patch: the pixels it changed, warped the same way.
    mic = lower_face_patch((with_mic != face2[0]).any(axis=2).astype(np.uint8) * 255, face) > 200
    assert mic.sum() > 100
    assert float(not_skin[mic].mean()) > 0.95
    # The cheeks beside the nose (the upper sides of the patch) are skin.
    h, w = not_skin.shape
    plain = cv2.cvtColor(
        lower_face_patch(face2[0], face).astype(np.float32) / 255, cv2.COLOR_RGB2LAB
    )
    assert not model.not_skin(plain)[h // 5 : h // 3, w // 8 : w // 4].any()


def _write(path: Path, frames: list[RGB]) -> Path:
    return mf.write_video(path, frames, fps=25)


def test_the_joint_pass_flags_the_edited_frames_and_only_them(
    face2: list[RGB], face2_face: FaceFrame, tmp_path: Path
) -> None:
    """A 2 s input from the real clip and an 'output' where frames 10-14 have the mouth
    pasted on the forehead and frames 30-34 have purple lips, all others the person's own
    (another frame's mouth): the pass finds exactly those frames."""
    frames = face2[:50]
    reference = _write(tmp_path / "in.mp4", frames)
    edited = []
    for i, rgb in enumerate(frames):
        face = _face(rgb)
        out = _paste(
            rgb, _mouth(frames[(i + 25) % 50], face), face.nose + face.down * 0.55 * face.d
        )
        if 10 <= i < 15:
            out = _paste(out, _mouth(rgb, face), face.nose - face.down * 1.7 * face.d)
        if 30 <= i < 35:
            x0, y0, x1, y1 = _rect(face, (-0.6, 0.6), (0.1, 1.0))
            hsv = cv2.cvtColor(out, cv2.COLOR_RGB2HSV)
            box = hsv[y0:y1, x0:x1]
            box[..., 0] = (box[..., 0].astype(np.int32) + 140) % 180
            out = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
        edited.append(out)
    output = _write(tmp_path / "out.mp4", edited)
    joint = measure_with_reference(output, reference, 25.0, 25.0)
    res = joint.result()
    assert joint.out.face_rate == 1.0 and joint.ref.face_rate == 1.0
    assert res.outside_change is not None and res.lip_colour is not None
    assert res.outside_change.frames == 50
    assert res.outside_change.flagged == 5
    assert {i for i, _ in res.outside_change.worst} == set(range(10, 15))
    assert res.lip_colour.flagged == 5
    assert {i for i, _ in res.lip_colour.worst} == set(range(30, 35))
    assert res.occlusion is not None and res.occlusion.flagged == 0
    data = res.to_dict()
    assert data["outside_change"]["worst"][0]["frame"] in range(10, 15)


def test_the_output_face_is_its_own_not_the_references(face2: list[RGB], tmp_path: Path) -> None:
    """The output is followed from the reference's box only where its upper face is the
    reference's: frames blacked out in the output have no face there, though the 5-point
    model would find 'points' in any box."""
    frames = face2[:30]
    reference = _write(tmp_path / "in.mp4", frames)
    blacked = [np.zeros_like(f) if 10 <= i < 20 else f for i, f in enumerate(frames)]
    output = _write(tmp_path / "out.mp4", blacked)
    joint = measure_with_reference(output, reference, 25.0, 25.0)
    found = joint.out.found
    assert not found[10:20].any()
    assert found[:10].all() and found[20:].all()
    assert joint.ref.found.all()
    res = joint.result()
    assert res.outside_change is not None and res.outside_change.flagged == 10


def test_the_cli_reports_the_misplaced_mouth(
    face2: list[RGB], tmp_path: Path, shared_media: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``lipsync evaluate --reference`` end to end: frames 10-14 of the output have the mouth
    pasted on the forehead; the table and the JSON name them."""
    from lipsync.cli import main

    frames = face2[:40]
    reference = _write(tmp_path / "in.mp4", frames)
    edited = []
    for i, rgb in enumerate(frames):
        face = _face(rgb)
        if 10 <= i < 15:
            rgb = _paste(rgb, _mouth(rgb, face), face.nose - face.down * 1.7 * face.d)
        edited.append(rgb)
    output = _write(tmp_path / "out.mp4", edited)
    speech = mf.shared_file(shared_media, "audio_Real3DPortrait_Obama_5s.wav")
    args = ["evaluate", "--video", str(output), "--audio", str(speech)]
    args += ["--reference", str(reference), "--models-dir", str(tmp_path)]
    assert main([*args, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    outside = data["reference_metrics"]["outside_change"]
    assert outside["flagged"] == 5 and outside["share"] == pytest.approx(5 / 40)
    assert {w["frame"] for w in outside["worst"]} == set(range(10, 15))
    assert data["reference_metrics"]["lip_colour"]["flagged"] == 0
    assert main(args) == 0
    text = capsys.readouterr().out
    row = next(line for line in text.splitlines() if line.startswith("changed outside lower face"))
    assert "12.5% of 40 frames, 5 over 15" in row
