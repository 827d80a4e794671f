"""Each engine is a wing: one folder that declares it and one line in lipsync/registry.py.

A tiny engine is written into a temporary folder and its line added to the registry; the
CLI (``lipsync engines``, ``lipsync run --help``, ``lipsync models``), ``GET /options``, the
option table, the weights list and the engine factory all find it, with nothing else
edited."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from lipsync import registry
from lipsync.cli import main
from lipsync.engines import ENGINES, EngineCache, create_engine
from lipsync.enginespec import EngineContext
from lipsync.errors import InvalidOption, ModelMissing
from lipsync.models import model_by_filename
from lipsync.options import RunOptions, engine_options, option_specs, parse_public_fields, spec_of

WING = """
from __future__ import annotations

from dataclasses import dataclass

from lipsync.enginespec import EngineSpec
from lipsync.modelspec import ModelFile
from lipsync.optionspec import option


@dataclass(frozen=True)
class TinyOptions:
    tiny_strength: int = option(
        3, help="how hard the tiny engine pushes", minimum=0, maximum=9, public=True
    )


ENGINE = EngineSpec(
    name="tiny",
    factory="{package}.engine:TinyEngine",
    summary="a tiny test engine",
    options=TinyOptions,
    reads=("batch_size",),
    weights=(
        ModelFile(
            name="Tiny weights",
            filename="tiny/tiny.bin",
            used_by="engine tiny",
            sha256=None,
            licence="CC0",
            source="made by the test",
            commercial=True,
        ),
    ),
)
"""

ENGINE_CODE = """
from __future__ import annotations

from lipsync.engines.base import Engine


class TinyEngine(Engine):
    name = "tiny"

    def __init__(self, ctx):
        self.ctx = ctx

    def prepare(self, audio16k, fps, n_frames):
        pass

    def generate(self, frames, faces, indices):
        return []
"""

# A second engine that declares nothing of its own but reads the tiny engine's option.
READER_WING = """
from lipsync.enginespec import EngineSpec

