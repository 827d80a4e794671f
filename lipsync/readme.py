"""The READMEs' tables of engines, ``lipsync run`` options and weights files, written from
the declarations.

Each table sits between ``<!-- NAME:begin -->`` and ``<!-- NAME:end -->`` (README.md: the
engines and the options; models/README.md: the weights files) and is a view over what the
engines' wings, :mod:`lipsync.options` and :mod:`lipsync.models` declare; the rest of each
README is written by hand. ``python -m lipsync.readme`` (``make docs``) rewrites them;
``--check`` exits with 1 when they are stale, which the tests also check.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from pathlib import Path

from lipsync.optionspec import OptionSpec

ROOT = Path(__file__).resolve().parents[1]

_VALUE_FORMS = {"int": "N", "float": "X", "str": "TEXT", "path": "PATH", "json": "JSON"}


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def engine_table() -> str:
    """One row per engine, in the registry's order: name, weights, what it does."""
    from lipsync.options import RunOptions
    from lipsync.registry import engine_specs

    default = RunOptions.engine
    rows = ["| engine | weights | what it does |", "|---|---|---|"]
    for spec in engine_specs():
        name = f"`{spec.name}`" + (" (default)" if spec.name == default else "")
        sep = " / " if spec.alternatives else ", "
        weights = sep.join(f"`{m.filename}`" for m in spec.weights) or "none"
        rows.append(f"| {name} | {_cell(weights)} | {_cell(spec.about or spec.summary)} |")
    return "\n".join(rows)


def _flag(spec: OptionSpec) -> str:
    if spec.kind == "bool":
        return spec.flag
    choices = list(spec.choice_map())
    if spec.meta.metavar:
        form = spec.meta.metavar
    elif choices:
        pattern = spec.meta.pattern
        form = "|".join([*choices, "onnx:PATH"] if pattern == r"onnx:.+" else choices)
    else:
        form = _VALUE_FORMS[spec.kind]
    return f"{spec.flag} {form}"


def _meaning(spec: OptionSpec) -> str:
    text = spec.meta.help
    described = [(k, v) for k, v in spec.choice_map().items() if v]
    if spec.name == "engine":  # its choices are the engine table's rows
        text += " ([Engines](#engines))"
    elif described:
        text += ": " + "; ".join(f"`{k}`: {v}" for k, v in described)
    low, high = spec.meta.minimum, spec.meta.maximum
    if low is not None and high is not None and spec.kind in ("int", "float"):
        text += f" ({low:g}..{high:g})"
    if spec.meta.engines:
        text += f" (read by {', '.join(f'`{e}`' for e in spec.meta.engines)})"
    if spec.shown_default() is not None:
        text += f"; default `{spec.shown_default()}`"
    return text


def option_table() -> str:
    """One row per ``lipsync run`` flag: every declared option, then the run's own flags."""
    from lipsync.cli import build_parser
    from lipsync.options import option_specs

    rows = ["| option | meaning |", "|---|---|"]
    specs = [s for s in option_specs() if s.meta.cli]
    rows += [f"| `{_cell(_flag(s))}` | {_cell(_meaning(s))} |" for s in specs]
    declared = {s.flag for s in specs} | {"--help", "--video", "--audio", "--output"}
    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    run = commands.choices["run"]
    for action in run._actions:
        if not action.option_strings or declared & set(action.option_strings):
            continue
        flag = max(action.option_strings, key=len)
        form = f"{flag} {action.metavar}" if action.metavar else flag
        help_text = (action.help or "").replace("%%", "%")
        rows.append(f"| `{_cell(form)}` | {_cell(help_text)} |")
    return "\n".join(rows)


def weights_table() -> str:
    """One row per weights file (:func:`lipsync.models.model_files`): file, size, what uses
    it, where to get it, where ``lipsync models pull`` fetches it (or why it does not), its
    pinned SHA-256, its licence."""
    from lipsync.models import model_files, size_text

    rows = [
        "| File | Size | Used by | Where to get it | `lipsync models pull` from | SHA-256 "
        "| Licence |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for m in model_files():
        size = f"~{size_text(m.size_bytes)}" if m.size_bytes else "small"
        source = re.sub(r"https?://[^\s)]+", lambda u: f"<{u.group(0)}>", m.source)
        sha = f"`{m.sha256}`" if m.sha256 else "not pinned: no published SHA-256"
        pull = f"`{m.download.describe()}`" if m.download else f"by hand: {m.manual}"
        cells = (
            f"`{m.filename}`",
            size,
            _cell(m.used_by),
            _cell(source),
            _cell(pull),
            sha,
            _cell(m.licence),
        )
        rows.append(f"| {' | '.join(cells)} |")
    return "\n".join(rows)


#: Each README, relative to the repository, and its generated sections.
SECTIONS: dict[str, dict[str, Callable[[], str]]] = {
    "README.md": {"engines": engine_table, "run-options": option_table},
    "models/README.md": {"weights": weights_table},
}


def render(text: str, sections: dict[str, Callable[[], str]]) -> str:
    """``text`` with each of its marked ``sections`` written afresh."""
    for name, table in sections.items():
        begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
        if begin not in text or end not in text:
            raise ValueError(f"no {begin} ... {end} section")
        head, rest = text.split(begin, 1)
        text = f"{head}{begin}\n{table()}\n{end}{rest.split(end, 1)[1]}"
    return text


def stale(root: Path = ROOT) -> list[str]:
    """The READMEs whose generated tables differ from the declarations."""
    return [doc for doc, sections in SECTIONS.items() if _fresh(root / doc, sections)[1]]


def _fresh(path: Path, sections: dict[str, Callable[[], str]]) -> tuple[str, bool]:
    text = path.read_text()
    fresh = render(text, sections)
    return fresh, fresh != text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only say whether they are stale")
    args = parser.parse_args(argv)
    if args.check:
        for doc in stale():
            print(f"{doc}: the generated tables are stale (run make docs)")
        return 1 if stale() else 0
    for doc, sections in SECTIONS.items():
        fresh, changed = _fresh(ROOT / doc, sections)
        if changed:
            (ROOT / doc).write_text(fresh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
