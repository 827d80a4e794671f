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


def many_streams(path: Path, count: int = 1000, container: str = "matroska") -> Path:
    """A file (Matroska unless ``container`` says otherwise) with one short video stream
    and ``count - 1`` audio streams."""
    with av.open(str(path), "w", format=container) as out:
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


# --- H.264 headers that lie about the picture size (the "1,254-byte MP4" of issue 17) ---

_HIGH_PROFILES = frozenset({100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135})


def _unescape(nal: bytes) -> bytes:
    """NAL payload without emulation-prevention bytes (00 00 03 -> 00 00)."""
    return nal.replace(b"\x00\x00\x03", b"\x00\x00")


def _escape(rbsp: bytes) -> bytes:
    out, zeros = bytearray(), 0
    for byte in rbsp:
        if zeros >= 2 and byte <= 3:
            out.append(3)
            zeros = 0
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)


class _Bits:
    """Exp-Golomb reading over a string of '0'/'1' (SPS are a few dozen bytes)."""

    def __init__(self, data: bytes) -> None:
        self.bits = "".join(f"{b:08b}" for b in data)
        self.at = 0

    def u(self, n: int) -> int:
        value = int(self.bits[self.at : self.at + n] or "0", 2)
        self.at += n
        return value

    def ue(self) -> int:
        zeros = 0
        while self.bits[self.at] == "0":
            zeros += 1
            self.at += 1
        return self.u(zeros + 1) - 1

    def se(self) -> int:
        k = self.ue()
        return (k + 1) // 2 if k % 2 else -(k // 2)


def _ue_bits(value: int) -> str:
    code = f"{value + 1:b}"
    return "0" * (len(code) - 1) + code


def h264_sps_claiming(sps: bytes, width: int, height: int) -> bytes:
    """An H.264 SPS NAL (header byte included, escaped) rewritten to claim ``width`` x
    ``height`` (multiples of 16, progressive, no cropping); everything else is kept."""
    r = _Bits(_unescape(sps))
    r.u(8 + 24)  # NAL header, profile_idc, constraint flags, level_idc
    profile = int(r.bits[8:16], 2)
    r.ue()  # seq_parameter_set_id
    if profile in _HIGH_PROFILES:
        if r.ue() == 3:  # chroma_format_idc
            r.u(1)
        r.ue(), r.ue(), r.u(1)  # bit depths, qpprime_y_zero_transform_bypass
        if r.u(1):
            raise ValueError("SPS with scaling matrices: not handled here")
    r.ue()  # log2_max_frame_num_minus4
    poc_type = r.ue()
    if poc_type == 0:
        r.ue()
    elif poc_type == 1:
        r.u(1), r.se(), r.se()
        for _ in range(r.ue()):
            r.se()
    r.ue(), r.u(1)  # max_num_ref_frames, gaps_in_frame_num_value_allowed_flag
    head = r.bits[: r.at]
    r.ue(), r.ue()  # the size in macroblocks
    if not r.u(1):  # frame_mbs_only_flag
        r.u(1)
    direct_8x8 = r.u(1)
    if r.u(1):  # frame cropping
        r.ue(), r.ue(), r.ue(), r.ue()
    rest = r.bits[r.at :].rstrip("0")[:-1]  # without the stop bit and its padding
    bits = head + _ue_bits(width // 16 - 1) + _ue_bits(height // 16 - 1)
    bits += "1" + str(direct_8x8) + "0" + rest + "1"
    bits += "0" * (-len(bits) % 8)
    return _escape(int(bits, 2).to_bytes(len(bits) // 8, "big"))


def avcc_claiming(avcc: bytes, width: int, height: int) -> bytes:
    """An avcC record (MP4 ``avcC`` box / Matroska CodecPrivate) whose SPS claim
    ``width`` x ``height``; PPS and the rest are kept."""
    out = bytearray(avcc[:5])
    count, at = avcc[5] & 0x1F, 6
    out.append(avcc[5])
    for _ in range(count):
        (n,) = struct.unpack_from(">H", avcc, at)
        sps = h264_sps_claiming(avcc[at + 2 : at + 2 + n], width, height)
        out += struct.pack(">H", len(sps)) + sps
        at += 2 + n
    return bytes(out + avcc[at:])


def h264_claiming_size(
    path: Path, width: int, height: int, container: str = "mp4", in_container: bool = False
) -> Path:
    """A tiny H.264 file (two 64x64 frames) whose SPS claims ``width`` x ``height``.

    With ``in_container`` the container's own fields (MP4 ``avc1``/``tkhd``, Matroska
    ``PixelWidth``) claim it too; without, they keep saying 64x64 and only the codec header
    lies: what a decoder allocates for is the SPS.
    """
    import io

    tiny = io.BytesIO()
    with av.open(tiny, "w", format="mp4") as out:
        v = out.add_stream("libx264", rate=25, options={"preset": "ultrafast", "crf": "40"})
        v.width, v.height, v.pix_fmt = 64, 64, "yuv420p"
        for i in range(2):
            img = np.full((64, 64, 3), 40 + 90 * i, np.uint8)
            for packet in v.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in v.encode():
            out.mux(packet)
    tiny.seek(0)
    with av.open(tiny) as src, av.open(str(path), "w", format=container) as out:
        s = src.streams.video[0]
        o = out.add_stream_from_template(s)
        o.codec_context.extradata = avcc_claiming(s.codec_context.extradata, width, height)
        if in_container:
            o.codec_context.width, o.codec_context.height = width, height
        for packet in src.demux(s):
            if packet.size:
                packet.stream = o
                out.mux(packet)
    return path
