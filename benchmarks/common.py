"""Inputs and machine facts shared by the benchmarks (nothing here runs at import)."""

from __future__ import annotations

import os
import platform
from fractions import Fraction
from pathlib import Path

import numpy as np
import numpy.typing as npt

ROOT = Path(__file__).resolve().parents[1]
SHARED_MEDIA = ROOT.parent / "shared" / "media"
OUT = ROOT / "benchmarks" / "out"


def machine() -> dict[str, str]:
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "unknown"
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kb / 1024**2:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    gpu = "none"
    try:
        import torch

        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return {
        "cores": str(len(os.sched_getaffinity(0))),
        "cpu": cpu,
        "memory": mem,
        "gpu": gpu,
        "python": platform.python_version(),
    }


def speech(seconds: float, out: Path) -> Path:
    """English speech of the wanted length: the shared clips concatenated (espeak-ng if absent)."""
    from lipsync.media.audio import load_audio
    from tests.media_factory import espeak, write_wav

    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    sources = [
        SHARED_MEDIA / "audio_SadTalker_RD_Radio31_000.wav",
        SHARED_MEDIA / "audio_Real3DPortrait_Obama_5s.wav",
    ]
    if not all(p.exists() for p in sources):
        tmp = out.with_suffix(".espeak.wav")
        espeak(
            tmp,
            "Every morning the market opens early, and people walk past the river "
            "talking about the weather, the news, and what they will cook tonight.",
        )
        sources = [tmp]
    parts = [load_audio(p, sample_rate=16000, channels=1)[0][0] for p in sources]
    joined = np.concatenate(parts)
    n = int(seconds * 16000)
    reps = int(np.ceil(n / joined.size))
    write_wav(out, np.tile(joined, reps)[:n], 16000)
    return out


def _base_frames() -> list[npt.NDArray[np.uint8]]:
    from lipsync.media.decode import iter_frames
    from tests.media_factory import moving_portrait_frames

    clip = SHARED_MEDIA / "video_videoretalking_face2.mp4"
    if clip.exists():
        return [f.image for f in iter_frames(clip)]
    return moving_portrait_frames(50, 512)


def talking_video(height: int, seconds: float, out: Path, fps: int = 25) -> Path:
    """A 16:9 ``height``p video of ``seconds``, built from a real clip by scaling, padding
    and playing it forward and backward (streamed to disk, never all in memory)."""
    import av
    import cv2

    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    base = _base_frames()
    width = int(round(height * 16 / 9 / 2)) * 2
    seq = base + base[-2:0:-1]
    tmp = out.with_suffix(".part.mp4")
    with av.open(str(tmp), "w") as c:
        vs = c.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
        vs.options = {"crf": "18", "preset": "veryfast"}
        for i in range(int(seconds * fps)):
            f = seq[i % len(seq)]
            side = cv2.resize(f, (height, height), interpolation=cv2.INTER_AREA)
            canvas = cv2.resize(cv2.GaussianBlur(side, (0, 0), 25), (width, height))
            x0 = (width - height) // 2
            canvas[:, x0 : x0 + height] = side
            frame = av.VideoFrame.from_ndarray(np.asarray(canvas, np.uint8), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            for p in vs.encode(frame):
                c.mux(p)
        for p in vs.encode(None):
            c.mux(p)
    tmp.replace(out)
    return out


def random_wav2lip_weights(models_dir: Path) -> Path:
    """Random-initialised Wav2Lip in the published layouts (speed does not depend on values)."""
    from lipsync.engines.wav2lip.export import export_onnx, save_published
    from lipsync.engines.wav2lip.net import Wav2Lip

    models_dir.mkdir(parents=True, exist_ok=True)
    pth, onnx = models_dir / "wav2lip_gan.pth", models_dir / "wav2lip_gan_96.onnx"
    if not (pth.exists() and onnx.exists()):
        import torch

        torch.manual_seed(0)
        model = Wav2Lip().eval()
        save_published(model, pth)
        export_onnx(model, onnx)
    return models_dir


def big_photo(megapixels: float, out: Path) -> Path:
    """A 4:3 JPEG portrait of about ``megapixels`` (a phone photo's size): the astronaut
    scaled up to the photo's height (bicubic) on a blurred background."""
    import cv2
    from skimage import data

    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    height = int(round(np.sqrt(megapixels * 1e6 * 3 / 4) / 2)) * 2
    width = int(round(height * 4 / 3 / 2)) * 2
    face = cv2.resize(np.asarray(data.astronaut()), (height, height), interpolation=cv2.INTER_CUBIC)
    canvas = cv2.resize(cv2.GaussianBlur(face, (0, 0), 25), (width, height))
    x0 = (width - height) // 2
    canvas[:, x0 : x0 + height] = face
    tmp = out.with_suffix(".part.jpg")
    cv2.imwrite(str(tmp), cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92])
    tmp.replace(out)
    return out