ENGINE = EngineSpec(
    name="tiny-reader",
    factory="{package}.engine:TinyEngine",
    summary="reads the tiny engine's option",
    reads=("tiny_strength",),
)
"""


def _add_engine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, package: str, *, reader: bool = False
) -> None:
    """The whole of adding an engine: one folder, one registry line."""
    folder = tmp_path / package
    folder.mkdir()
    (folder / "__init__.py").write_text("")
    (folder / "wing.py").write_text(WING.format(package=package))
    (folder / "engine.py").write_text(ENGINE_CODE)
    lines = [f"{package}.wing"]
    if reader:
        (folder / "reader.py").write_text(READER_WING.format(package=package))
        lines.append(f"{package}.reader")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "WINGS", (*registry.WINGS, *lines))


@pytest.fixture
def tiny(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    package = f"tinylip_{tmp_path.name.replace('-', '_')}"
    _add_engine(tmp_path, monkeypatch, package)
    yield package
    for name in [m for m in sys.modules if m == package or m.startswith(package + ".")]:
        del sys.modules[name]


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    try:
        code = main(list(args))
    except SystemExit as exc:  # --help
        code = exc.code
    out = capsys.readouterr().out
    assert code == 0, out
    return out


def test_a_new_engine_is_listed_by_the_cli(
    tiny: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    listing = _cli(capsys, "engines", "--models-dir", str(tmp_path))
    assert "tiny: a tiny test engine" in listing
    assert "weights: tiny/tiny.bin (missing)" in listing
    assert "options: --batch-size, --tiny-strength" in listing
    data = json.loads(_cli(capsys, "engines", "--json", "--models-dir", str(tmp_path)))
    (entry,) = [e for e in data if e["name"] == "tiny"]
    assert entry["needs_weights"] and not entry["ready"] and "tiny/tiny.bin" in entry["missing"]

    helped = " ".join(_cli(capsys, "run", "--help").split())  # argparse wraps its lines
    assert "musetalk,tiny}" in helped and "tiny - a tiny test engine" in helped
    assert "--tiny-strength" in helped and "[read by tiny]" in helped

    table = _cli(capsys, "models", "--models-dir", str(tmp_path))
    (row,) = [line for line in table.splitlines() if line.startswith("tiny/tiny.bin")]
    assert "missing" in row and "engine tiny" in row and "CC0" in row
    files = json.loads(_cli(capsys, "models", "--json", "--models-dir", str(tmp_path)))["files"]
    assert files[-1]["model"]["filename"] != "tiny/tiny.bin"  # engines' files come first
    assert any(f["model"]["filename"] == "tiny/tiny.bin" for f in files)


def test_a_new_engine_is_offered_by_the_options_route(
    tiny: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from app.deps import get_settings
    from app.routers import options as routes
    from service.settings import Settings

    monkeypatch.delenv("LIPSYNC_COMMERCIAL_ONLY", raising=False)
    app = FastAPI()
    app.include_router(routes.router)
    app.dependency_overrides[get_settings] = lambda: Settings()
    body = TestClient(app).get("/api/v1/lipsync/options").json()
    options = {o["name"]: o for o in body["options"]}
    assert {"value": "tiny", "help": "a tiny test engine"} in options["engine"]["choices"]
    assert options["tiny_strength"]["engines"] == ["tiny"]
    assert options["tiny_strength"]["minimum"] == 0 and options["tiny_strength"]["default"] == 3
    engines = {e["name"]: e for e in body["engines"]}
    assert engines["tiny"] == {
        "name": "tiny",
        "summary": "a tiny test engine",
        "needs_weights": True,
        "weights": ["tiny/tiny.bin"],
        "ready": False,  # not in the server's models/
        "missing": ["tiny/tiny.bin"],
    }
    assert [n for n, e in engines.items() if not e["needs_weights"]] == ["viseme", "retrieval"]
    assert any(f["file"] == "tiny/tiny.bin" for f in body["licences"]["optional"])


def test_a_new_engine_is_built_from_its_options_after_its_precheck(
    tiny: str, tmp_path: Path
) -> None:
    assert list(ENGINES)[-1] == "tiny" and ENGINES["tiny"].needs_weights
    assert spec_of("batch_size").meta.engines[-1] == "tiny"
    assert parse_public_fields({"engine": "tiny", "tiny_strength": "7"}) == {
        "engine": "tiny",
        "tiny_strength": 7,
    }
    with pytest.raises(InvalidOption, match="tiny_strength must be between 0 and 9"):
        RunOptions(engine="tiny", tiny_strength=10)

    options = RunOptions(engine="tiny", tiny_strength=7, models_dir=tmp_path)
    ctx = EngineContext(models_dir=tmp_path, options=engine_options(options))
    assert ctx.options == (("tiny_strength", 7),)
    with pytest.raises(ModelMissing, match=r"tiny/tiny\.bin not found .*made by the test"):
        create_engine("tiny", ctx)
    assert f"{tiny}.engine" not in sys.modules  # the pre-check ran before the engine's code

    (tmp_path / "tiny").mkdir()
    (tmp_path / "tiny" / "tiny.bin").write_bytes(b"weights")
    engine = create_engine("tiny", ctx)
    assert type(engine).__name__ == "TinyEngine" and engine.ctx is ctx  # type: ignore[attr-defined]
    assert model_by_filename()["tiny/tiny.bin"].licence == "CC0"


def test_an_option_read_by_two_engines_reaches_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = f"tinyreader_{tmp_path.name.replace('-', '_')}"
    _add_engine(tmp_path, monkeypatch, package, reader=True)
    try:
        assert spec_of("tiny_strength").meta.engines == ("tiny", "tiny-reader")
        for engine in ("tiny", "tiny-reader"):
            options = RunOptions(engine=engine, tiny_strength=5)
            assert engine_options(options) == (("tiny_strength", 5),), engine
        assert engine_options(RunOptions(engine="viseme", tiny_strength=5)) == ()
    finally:
        for name in [m for m in sys.modules if m.startswith(package)]:
            del sys.modules[name]


def test_the_registry_is_the_only_list(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without its line, the folder alone is nothing; the declared engines are the table's."""
    assert [s.name for s in registry.engine_specs()] == list(ENGINES)
    assert list(spec_of("engine").choice_map()) == list(ENGINES)
    own = {s.name for s in option_specs() if s.meta.engines == ("musetalk",)}
    assert own == {
        "bbox_shift",
        "extra_margin",
        "parsing_mode",
        "left_cheek_width",
        "right_cheek_width",
    }
    monkeypatch.setattr(registry, "WINGS", (*registry.WINGS, "lipsync.engines.viseme.wing"))
    with pytest.raises(ValueError, match="declared twice"):
        registry.engine_specs()


def test_engine_options_stay_checked_and_replaceable() -> None:
    options = RunOptions(engine="musetalk", extra_margin=0, parsing_mode="raw")
    assert options.value("extra_margin") == 0 and options.extra_margin == 0  # type: ignore[attr-defined]
    moved = replace(options, bbox_shift=5, fps=30)
    assert moved.value("bbox_shift") == 5 and moved.value("extra_margin") == 0 and moved.fps == 30
    assert RunOptions(extra_margin=10) == RunOptions()  # defaults filled in: one value
    with pytest.raises(TypeError, match="no_such_option"):
        RunOptions(no_such_option=1)  # type: ignore[call-arg]
    with pytest.raises(InvalidOption) as err:
        RunOptions(parsing_mode="cheeks")
    assert err.value.field == "parsing_mode"


def test_engine_cache_keys_on_the_frozen_context(
    tiny: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for folder in ("a", "b"):
        (tmp_path / folder / "tiny").mkdir(parents=True)
        (tmp_path / folder / "tiny" / "tiny.bin").write_bytes(b"w")
    cache = EngineCache()
    a = EngineContext(models_dir=tmp_path / "a", options=(("tiny_strength", 1),))
    first = cache.get("tiny", a)
    assert cache.get("tiny", replace(a)) is first  # an equal context: the same engine
    assert cache.get("tiny", replace(a, models_dir=tmp_path / "b")) is not first
    assert cache.get("tiny", replace(a, options=(("tiny_strength", 2),))) is not first
    assert hash(a) == hash(replace(a))
