"""app/uploads.py's streaming multipart parser, fed real request bodies chunk by chunk."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import pytest

from app.uploads import (
    MAX_FIELD_BYTES,
    MAX_PARTS,
    ParsedUpload,
    UploadError,
    UploadTooLarge,
    boundary_of,
    receive_multipart,
)
from tests import media_factory as mf

BOUNDARY = "----lipsyncTestBoundary7MA4YWxkTrZu0gW"
CTYPE = f"multipart/form-data; boundary={BOUNDARY}"

Part = tuple[str, bytes, bytes]  # (Content-Disposition parameters, extra headers, body)


def file_part(
    name: str, filename: str | None, data: bytes, ctype: str = "application/octet-stream"
) -> Part:
    disp = f'name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
    return disp, f"Content-Type: {ctype}\r\n".encode(), data


def text_part(name: str, value: str | bytes) -> Part:
    return f'name="{name}"', b"", value.encode() if isinstance(value, str) else value


def body_of(parts: Iterable[Part], disposition: str = "form-data") -> bytes:
    out = bytearray()
    for disp, headers, data in parts:
        out += f"--{BOUNDARY}\r\n".encode()
        out += f"Content-Disposition: {disposition}; {disp}\r\n".encode() if disp else b""
        out += headers + b"\r\n" + data + b"\r\n"
    out += f"--{BOUNDARY}--\r\n".encode()
    return bytes(out)


async def _chunks(body: bytes, size: int, pulled: list[int] | None = None) -> AsyncIterator[bytes]:
    for i in range(0, len(body), size):
        if pulled is not None:
            pulled.append(i)
        yield body[i : i + size]


def parse(
    body: bytes, dest: Path, chunk: int = 65536, max_bytes: int = 10**8, ctype: str | None = CTYPE
) -> ParsedUpload:
    dest.mkdir(parents=True, exist_ok=True)
    return asyncio.run(receive_multipart(_chunks(body, chunk), ctype, dest, max_bytes))


@pytest.fixture(scope="module")
def real_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """Real media bytes: a WAV tone and the astronaut portrait as PNG."""
    d = tmp_path_factory.mktemp("upload_media")
    wav = mf.write_wav(d / "tone.wav", mf.tone(0.3), 16000).read_bytes()
    png = mf.write_png(d / "face.png", mf.astronaut()).read_bytes()
    return {"audio": wav, "video": png}


def normal_form(files: dict[str, bytes]) -> list[Part]:
    return [
        file_part("audio", "speech.wav", files["audio"], "audio/wav"),
        text_part("fps", "25"),
        file_part("video", "face.png", files["video"], "image/png"),
        text_part("sync_mode", "cut_off"),
    ]


def test_normal_form_writes_files_and_keeps_fields(
    tmp_path: Path, real_files: dict[str, bytes]
) -> None:
    got = parse(body_of(normal_form(real_files)), tmp_path / "job")
    assert got.fields == {"fps": "25", "sync_mode": "cut_off"}
    assert set(got.files) == {"audio", "video"}
    for name, ext, original in (("audio", ".wav", "speech.wav"), ("video", ".png", "face.png")):
        saved = got.files[name]
        assert saved.path == tmp_path / "job" / f"{name}{ext}"
        assert saved.path.read_bytes() == real_files[name], "the bytes on disk are the upload"
        assert saved.size == len(real_files[name])
        assert saved.sha256 == hashlib.sha256(real_files[name]).hexdigest()
        assert saved.filename == original
    assert sorted(p.name for p in (tmp_path / "job").iterdir()) == ["audio.wav", "video.png"]


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 13, 64, 1000])
def test_any_chunking_gives_the_same_result(
    tmp_path: Path, real_files: dict[str, bytes], chunk: int
) -> None:
    """Boundaries, headers and field values split across chunks parse exactly as one chunk."""
    small = {"audio": real_files["audio"][:3000], "video": real_files["video"][:5000]}
    body = body_of(normal_form(small))
    whole = parse(body, tmp_path / "whole")
    split = parse(body, tmp_path / "split", chunk=chunk)
    assert split.fields == whole.fields == {"fps": "25", "sync_mode": "cut_off"}
    assert split.digest() == whole.digest()
    for name in ("audio", "video"):
        assert split.files[name].path.read_bytes() == small[name]
        assert split.files[name].sha256 == whole.files[name].sha256


def test_every_split_point_of_the_boundary_line(tmp_path: Path) -> None:
    """Two chunks, cut at every byte of the form: each parse sees the same parts."""
    audio, video = b"RIFF\r\n--not-a-boundary\r\n" * 3, b"\x00\x01\r\n" * 5
    body = body_of(
        [
            file_part("audio", "a.wav", audio),
            text_part("fps", "30"),
            file_part("video", "v.mp4", video),
        ]
    )
    for cut in range(1, len(body)):
        dest = tmp_path / str(cut)
        dest.mkdir()

        async def two(cut: int = cut) -> AsyncIterator[bytes]:
            yield body[:cut]
            yield body[cut:]

        got = asyncio.run(receive_multipart(two(), CTYPE, dest, 10**6))
        assert got.fields == {"fps": "30"}, cut
        assert got.files["audio"].path.read_bytes() == audio, cut
        assert got.files["video"].path.read_bytes() == video, cut


@pytest.mark.parametrize(
    "ctype",
    [None, "", "multipart/form-data", "multipart/form-data; boundary=", "application/json",
     f"multipart/mixed; boundary={BOUNDARY}", f"text/plain; boundary={BOUNDARY}"],
)  # fmt: skip
def test_missing_boundary_or_wrong_type(tmp_path: Path, ctype: str | None) -> None:
    with pytest.raises(UploadError, match="multipart/form-data"):
        parse(body_of([text_part("fps", "25")]), tmp_path, ctype=ctype)
    assert list(tmp_path.iterdir()) == [], "nothing written"


def test_boundary_of_reads_quoted_boundaries() -> None:
    assert boundary_of(CTYPE) == BOUNDARY.encode()
    assert boundary_of('multipart/form-data; boundary="a b:c"') == b"a b:c"


def test_oversize_stops_at_the_cap(tmp_path: Path, real_files: dict[str, bytes]) -> None:
    body = body_of(normal_form(real_files))
    pulled: list[int] = []
    dest = tmp_path / "job"
    dest.mkdir()
    cap = 10_000
    with pytest.raises(UploadTooLarge) as err:
        asyncio.run(receive_multipart(_chunks(body, 1000, pulled), CTYPE, dest, cap))
    assert err.value.limit == cap and str(cap) in str(err.value)
    assert len(pulled) == cap // 1000 + 1, "reading stopped with the chunk that passed the cap"
    assert sum(p.stat().st_size for p in dest.iterdir()) <= cap, "no more than the cap on disk"


def test_exactly_the_cap_is_accepted(tmp_path: Path, real_files: dict[str, bytes]) -> None:
    body = body_of(normal_form(real_files))
    got = parse(body, tmp_path / "ok", chunk=4096, max_bytes=len(body))
    assert got.files["video"].size == len(real_files["video"])
    with pytest.raises(UploadTooLarge):
        parse(body, tmp_path / "over", chunk=4096, max_bytes=len(body) - 1)


def test_cap_counts_bytes_not_chunks(tmp_path: Path) -> None:
    """One big chunk is refused before any of it is parsed."""
    body = body_of([file_part("audio", "a.wav", b"x" * 5000)])
    with pytest.raises(UploadTooLarge):
        parse(body, tmp_path / "big", chunk=len(body), max_bytes=4999)
    assert list((tmp_path / "big").iterdir()) == []


@pytest.mark.parametrize(
    ("parts", "disposition", "message", "field"),
    [
        ([("", b"", b"x")], "form-data", "Content-Disposition with a name", None),
        ([('filename="a.wav"', b"", b"x")], "form-data", "Content-Disposition with a name", None),
        ([('name=""', b"", b"x")], "form-data", "Content-Disposition with a name", None),
        ([('name="audio"; filename="a.wav"', b"", b"x")], "attachment", "with a name", None),
        ([file_part("image", "x.png", b"png")], "form-data", "unexpected file field 'image'", None),
        ([file_part("audio", "a.wav", b"1"), file_part("audio", "b.wav", b"2")], "form-data",
         "audio was sent twice", "audio"),
        ([text_part("fps", "25"), text_part("fps", "30")], "form-data",
         "form field 'fps' was sent twice", "fps"),
        ([text_part("fps", "1" * (MAX_FIELD_BYTES + 1))], "form-data", "'fps' is too long", "fps"),
        ([text_part("fps", b"\xff\xfe25")], "form-data", "'fps' is not UTF-8", "fps"),
        ([text_part(f"f{i}", "x") for i in range(MAX_PARTS + 1)], "form-data",
         "too many parts", None),
    ],
)  # fmt: skip
def test_bad_parts_are_upload_errors(
    tmp_path: Path, parts: list[Part], disposition: str, message: str, field: str | None
) -> None:
    with pytest.raises(UploadError, match=message) as err:
        parse(body_of(parts, disposition), tmp_path, chunk=5)
    assert err.value.field == field
    assert err.value.message == str(err.value)


def test_field_at_the_limit_and_max_parts_are_fine(tmp_path: Path) -> None:
    parts = [text_part("long", "é" * (MAX_FIELD_BYTES // 2))]
    parts += [text_part(f"f{i}", str(i)) for i in range(MAX_PARTS - 1)]
    got = parse(body_of(parts), tmp_path, chunk=7)
    assert got.fields["long"] == "é" * (MAX_FIELD_BYTES // 2)
    assert len(got.fields) == MAX_PARTS and got.files == {}


@pytest.mark.parametrize(
    ("filename", "stored", "kept"),
    [
        ("Speech.WAV", "audio.wav", "Speech.WAV"),
        ("../../../etc/passwd.mp3", "audio.mp3", "../../../etc/passwd.mp3"),
        ("C:\\Users\\me\\Take 1.M4A", "audio.m4a", "Take 1.M4A"),  # IE's full path: its name
        ("archive.tar.gz", "audio.gz", "archive.tar.gz"),
        ("noext", "audio", "noext"),
        ("x.verylongext", "audio", "x.verylongext"),
        ("x.sh;rm -rf", "audio", "x.sh;rm -rf"),
        ("x.w-v", "audio", "x.w-v"),
        (".bashrc", "audio", ".bashrc"),
        ("", "audio", ""),
        (None, "audio", ""),
        ("rêve.wav", "audio.wav", "rêve.wav"),
    ],
)
def test_filename_only_lends_a_safe_extension(
    tmp_path: Path, filename: str | None, stored: str, kept: str
) -> None:
    """The stored name is always ``<field><.ext>`` inside ``dest``; the client's name is kept."""
    dest = tmp_path / "job"
    got = parse(body_of([file_part("audio", filename, b"RIFFdata")]), dest)
    saved = got.files["audio"]
    assert saved.path == dest / stored
    assert saved.filename == kept
    assert [p.name for p in dest.iterdir()] == [stored]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["job"], "nothing written outside dest"


