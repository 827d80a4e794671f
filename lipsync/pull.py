"""``lipsync models pull``: fetch declared weights files into ``models/``, verified.

Each file's source is its declaration's ``download`` (:class:`~lipsync.modelspec.HubFile`
or :class:`~lipsync.modelspec.UrlFile`). Hub files go through ``huggingface_hub``'s
``hf_hub_download`` (``$HF_ENDPOINT`` mirrors, tokens, its cache, resume); plain URLs
through :func:`fetch_url` (resume with ``Range``). Both land in ``models/.pull/`` first; the
file's SHA-256 is checked against the declaration and only then is it moved under its real
name (``os.replace``, same file system): a half or wrong file never sits at
``models/<name>``. A file without a published hash is moved in with a warning.

Files with no download that may be automated (``download=None``: the original Wav2Lip
checkpoints, the face parser's Google Drive link) are reported with where to get them and
why; they never fail the rest.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from lipsync.errors import LipsyncError, ModelMismatch
from lipsync.models import COMMERCIAL_TEXT, model_files, sha256_file, size_text
from lipsync.modelspec import HubFile, ModelFile, UrlFile
from lipsync.registry import engine_specs

#: A NAME for every file whose licence allows commercial use (``commercial`` True).
ALL_COMMERCIAL = "all-commercial"
#: The staging folder under ``models/`` (partial downloads, resumed by the next pull).
STAGING = ".pull"
HUB_ENDPOINT = "https://huggingface.co"


class UnknownModel(LipsyncError):
    code = "unknown_model"


class DownloadFailed(LipsyncError):
    code = "download_failed"


class LicenceNotAccepted(LipsyncError):
    code = "licence_not_accepted"


class NoDownload(LipsyncError):
    code = "manual_download"


def resolve_names(names: Iterable[str]) -> list[ModelFile]:
    """NAMEs -> declared files, in order, each once. A NAME is ``all-commercial``, an engine
    (all its files; for an engine whose files are alternatives, the preferred one), a file
    (its path under ``models/``, its base name) or the start of one's base name (``gfpgan``,
    ``codeformer``, ``s3fd``)."""
    files = model_files()
    engines = {spec.name: spec for spec in engine_specs()}
    chosen: dict[str, ModelFile] = {}
    for name in names:
        key = name.strip()
        if key == ALL_COMMERCIAL:
            found = [m for m in files if m.commercial is True]
        elif key in engines:
            spec = engines[key]
            found = list(spec.weights[:1] if spec.alternatives else spec.weights)
            if not found:
                raise UnknownModel(f"engine {key} needs no weights files")
        else:
            low = key.lower()
            found = [m for m in files if low in (m.filename.lower(), Path(m.filename).name.lower())]
            found = found or [m for m in files if Path(m.filename).name.lower().startswith(low)]
            if not found:
                known = ", ".join([ALL_COMMERCIAL, *engines])
                raise UnknownModel(
                    f"{key!r} is no engine, file or set (engines and sets: {known}; "
                    "files: lipsync models)"
                )
        for m in found:
            chosen.setdefault(m.filename, m)
    return list(chosen.values())


@dataclass
class Outcome:
    """What happened to one file."""

    model: ModelFile
    state: str  # fetched | present | skipped | manual | refused | failed | would fetch
    note: str = ""
    code: str = ""

    @property
    def ok(self) -> bool:
        return self.state not in ("refused", "failed")


@dataclass
class Puller:
    """Pulls files into ``models_dir``. ``confirm(model)`` asks whether a file whose licence
    does not allow commercial use may be fetched (None: refuse them, unless
    ``accept_licence``)."""

    models_dir: Path
    accept_licence: bool = False
    force: bool = False
    confirm: Callable[[ModelFile], bool] | None = None
    out: TextIO = field(default_factory=lambda: sys.stdout)
    progress: bool = False

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    # -- one file ----------------------------------------------------------------------------
    def pull(self, model: ModelFile) -> Outcome:
        dest = Path(self.models_dir) / model.filename
        if model.download is None:
            return Outcome(model, "manual", f"{model.manual}; get it from {model.source}")
        if dest.is_file() and not self.force:
            if model.sha256 is None:
                return Outcome(model, "present", "present (not pinned: no published SHA-256)")
            if sha256_file(dest) == model.sha256:
                return Outcome(model, "present", "already verified")
            return Outcome(
                model,
                "skipped",
                "present but differs from the pinned SHA-256 (a re-saved copy?); "
                "--force replaces it",
            )
        self.say(f"{model.filename}: licence: {model.licence}")
        if model.commercial is not True and not self.accept_licence:
            allowed = self.confirm(model) if self.confirm is not None else False
            if not allowed:
                err = LicenceNotAccepted(
                    f"{model.filename}: its licence does not clearly allow commercial use "
                    f"({model.licence}); confirm on a terminal or pass --accept-licence"
                )
                return Outcome(model, "refused", err.message, err.code)
        try:
            staged = self._fetch(model)
            note = self._install(model, staged, dest)
        except LipsyncError as exc:
            return Outcome(model, "failed", exc.message, exc.code)
        return Outcome(model, "fetched", note)

    def _fetch(self, model: ModelFile) -> Path:
        source = model.download
        staging = Path(self.models_dir) / STAGING
        staging.mkdir(parents=True, exist_ok=True)
        self.say(f"{model.filename}: fetching {source.describe() if source else '-'}")
        if isinstance(source, HubFile):
            return fetch_hub(source, staging, progress=self.progress)
        if isinstance(source, UrlFile):
            part = staging / (model.filename.replace("/", "__") + ".part")
            fetch_url(source.url, part, progress=self.progress, size_hint=model.size_bytes)
            return part
        raise NoDownload(f"{model.filename}: no download declared")

    def _install(self, model: ModelFile, staged: Path, dest: Path) -> str:
        """Check ``staged`` against the declaration, then move it to ``dest``."""
        digest = sha256_file(staged)
        if model.sha256 is not None and digest != model.sha256:
            staged.unlink(missing_ok=True)
            raise ModelMismatch(
                f"{model.filename}: SHA-256 {digest[:16]}... is not the pinned "
                f"{model.sha256[:16]}...: refused (the download was deleted, nothing was "
                "written under its name)"
            )
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.pulling")
        # The staged file is on the same file system (models/.pull/): a rename, no copy;
        # staged first beside the destination so the last step is one atomic replace.
        os.replace(staged, tmp)
        os.replace(tmp, dest)
        size = size_text(dest.stat().st_size)
        if model.sha256 is None:
            return f"{size}, NOT verified: no published SHA-256 (its SHA-256: {digest})"
        return f"{size}, verified"


def fetch_hub(source: HubFile, staging: Path, *, progress: bool = False) -> Path:
    """``hf_hub_download`` into ``staging`` (resumes its own partial downloads there);
    without ``huggingface_hub`` installed, the same resolve URL over plain HTTPS."""
    endpoint = os.environ.get("HF_ENDPOINT") or HUB_ENDPOINT
    try:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import HfHubHTTPError
        from huggingface_hub.utils import disable_progress_bars, enable_progress_bars
    except ImportError:
        part = staging / (source.repo_id.replace("/", "__") + "__" + source.path.replace("/", "__"))
        fetch_url(source.url(endpoint), part, progress=progress)
        return part
    (enable_progress_bars if progress else disable_progress_bars)()
    try:
        path = hf_hub_download(
            source.repo_id,
            source.path,
            repo_type=source.repo_type,
            revision=source.revision,
            local_dir=staging / source.repo_id,
            endpoint=endpoint,
        )
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else 0
        hint = "not found at this revision" if status == 404 else "run the pull again to resume"
        raise DownloadFailed(f"{source.url(endpoint)}: HTTP {status or '?'} ({hint})") from None
    except Exception as exc:  # the client's network and consistency errors, one code
        raise DownloadFailed(
            f"{source.url(endpoint)}: {type(exc).__name__}: {exc}; run the pull again to resume"
        ) from None
    return Path(path)


def fetch_url(
    url: str,
    part: Path,
    *,
    progress: bool = False,
    size_hint: int | None = None,
    timeout: float = 60.0,
    chunk: int = 1 << 20,
) -> None:
    """Download ``url`` into ``part``, resuming what is already there (``Range``)."""
    have = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "lipsync-models-pull"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # nothing left past what we have: complete
            return
        raise DownloadFailed(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DownloadFailed(f"{url}: {reason}") from None
    with response:
        if response.status != 206:
            have = 0  # the server ignored the Range: start over
        length = response.headers.get("Content-Length")
        total = have + int(length) if length and length.isdigit() else size_hint
        bar = _Bar(part.name, total, have) if progress else None
        try:
            with part.open("ab" if have else "wb") as fh:
                while block := response.read(chunk):
                    fh.write(block)
                    if bar:
                        bar.update(len(block))
        except (OSError, urllib.error.URLError) as exc:
            raise DownloadFailed(
                f"{url}: interrupted ({exc}); run the pull again to resume"
            ) from None
        finally:
            if bar:
                bar.done()
    if total is not None and length and part.stat().st_size < total:
        raise DownloadFailed(
            f"{url}: {part.stat().st_size} of {total} bytes; run the pull again to resume"
        )


class _Bar:
    """A one-line progress bar on stderr."""

    def __init__(self, name: str, total: int | None, done: int) -> None:
        self.name, self.total, self.n, self.shown = name, total, done, 0.0

    def update(self, n: int) -> None:
        self.n += n
        now = time.monotonic()
        if now - self.shown < 0.2:
            return
        self.shown = now
        if self.total:
            width = 30
            filled = int(width * self.n / self.total)
            bar = "#" * filled + "." * (width - filled)
            text = f"\r  {self.name} [{bar}] {self.n / self.total:4.0%} of {size_text(self.total)}"
        else:
            text = f"\r  {self.name} {size_text(self.n)}"
        sys.stderr.write(text)
        sys.stderr.flush()

    def done(self) -> None:
        sys.stderr.write("\n")
        sys.stderr.flush()


def plan_lines(models: Sequence[ModelFile], models_dir: Path) -> list[str]:
    """``--dry-run``: what would be fetched, from where, its size and licence."""
    lines = []
    for m in models:
        dest = Path(models_dir) / m.filename
        state = "present" if dest.is_file() else "would fetch"
        if m.download is None:
            state = "manual"
        where = m.download.describe() if m.download else f"{m.manual}; get it from {m.source}"
        sha = m.sha256 or "not pinned (no published SHA-256)"
        lines += [
            f"{m.filename}: {state}",
            f"  from:       {where}",
            f"  size:       {f'~{size_text(m.size_bytes)}' if m.size_bytes else 'small'}",
            f"  sha256:     {sha}",
            f"  licence:    {m.licence} (commercial use: {COMMERCIAL_TEXT[m.commercial]})",
        ]
    return lines


def summary_lines(outcomes: Sequence[Outcome], models_dir: Path) -> list[str]:
    lines = [f"Summary ({models_dir}/):"]
    width = max((len(o.model.filename) for o in outcomes), default=0)
    for o in outcomes:
        code = f" [{o.code}]" if o.code else ""
        lines.append(f"  {o.model.filename.ljust(width)}  {o.state}{code}: {o.note}".rstrip(": "))
    failed = sum(not o.ok for o in outcomes)
    manual = sum(o.state == "manual" for o in outcomes)
    fetched = sum(o.state == "fetched" for o in outcomes)
    lines.append(
        f"{fetched} fetched, {manual} to get by hand, {failed} failed or refused of {len(outcomes)}"
    )
    return lines


def remove_staging(models_dir: Path) -> None:
    """Drop ``models/.pull`` (partial downloads included)."""
    shutil.rmtree(Path(models_dir) / STAGING, ignore_errors=True)
