"""The README documents what users configure and call: every setting, every endpoint."""

from __future__ import annotations

import re
from pathlib import Path

from lipsync.errors import ERROR_CODES
from service.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_every_setting_is_documented_in_the_readme() -> None:
    missing = [
        f"LIPSYNC_{name.upper()}"
        for name in Settings.model_fields
        if f"LIPSYNC_{name.upper()}" not in README
    ]
    assert not missing, f"undocumented settings: {missing}"


def test_every_endpoint_has_a_curl_example() -> None:
    for path in (
        "/api/v1/lipsync/push",
        "/api/v1/lipsync/terminate",
        "/api/v1/lipsync/status",
        "/api/v1/lipsync/download",
        "/api/v1/lipsync/options",
        "/api/v1/lipsync/jobs?",
        "/api/v1/lipsync/jobs/$ID",
        "/api/v1/lipsync/events",
        "/healthz",
        "/readyz",
        "/metrics",
    ):
        # one command, possibly continued over lines with a backslash
        assert re.search(r"curl (?:[^\n]|\\\n)*" + re.escape(path), README), path


def test_every_error_code_is_explained() -> None:
    for code in ERROR_CODES:
        if code != "internal_error":
            assert f"`{code}`" in README, code


def test_every_http_error_code_is_in_the_readme_table() -> None:
    from service.errors import HTTP_ERROR_CODES

    for code, (status, _) in HTTP_ERROR_CODES.items():
        assert re.search(rf"\| {status} \| `{code}` \|", README), code


def test_quick_start_has_exactly_two_setup_commands() -> None:
    section = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = section.split("```sh", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in block.strip().splitlines()]
    assert commands == ["make up", "make test"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci


def test_the_engine_option_and_weights_tables_are_written_from_the_declarations() -> None:
    """README's engine and ``lipsync run`` option tables and models/README.md's weights table
    are views over the engines' wings and the declarations: ``make docs`` writes them, and
    they are not stale."""
    from lipsync.readme import SECTIONS, stale

    assert stale() == [], "generated tables are stale: run make docs"
    for doc, sections in SECTIONS.items():
        text = (ROOT / doc).read_text()
        assert all(f"<!-- {name}:begin -->" in text for name in sections), doc
    assert "| `musetalk` | `musetalkV15/musetalk.json`, " in README
    assert "| `--bbox-shift N` | MuseTalk: " in README