@pytest.mark.parametrize("keep", [0.3, 0.6, 0.95])
def test_truncated_body_is_an_error(
    tmp_path: Path, real_files: dict[str, bytes], keep: float
) -> None:
    body = body_of(normal_form(real_files))
    with pytest.raises(UploadError):
        parse(body[: int(len(body) * keep)], tmp_path / "cut", chunk=997)


def test_body_ending_inside_a_file_is_incomplete(tmp_path: Path) -> None:
    body = body_of([file_part("audio", "a.wav", b"RIFF" * 100)])
    cut = body.index(b"RIFF" * 50) + 10
    with pytest.raises(UploadError, match="malformed|middle of a file"):
        parse(body[:cut], tmp_path / "cut")


def test_empty_body_and_garbage_are_not_forms(tmp_path: Path) -> None:
    assert parse(b"", tmp_path / "empty").files == {}
    with pytest.raises(UploadError, match="malformed"):
        parse(b"this is not multipart at all\r\n" * 4, tmp_path / "junk")


def test_digest_covers_file_contents_and_fields(tmp_path: Path) -> None:
    def digest(audio: bytes, fps: str, filename: str = "a.wav", n: int = 0) -> str:
        parts = [file_part("audio", filename, audio), text_part("fps", fps)]
        return parse(body_of(parts), tmp_path / f"d{n}").digest()

    base = digest(b"RIFF1", "25", n=1)
    assert digest(b"RIFF1", "25", filename="other.wav", n=2) == base, "names don't matter"
    assert digest(b"RIFF2", "25", n=3) != base
    assert digest(b"RIFF1", "30", n=4) != base
    assert len(base) == 64 and int(base, 16) >= 0
