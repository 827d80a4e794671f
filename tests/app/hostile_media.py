"""Hostile media made by the tests themselves: playlists and lists in disguise, files that
point at other files or at the network, lying headers, too many streams, damaged copies.

Everything that names a network address names the caller's loopback listener, so a file
that did get a connection out of the service is caught there and goes nowhere else.
"""

from __future__ import annotations

import random
import struct
import zlib
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def hls_playlist(targets: list[str]) -> bytes:
    """An HLS playlist whose segments are ``targets`` (files, URLs, concat: chains)."""
    lines = ["#EXTM3U", "#EXT-X-MEDIA-SEQUENCE:0", "#EXT-X-TARGETDURATION:10"]
    for target in targets:
        lines += ["#EXTINF:10.0,", target]
    return ("\n".join([*lines, "#EXT-X-ENDLIST", ""])).encode()


def concat_list(targets: list[str]) -> bytes:
    return ("ffconcat version 1.0\n" + "".join(f"file '{t}'\n" for t in targets)).encode()


def sdp_session(port: int) -> bytes:
    """An SDP description: a demuxer that opens RTP sockets to the address it names."""
    return (
        "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=x\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=video {port} RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
    ).encode()


def _chunk(fourcc: bytes, data: bytes) -> bytes:
    pad = b"\0" if len(data) % 2 else b""
    return fourcc + struct.pack("<I", len(data)) + data + pad


def _list(kind: bytes, *chunks: bytes) -> bytes:
    return _chunk(b"LIST", kind + b"".join(chunks))


def avi_with_gab2_playlist(playlist: bytes) -> bytes:
    """The 2017 HLS-in-AVI shape: an AVI whose subtitle stream is a GAB2 chunk carrying an
    HLS playlist (FFmpeg once probed such embedded data with every demuxer it knew)."""
    name = "x".encode("utf-16-le") + b"\0\0"
    gab2 = b"GAB2\0" + struct.pack("<H", 2) + struct.pack("<I", len(name)) + name
    gab2 += struct.pack("<H", 4) + struct.pack("<I", len(playlist)) + playlist
    avih = struct.pack("<14I", 40000, 0, 0, 0x10, 1, 0, 1, 0, 64, 64, 0, 0, 0, 0)
    strh = b"txts" + b"\0" * 4 + struct.pack("<IHHIIIIIIIIhhhh", 0, 0, 0, 0, 1, 25, 0, 1,
                                              len(gab2), 0, 0, 0, 0, 0, 0)  # fmt: skip
    hdrl = _list(b"hdrl", _chunk(b"avih", avih), _list(b"strl", _chunk(b"strh", strh)))
    movi = _list(b"movi", _chunk(b"00tx", gab2))
    idx1 = _chunk(b"idx1", b"00tx" + struct.pack("<III", 0x10, 4, len(gab2)))
    body = b"AVI " + hdrl + movi + idx1
    return b"RIFF" + struct.pack("<I", len(body)) + body


def small_video(path: Path, container: str, seconds: float = 1.0, size: int = 64) -> Path:
    """A real little video (mpeg4 in ``container``) with a tone, for patching."""
    with av.open(str(path), "w", format=container) as out:
        v = out.add_stream("mpeg4", rate=25)
        v.width, v.height, v.pix_fmt = size, size, "yuv420p"
        a = out.add_stream("pcm_s16le" if container == "avi" else "aac", rate=16000)
        a.layout = "mono"
        for i in range(int(seconds * 25)):
            img = np.full((size, size, 3), (i * 9) % 255, np.uint8)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            for packet in v.encode(frame):
                out.mux(packet)
        samples = (np.sin(np.arange(int(seconds * 16000)) / 5.0) * 8000).astype(np.int16)
        af = av.AudioFrame.from_ndarray(samples[None, :], format="s16", layout="mono")
        af.sample_rate, af.time_base, af.pts = 16000, Fraction(1, 16000), 0
        for packet in a.encode(af):
            out.mux(packet)
        for stream in (v, a):
            for packet in stream.encode():
                out.mux(packet)
    return path


def avi_claiming_size(avi: bytes, width: int, height: int) -> bytes:
    """Patch an AVI's main header and video format to claim ``width`` x ``height``."""
    data = bytearray(avi)
    at = data.index(b"avih") + 8
    struct.pack_into("<II", data, at + 32, width, height)
    vids = data.index(b"vids")
    strf = data.index(b"strf", vids) + 8
    struct.pack_into("<ii", data, strf + 4, width, height)
    return bytes(data)


