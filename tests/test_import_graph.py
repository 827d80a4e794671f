"""Layering: app/ and worker/ share only the service core; the core imports neither; the
library imports none of them; the face stage does not reach into the engines."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# (importer package, imported package): edges that must not exist
FORBIDDEN = [
    ("app", "worker"),
    ("worker", "app"),
    ("service", "app"),
    ("service", "worker"),
    ("lipsync", "app"),
    ("lipsync", "worker"),
    ("lipsync", "service"),
    ("lipsync.face", "lipsync.engines"),
]


def imports_of(source: str, module: str) -> set[str]:
    """Every module ``source`` imports (absolute names; relative ones resolved)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = module.split(".")[: -node.level]
                base = ".".join([*parent, base] if base else parent)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _inside(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def violations(graph: dict[str, set[str]]) -> list[str]:
    return sorted(
        f"{module} imports {target}"
        for module, targets in graph.items()
        for importer, imported in FORBIDDEN
        if _inside(module, importer)
        for target in targets
        if _inside(target, imported)
    )


def project_graph() -> dict[str, set[str]]:
    graph = {}
    for package in ("lipsync", "app", "worker", "service"):
        for path in (ROOT / package).rglob("*.py"):
            name = _module_name(path)
            graph[name] = imports_of(path.read_text(), name)
    return graph


def test_the_checker_sees_a_forbidden_edge() -> None:
    graph = {
        "app.routers.jobs": imports_of("from worker.jobs import run_job", "app.routers.jobs"),
        "lipsync.face.s3fd": imports_of(
            "def f():\n    from ..engines import wav2lip\n", "lipsync.face.s3fd"
        ),
        "service.store": imports_of("import app.deps", "service.store"),
    }
    assert violations(graph) == [
        "app.routers.jobs imports worker.jobs",
        "app.routers.jobs imports worker.jobs.run_job",
        "lipsync.face.s3fd imports lipsync.engines",
        "lipsync.face.s3fd imports lipsync.engines.wav2lip",
        "service.store imports app.deps",
    ]


def test_no_forbidden_import_edges() -> None:
    graph = project_graph()
    assert len(graph) > 80 and any(_inside(m, "service") for m in graph)
    assert violations(graph) == []


def _reach(graph: dict[str, set[str]], start: str) -> set[str]:
    """The project modules ``start`` imports, directly or through others (importing a
    submodule is not counted as importing the ``lipsync`` package itself)."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        for target in graph.get(todo.pop(), ()):
            if target in graph and target != "lipsync" and target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def test_options_imports_nothing_above_it() -> None:
    """The option table reads the engines' declarations through lipsync.registry (by name)
    and its other choices are declared with it: nothing it reaches imports it back, and it
    reaches no engine, media, face, enhancer or pipeline code."""
    graph = project_graph()
    reached = _reach(graph, "lipsync.options")
    assert "lipsync.registry" in reached and "lipsync.optionspec" in reached
    assert "lipsync.options" not in reached, "a module options.py imports imports it back"
    above = ("lipsync.engines", "lipsync.media", "lipsync.face", "lipsync.enhance")
    above += ("lipsync.pipeline", "lipsync.device", "lipsync.cli")
    assert sorted(m for m in reached if any(_inside(m, a) for a in above)) == []


def test_only_the_job_store_imports_the_redis_client() -> None:
    """service/jobs/ is the one place that talks to Redis (the job store and the broker's
    keys); the API, the worker, the rest of the service and the library go through it."""
    importers = sorted(
        module
        for module, targets in project_graph().items()
        if not _inside(module, "service.jobs")
        and any(_inside(target, "redis") for target in targets)
    )
    assert importers == []
