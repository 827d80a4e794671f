"""The ``retrieval`` engine class: per job, the index and calibration; per output, the
plan; per batch of frames, the pose-aware choice, the pose gate and the rendering. The
stages live in the sibling modules (see :mod:`lipsync.engines.retrieval`)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.ndimage import gaussian_filter1d

from lipsync.audio.visemes import MouthTrack, analyse
from lipsync.engines.base import Engine, EngineContext, SourceVideo
from lipsync.engines.retrieval.calibrate import ShapeModel, fit_shape_model, speech_features
from lipsync.engines.retrieval.index import MouthIndex, build_index, build_indices, frame_size
from lipsync.engines.retrieval.plan import Plan, make_plan
from lipsync.engines.retrieval.pose import (
    CropPoses,
    Pose,
    crop_poses,
    ease_shares,
    measure_poses,
    mismatch,
    pose_costs,
)
from lipsync.engines.retrieval.render import Draft, MouthRenderer
from lipsync.engines.retrieval.tuning import DEFAULT_TUNING, RetrievalTuning
from lipsync.engines.viseme import VisemeEngine
from lipsync.types import EngineReport, FaceObs, Patch, RGBImage

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]


class RetrievalEngine(Engine):
    """Photoreal and weight-free: the mouths come from the person's own frames; stills
    and videos without enough mouth variety fall back to the ``viseme`` engine. ``tuning``
    holds every number the stages use (default: :data:`DEFAULT_TUNING`)."""

    name = "retrieval"
    wants_source = True

    def __init__(
        self, ctx: EngineContext | None = None, tuning: RetrievalTuning = DEFAULT_TUNING
    ) -> None:
        self.ctx = ctx or EngineContext()
        self.tuning = tuning
        self.viseme = VisemeEngine(self.ctx)
        self._reset()

    def _reset(self) -> None:
        self.index: MouthIndex | None = None
        self.renderer: MouthRenderer | None = None
        self.model: ShapeModel | None = None
        self.plan: Plan | None = None
        self.path = "viseme"
        self.reason = "no source video given"
        self._own: tuple[MouthTrack, F32] | None = None
        # The output frames that show this engine's person, when it draws one of several:
        # their speech is ranked among their own lines (None: every frame).
        self._lines: npt.NDArray[np.bool_] | None = None
        self._last: tuple[int, int] | None = None  # (output index, candidate position)
        self._chosen: dict[int, int] = {}
        self._timings: dict[str, float] = {}
        self._target: tuple[F32, F32] | None = None
        self._crop_pose: CropPoses | None = None
        self._shares: dict[int, float] = {}
        self._mismatch: dict[int, float] = {}
        self._shot: int | None = None  # the shot of the last frame drawn
        self._starts: set[int] = set()  # output indices where a new shot began
        # One engine per person when the video shows several (a mouth is only ever taken
        # from the same person's frames).
        self._people: dict[int, RetrievalEngine] = {}

    # -- per job -----------------------------------------------------------------------------
    def prepare_source(self, source: SourceVideo) -> None:
        for child in self._people.values():
            child.close()
        self._reset()
        ids = sorted({int(p) for p in source.person_of() if p >= 0})
        if len(ids) > 1 and not source.is_image:
            self._prepare_people(source, ids)
            return
        t0 = time.perf_counter()
        if not self._can_index(source):
            return
        index = build_index(source, frame_size(source), tuning=self.tuning)
        self._timings["index_s"] = round(time.perf_counter() - t0, 3)
        self._learn(source, index)

    def _can_index(self, source: SourceVideo) -> bool:
        """Whether the source can have an index (else the reason is set)."""
        if source.is_image:
            self.reason = "still image: there are no other mouths to re-use"
            return False
        lms = source.landmarks
        valid = np.isfinite(lms.reshape(len(lms), -1)).all(axis=1)
        if valid.sum() < self.tuning.min_candidates:
            self.reason = f"only {int(valid.sum())} frames show the face"
            return False
        return True

    def _learn(self, source: SourceVideo, index: MouthIndex) -> None:
        """The index, the renderer and the calibration of the source's mouths."""
        self.index = index
        self.renderer = MouthRenderer(index, self.viseme, self.tuning)
        self._crop_pose = crop_poses(index)
        reason = self._no_variety(index)
        if reason is not None:
            self.reason = reason
            return
        t1 = time.perf_counter()
        if source.audio16k is not None and source.audio16k.size > 16000 // 2:
            first, last = float(source.frame_times[0]), float(source.frame_times[-1])
            n_own = int(round((last - first) * source.fps)) + 1
            track = analyse(source.audio16k, source.fps, n_own)
            self._own = (track, speech_features(track))
        self.model = fit_shape_model(index, self._own, source.frame_times, source.fps, self.tuning)
        self._timings["calibrate_s"] = round(time.perf_counter() - t1, 3)
        g = index.shape.gap[index.candidates]
        lo, hi = float(np.percentile(g, 5)), float(np.percentile(g, 95))
        self.path = "retrieval"
        self.reason = f"{len(index.candidates)} usable mouths, gap range {lo:.2f}..{hi:.2f}"

    def _prepare_people(self, source: SourceVideo, ids: list[int]) -> None:
        """One engine per person, each learning from that person's frames alone; their
        indices are cropped in one decode of the video."""
        t0 = time.perf_counter()
        people = source.person_of()
        views: dict[int, SourceVideo] = {}
        for pid in ids:
            mine = people == pid
            lms = np.where(mine[:, None, None], source.landmarks, np.nan).astype(np.float32)
            child = RetrievalEngine(self.ctx, self.tuning)
            view = replace(source, landmarks=lms, people=np.where(mine, 0, -1).astype(np.int32))
            if source.output_source is not None and len(people):
                at = np.clip(source.output_source, 0, len(people) - 1)
                child._lines = mine[at]
            if child._can_index(view):
                views[pid] = view
            self._people[pid] = child
        if views:
            indices = build_indices(list(views.values()), frame_size(source), tuning=self.tuning)
            for (pid, view), index in zip(views.items(), indices, strict=True):
                self._people[pid]._learn(view, index)
        self._timings["index_s"] = round(time.perf_counter() - t0, 3)
        drawn = [c.path for c in self._people.values()]
        self.path = "retrieval" if "retrieval" in drawn else "viseme"
        self.reason = f"{len(ids)} people, each from their own frames: " + ", ".join(
            f"person {pid} {c.path}" for pid, c in self._people.items()
        )

    def _no_variety(self, index: MouthIndex) -> str | None:
        """Why the video's mouths can't be re-used (too few, never closed, too little
        variety), or None when they can."""
        t = self.tuning
        if len(index.candidates) < t.min_candidates:
            return f"only {len(index.candidates)} frames have a usable mouth"
        g = index.shape.gap[index.candidates]
        lo, hi = float(np.percentile(g, 5)), float(np.percentile(g, 95))
        if float(g.min()) > t.max_closed_gap:
            return f"the mouth never closes in the video (smallest gap {g.min():.2f})"
        if hi - lo < t.min_gap_range:
            return f"not enough mouth variety in the video (gap range {hi - lo:.2f})"
        return None

    def prepare(self, audio16k: F32, fps: float, n_frames: int) -> None:
        self.viseme.prepare(audio16k, fps, n_frames)
        track = self.viseme.track
        assert track is not None
        # The speech is analysed once; each person's engine plans on the same track.
        for child in self._people.values():
            child.viseme.track = track
            child._plan()
        if not self._people:
            self._plan()

    def _plan(self) -> None:
        """The wanted mouth per output frame, and the plan of source mouths, from the
        speech track already analysed (``self.viseme.track``)."""
        self._last = None
        self._shot = None
        self._starts = set()
        if self.renderer is not None:
            self.renderer.colour = None
        self._chosen = {}
        self._shares = {}
        self._mismatch = {}
        if self.path != "retrieval" or self.model is None or self.index is None:
            return
        t0 = time.perf_counter()
        track = self.viseme.track
        assert track is not None
        lines = self._lines if self._lines is not None and len(self._lines) == len(track) else None
        gap, width = self.model.predict(track, speech_features(track), lines)
        gap = np.minimum(gaussian_filter1d(gap, self.tuning.target_sigma), gap).astype(np.float32)
        self._target = (gap, width)
        self.plan = make_plan(self.index, gap, width, track.speech, self.tuning)
        self._timings["plan_s"] = round(time.perf_counter() - t0, 3)

    def report(self) -> EngineReport:
        """The path that ran (the person's own mouths, or the viseme warp) and why, with
        the index, calibration, choice and pose-gate figures."""
        out: dict[str, Any] = {}
        if self._people:
            out["people"] = {
                str(pid): child.report().as_dict() for pid, child in self._people.items()
            }
            out.update(self._timings)
            return EngineReport(self.path, self.reason, out)
        if self.path == "viseme":
            out.update({f"viseme_{k}": v for k, v in self.viseme.report().details.items()})
        if self.index is not None:
            out["index"] = dict(self.index.stats)
        if self.model is not None:
            out["calibration"] = self.model.kind
            if self.model.cv_r2 is not None:
                out["calibration_cv_r2"] = self.model.cv_r2
        if self._chosen:
            out.update(self._choice_info())
        if self._shares:
            share = np.array(list(self._shares.values()))
            mism = np.array(list(self._mismatch.values()))
            out["pose_gate"] = {
                "own_mouth_frames": int(np.sum(share <= 0.0)),
                "eased_frames": int(np.sum((share > 0.0) & (share < 1.0))),
                "source_mouth_frames": int(np.sum(share >= 1.0)),
                "median_mismatch": round(float(np.median(mism)), 3),
                "p95_mismatch": round(float(np.percentile(mism, 95)), 3),
            }
        out.update(self._timings)
        return EngineReport(self.path, self.reason, out)

    def _choice_info(self) -> dict[str, Any]:
        """Cuts, mean run length and distinct source frames of the mouths chosen so far."""
        seq = np.array([self._chosen[k] for k in sorted(self._chosen)])
        frames = self.index.candidates[seq] if self.index is not None else seq
        cont = np.diff(frames) if len(frames) > 1 else np.zeros(0)
        cuts = int(np.sum((cont < -1) | (cont > 2)))
        return {
            "cuts": cuts,
            "mean_run_frames": round(len(frames) / (cuts + 1), 1),
            "distinct_source_frames": int(len(np.unique(frames))),
        }

    # -- frames ------------------------------------------------------------------------------
    def generate(
        self, frames: Sequence[RGBImage], faces: Sequence[FaceObs], indices: Sequence[int]
    ) -> list[Patch]:
        if self._people:
            return self._generate_people(frames, faces, indices)
        out: list[Patch] = []
        lo = 0
        for hi in range(1, len(faces) + 1):
            if hi < len(faces) and faces[hi].shot == faces[lo].shot:
                continue
            if faces[lo].shot != self._shot:
                self._new_shot(faces[lo].shot, int(indices[lo]))
            out.extend(self._generate_shot(frames[lo:hi], faces[lo:hi], indices[lo:hi]))
            lo = hi
        return out

    def _new_shot(self, shot: int, index: int) -> None:
        """Nothing carries across a cut: the choice's continuity, the colour fit and the
        pose gate's easing start again."""
        if self._shot is not None:
            self._starts.add(index)
            self._last = None
            if self.renderer is not None:
                self.renderer.colour = None
        self._shot = shot

    def _generate_people(
        self, frames: Sequence[RGBImage], faces: Sequence[FaceObs], indices: Sequence[int]
    ) -> list[Patch]:
        """Each face drawn by its own person's engine (the viseme warp for a face the
        analysis could not name)."""
        out: list[Patch | None] = [None] * len(faces)
        groups: dict[int, list[int]] = {}
        for k, face in enumerate(faces):
            groups.setdefault(face.person, []).append(k)
        for pid, ks in groups.items():
            child = self._people.get(pid)
            sub = ([frames[k] for k in ks], [faces[k] for k in ks], [indices[k] for k in ks])
            patches = child.generate(*sub) if child is not None else self.viseme.generate(*sub)
            for k, patch in zip(ks, patches, strict=True):
                out[k] = patch
        return [p for p in out if p is not None]

    def _generate_shot(
        self, frames: Sequence[RGBImage], faces: Sequence[FaceObs], indices: Sequence[int]
    ) -> list[Patch]:
        if self.path != "retrieval" or self.plan is None:
            return self.viseme.generate(frames, faces, indices)
        renderer = self.renderer
        assert renderer is not None and self._target is not None
        n = len(self.plan.states)
        idx = [min(max(int(i), 0), n - 1) for i in indices]
        poses = self.poses(faces)
        choice = self._choose(idx, poses)
        gap = self._target[0]
        share = self._gate(idx, poses, choice)
        calls = [
            (frame, face.landmarks, choice[i], float(gap[i]), i, w)
            for frame, face, i, w in zip(frames, faces, idx, share, strict=True)
        ]
        drafts = self.viseme.mapper.map(renderer.draft, calls)
        return [renderer.finish(d) for d in drafts]

    def close(self) -> None:
        for child in self._people.values():
            child.close()
        self.viseme.close()

    def poses(self, faces: Sequence[FaceObs]) -> list[Pose]:
        """The head pose of each face, measured once for the choice and the gate."""
        assert self.index is not None
        return measure_poses(faces, self.index.template)

    def mismatch(self, positions: I64, pose: Pose) -> F32:
        """How far the head pose of candidates ``positions`` is from a frame's ``pose``, in
        gate units (see :func:`lipsync.engines.retrieval.pose.mismatch`)."""
        assert self.index is not None and self._crop_pose is not None
        return mismatch(self.index, self._crop_pose, positions, pose, self.tuning)

    def _gate(self, idx: list[int], poses: list[Pose], choice: dict[int, int]) -> list[float]:
        """The share of the source mouth per frame of the batch (see
        :func:`lipsync.engines.retrieval.pose.ease_shares`)."""
        mism = [
            float(self.mismatch(np.array([choice[i]], np.int64), pose)[0])
            for i, pose in zip(idx, poses, strict=True)
        ]
        out = ease_shares(idx, mism, self._shares, self.tuning, self._starts)
        for i, d in zip(idx, mism, strict=True):
            self._mismatch[i] = d
        return out

    def _choose(self, idx: list[int], poses: list[Pose]) -> dict[int, int]:
        """Candidate position per output index of this batch (pose-aware Viterbi)."""
        plan = self.plan
        index = self.index
        assert plan is not None and index is not None and self._crop_pose is not None
        in_order = all(b > a for a, b in zip(idx, idx[1:], strict=False))
        start = 0 if self._last is None else self._last[0] + 1
        if not idx or not in_order or idx[0] < start:
            out = {i: int(plan.path[i]) for i in idx}
            self._chosen.update(out)
            return out
        # The head pose of each frame in the batch against each candidate's.
        extra: dict[int, F32] = {
            i: pose_costs(index, self._crop_pose, plan.states[i], pose, self.tuning)
            for i, pose in zip(idx, poses, strict=True)
        }
        prev = self._last[1] if self._last is not None else None
        stop = idx[-1] + 1
        seq = plan.solve(start, stop, prev, extra)
        self._last = (stop - 1, int(seq[-1]))
        out = {i: int(seq[i - start]) for i in idx}
        self._chosen.update(out)
        return out

    def render(
        self,
        frame: RGBImage,
        lm_t: F32,
        pos: int,
        gap: float | None = None,
        out_index: int | None = None,
        share: float = 1.0,
    ) -> Patch:
        """The target frame with the mouth of candidate ``pos`` put in.

        The target's lower face is warped so its lips and jaw take the chosen mouth's
        geometry, moved part of the way to the wanted gap (template units, if given); the
        chosen mouth's crop is placed by the rigid points, its lips opened or closed by the
        same amount, colour-matched, and blended with a feathered ellipse.

        ``share`` below 1 (the pose gate): the geometry moves that far from the chosen
        mouth's towards the frame's own mouth opened to the wanted gap, the frame's own mouth
        is warped and drawn there (as the viseme engine does), and the chosen mouth, warped
        to the same geometry, is blended over it at that strength; at 0 it is left out.
        """
        return self._finish(self._draft(frame, lm_t, pos, gap, out_index, share))

    def _draft(
        self,
        frame: RGBImage,
        lm_t: F32,
        pos: int,
        gap: float | None,
        out_index: int | None,
        share: float,
    ) -> Patch | Draft:
        assert self.renderer is not None
        return self.renderer.draft(frame, lm_t, pos, gap, out_index, share)

    def _finish(self, d: Patch | Draft) -> Patch:
        assert self.renderer is not None
        return self.renderer.finish(d)
