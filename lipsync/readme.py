"""The README's engine and ``lipsync run`` option tables, written from the declarations.

Each table sits between ``<!-- NAME:begin -->`` and ``<!-- NAME:end -->`` in README.md and
is a view over what the engines' wings and :mod:`lipsync.options` declare (the rest of the
README is written by hand). ``python -m lipsync.readme`` (``make docs``) rewrites them;
``--check`` exits with 1 when they are stale, which the tests also check.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from lipsync.optionspec import OptionSpec

README = Path(__file__).resolve().parents[1] / "README.md"

_VALUE_FORMS = {"int": "N", "float": "X", "str": "TEXT", "path": "PATH"}


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


SECTIONS: dict[str, Callable[[], str]] = {"engines": engine_table, "run-options": option_table}


def render(text: str) -> str:
    """``text`` with every marked section written afresh."""
    for name, table in SECTIONS.items():
        begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
        if begin not in text or end not in text:
            raise ValueError(f"README.md has no {begin} ... {end} section")
        head, rest = text.split(begin, 1)
        text = f"{head}{begin}\n{table()}\n{end}{rest.split(end, 1)[1]}"
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only say whether they are stale")
    parser.add_argument("--readme", type=Path, default=README)
    args = parser.parse_args(argv)
    text = args.readme.read_text()
    fresh = render(text)
    if args.check:
        if fresh != text:
            print(f"{args.readme}: the generated tables are stale (run make docs)")
            return 1
        return 0
    if fresh != text:
        args.readme.write_text(fresh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