def _boxes(data: bytes | bytearray, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(type, offset, size) of the ISO-BMFF boxes in ``data[start:end]``."""
    at = start
    while at + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, at)
        if size < 8 or at + size > end:
            return
        yield kind, at, size
        at += size


_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"dinf", b"stbl", b"edts", b"udta"}


def _find(data: bytes | bytearray, path: list[bytes]) -> list[list[tuple[int, int]]]:
    """Every chain of (offset, size) from the top level down to a box at ``path``."""
    found: list[list[tuple[int, int]]] = []

    def walk(start: int, end: int, depth: int, chain: list[tuple[int, int]]) -> None:
        for kind, at, size in _boxes(data, start, end):
            if kind != path[depth]:
                continue
            here = [*chain, (at, size)]
            if depth == len(path) - 1:
                found.append(here)
            elif kind in _CONTAINERS:
                walk(at + 8, at + size, depth + 1, here)

    walk(0, len(data), 0, [])
    return found


def mp4_claiming_duration(mp4: bytes, seconds: float) -> bytes:
    """Patch an MP4 to last ``seconds``: its movie, track and media headers, and its sample
    tables (the few real frames are spread over that time, which FFmpeg believes)."""
    data = bytearray(mp4)
    stts_path = [b"moov", b"trak", b"mdia", b"minf", b"stbl", b"stts"]
    mdhds = _find(data, [b"moov", b"trak", b"mdia", b"mdhd"])
    for mdhd, stts in zip(mdhds, _find(data, stts_path), strict=True):
        (scale,) = struct.unpack_from(">I", data, mdhd[-1][0] + 20)
        at = stts[-1][0]
        (entries,) = struct.unpack_from(">I", data, at + 12)
        samples = sum(struct.unpack_from(">I", data, at + 16 + 8 * i)[0] for i in range(entries))
        delta = min(int(seconds * scale / max(samples, 1)), 0xFFFFFFFF)
        for i in range(entries):
            struct.pack_into(">I", data, at + 20 + 8 * i, delta)
    (mvhd,) = _find(data, [b"moov", b"mvhd"])
    (movie_scale,) = struct.unpack_from(">I", data, mvhd[-1][0] + 20)
    for chain in _find(data, [b"moov", b"trak", b"edts", b"elst"]):
        at = chain[-1][0]
        if data[at + 8] == 0:  # edit list: the first segment's duration, in movie units
            struct.pack_into(">I", data, at + 16, min(int(seconds * movie_scale), 0xFFFFFFFF))
    for path, scale_at, duration_at in (
        ([b"moov", b"mvhd"], 20, 24),
        ([b"moov", b"trak", b"mdia", b"mdhd"], 20, 24),
        ([b"moov", b"trak", b"tkhd"], None, 28),
    ):
        for chain in _find(data, path):
            at = chain[-1][0]
            if data[at + 8] != 0:
                continue  # version 1 headers are 64-bit; PyAV writes version 0
            scale = movie_scale if scale_at is None else struct.unpack_from(">I", data, at + 20)[0]
            struct.pack_into(">I", data, at + duration_at, min(int(seconds * scale), 0xFFFFFFFF))
    return bytes(data)


def mp4_with_external_dref(mp4: bytes, location: str) -> bytes:
    """Make every track's data reference an external ``location`` (a path or URL) instead
    of the file itself: a reader that honoured it would open that location."""
    data = bytearray(mp4)
    body = b"\0\0\0\0" + location.encode() + b"\0"  # version 0, flags 0: not self-contained
    entry = struct.pack(">I", 8 + len(body)) + b"url " + body
    chains = _find(data, [b"moov", b"trak", b"mdia", b"minf", b"dinf", b"dref"])
    assert chains, "no data reference box found"
    for chain in sorted(chains, key=lambda c: -c[-1][0]):  # back to front: offsets stay valid
        first = chain[-1][0] + 16  # after size, type, version/flags, entry count
        (old_size,) = struct.unpack_from(">I", data, first)
        data[first : first + old_size] = entry
        for at, size in chain:
            struct.pack_into(">I", data, at, size + len(entry) - old_size)
    return bytes(data)


def png_claiming(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def wav_claiming(seconds: float, rate: int = 16000, real_s: float = 1.0) -> bytes:
    """A WAV header claiming ``seconds`` of audio, followed by ``real_s`` of a tone."""
    n = int(seconds * rate) * 2
    header = b"RIFF" + struct.pack("<I", min(n + 36, 0xFFFFFFFF)) + b"WAVE"
    header += b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
    header += b"data" + struct.pack("<I", min(n, 0xFFFFFFFF))
    tone = (np.sin(np.arange(int(real_s * rate)) / 4.0) * 6000).astype("<i2")
    return header + tone.tobytes()


def many_streams(path: Path, count: int = 1000) -> Path:
    """A Matroska file with one short video stream and ``count - 1`` audio streams."""
    with av.open(str(path), "w", format="matroska") as out:
        v = out.add_stream("mpeg4", rate=25)
        v.width, v.height, v.pix_fmt = 32, 32, "yuv420p"
        streams = [out.add_stream("pcm_s16le", rate=8000) for _ in range(count - 1)]
        frame = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")
        for packet in [*v.encode(frame), *v.encode()]:
            out.mux(packet)
        samples = np.zeros((1, 80), np.int16)
        for s in streams:
            af = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
            af.sample_rate, af.time_base, af.pts = 8000, Fraction(1, 8000), 0
            for packet in [*s.encode(af), *s.encode()]:
                out.mux(packet)
    return path


def truncations(data: bytes, fractions: tuple[float, ...]) -> Iterator[tuple[str, bytes]]:
    for f in fractions:
        yield f"truncated-{f:g}", data[: max(1, int(len(data) * f))]


def bit_flips(
    data: bytes, seed: int, flips: int, region: tuple[float, float] = (0.0, 1.0)
) -> bytes:
    """``data`` with ``flips`` random bits flipped inside ``region`` (fractions of its size)."""
    rng = random.Random(seed)
    out = bytearray(data)
    lo, hi = (
        int(len(out) * region[0]),
        max(int(len(out) * region[1]), int(len(out) * region[0]) + 1),
    )
    for _ in range(flips):
        at = rng.randrange(lo, min(hi, len(out)))
        out[at] ^= 1 << rng.randrange(8)
    return bytes(out)
