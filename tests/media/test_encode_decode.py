from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from lipsync.media.audio import load_audio
from lipsync.media.decode import iter_frames
from lipsync.media.encode import VideoWriter
from lipsync.media.reader import FrameReader
from tests import media_factory as mf


def test_writer_makes_h264_aac_faststart_mp4(tmp_path: Path) -> None:
    out = tmp_path / "o.mp4"
    frames = mf.moving_portrait_frames(30, 160)
    audio = mf.tone(1.2, 48000)[None, :]
    with VideoWriter(out, 160, 160, Fraction(25), audio, 48000) as w:
        for f in frames:
            w.write(f)
        w.commit()
    data = out.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat"), "moov must come first (faststart)"
    with av.open(str(out)) as c:
        v = c.streams.video[0]
        assert v.codec_context.name == "h264" and v.codec_context.pix_fmt == "yuv420p"
        assert v.average_rate == 25
        assert c.streams.audio[0].codec_context.name == "aac"
    decoded = mf.decode_video(out)
    assert len(decoded) == 30
    assert mf.psnr(decoded[10], frames[10]) > 30  # 4:2:0 chroma on a detailed image
    assert mf.audio_duration(out) == pytest.approx(1.2, abs=0.05)
    assert not list(tmp_path.glob(".*part*")), "no temp file left"


def test_writer_leaves_nothing_when_the_job_fails(tmp_path: Path) -> None:
    out = tmp_path / "o.mp4"
    with pytest.raises(RuntimeError), VideoWriter(out, 64, 64, Fraction(25), None, 48000) as w:
        w.write(np.zeros((64, 64, 3), np.uint8))
        raise RuntimeError("boom")
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_odd_sizes_are_padded_to_even(tmp_path: Path) -> None:
    out = tmp_path / "odd.mp4"
    with VideoWriter(out, 65, 49, Fraction(25), None, 48000) as w:
        w.write(np.full((49, 65, 3), 128, np.uint8))
        w.commit()
    assert mf.decode_video(out)[0].shape == (50, 66, 3)


def test_decode_streams_frames_and_seeks(tmp_path: Path) -> None:
    p = mf.write_video(tmp_path / "idx.mp4", mf.index_frames(60))
    frames = list(iter_frames(p))
    assert len(frames) == 60
    assert [f.index for f in frames] == list(range(60))
    assert frames[30].time_s == pytest.approx(30 / 25)
    # Start in the middle by time: the frames match a full decode.
    tail = list(iter_frames(p, start_index=40, start_time_s=frames[40].time_s))
    assert [f.index for f in tail] == list(range(40, 60))
    assert np.array_equal(tail[0].image, frames[40].image)


def test_gray_decoding_gives_luma_planes(portrait_video: Path) -> None:
    f = next(iter_frames(portrait_video, pixel_format="luma"))
    assert f.image.ndim == 2 and f.image.shape == (320, 320)


def _brightness(img: np.ndarray) -> int:
    return int(round((float(img.mean()) - 20) / 3))


def test_reader_serves_loop_and_bounce_orders(tmp_path: Path) -> None:
    p = mf.write_video(tmp_path / "idx.mp4", mf.index_frames(40))
    times = np.array([f.time_s for f in iter_frames(p)])
    seq = np.array(
        list(range(40)) + list(range(38, -1, -1)) + list(range(0, 10)) + [5, 6], np.int64
    )
    reader = FrameReader(p, times, is_image=False, window=8, pixel_format="rgb24")
    got = [(i, d, _brightness(img)) for i, d, img in reader.frames(seq)]
    assert [g[0] for g in got] == list(range(len(seq)))
    assert [g[1] for g in got] == list(seq)
    assert [g[2] for g in got] == list(seq), "each output shows the frame it asked for"


def test_load_audio_resamples_and_mixes(tmp_path: Path) -> None:
    p = mf.write_wav(tmp_path / "s.wav", mf.tone(1.0, 44100), 44100, channels=2)
    x, rate = load_audio(p, sample_rate=16000, channels=1)
    assert rate == 16000 and x.shape[0] == 1
    assert abs(x.shape[1] - 16000) < 200
    y, rate2 = load_audio(p)
    assert rate2 == 44100 and y.shape[0] == 2


@pytest.mark.parametrize(
    ("name", "frames", "size"),
    [
        ("video_videoretalking_face2.mp4", 125, (844, 844)),  # 5 s at 25 fps
        ("video_SadTalker_WDA_KatieHill_000.mp4", 200, (512, 512)),  # 8 s at 25 fps
    ],
)
def test_real_clips_decode_fully(
    shared_media: Path, name: str, frames: int, size: tuple[int, int]
) -> None:
    path = mf.shared_file(shared_media, name)
    indices, shapes = [], set()
    for frame in iter_frames(path, pixel_format="luma"):
        indices.append(frame.index)
        shapes.add(frame.image.shape)
    assert len(indices) == frames, "every frame of this clip, no more"
    assert indices == list(range(frames))
    assert shapes == {(size[1], size[0])}
    with av.open(str(path)) as container:
        assert container.streams.video[0].frames == frames, "as many as the container declares"


def test_i420_frames_and_region_paste(portrait_video: Path) -> None:
    from lipsync.media.decode import i420_to_rgb, paste_region, to_i420

    yuv = next(iter_frames(portrait_video, pixel_format="i420")).image
    assert yuv.shape == (480, 320)
    rgb = i420_to_rgb(yuv)
    rgb[101:151, 61:121] = (255, 0, 0)
    out = paste_region(yuv, rgb, 61, 101, 121, 151)
    back = i420_to_rgb(out)
    assert np.abs(back[104:148, 64:118].astype(int) - [255, 0, 0]).max() <= 3
    # Outside the (even-aligned) box every Y, U and V sample is unchanged.
    ys = out[:320]
    mask = np.ones((320, 320), bool)
    mask[100:152, 60:122] = False
    assert np.array_equal(ys[mask], yuv[:320][mask])
    assert np.array_equal(out[320:400, :30], yuv[320:400, :30])
    odd = to_i420(np.zeros((33, 47, 3), np.uint8))
    assert odd.shape == (51, 48)
