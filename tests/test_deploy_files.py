"""docker-compose.yml and the Dockerfiles can't be built here: check they match the code.

Every module, command, environment variable and path they name must exist, and the settings
the issue asks for (Redis persistence, GPU reservation, healthchecks, no torch in the API
image) must be there. Every install (make setup, both images) comes from a hashed lock file
in requirements/ that pins everything pyproject.toml asks for.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from service.settings import Settings

REPO = Path(__file__).resolve().parents[1]
DOCKERFILES = ("Dockerfile.api", "Dockerfile.worker")
ENV_VAR = re.compile(r"\bLIPSYNC_[A-Z0-9_]+\b")
# read outside Settings: the pipeline's default models dir, and the published port
EXTRA_VARS = {"LIPSYNC_MODELS_DIR", "LIPSYNC_PORT"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    return data


def _dockerfile(name: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = (REPO / name).read_text()
    joined = re.sub(r"\\\n\s*", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instr, _, rest = line.partition(" ")
            out.append((instr.upper(), rest.strip()))
    return out


def _commands(compose: dict[str, Any]) -> list[list[str]]:
    cmds: list[list[str]] = []
    for svc in compose["services"].values():
        for key in ("command", "entrypoint"):
            if isinstance(svc.get(key), list):
                cmds.append([str(x) for x in svc[key]])
        test = svc.get("healthcheck", {}).get("test")
        if isinstance(test, list) and test and test[0] in ("CMD", "CMD-SHELL"):
            cmds.append([str(x) for x in test[1:]])
    for name in DOCKERFILES:
        for instr, rest in _dockerfile(name):
            if instr == "CMD" and rest.startswith("["):
                cmds.append(yaml.safe_load(rest))
            if instr == "HEALTHCHECK":
                cmd = rest.split(" CMD ", 1)[1].strip()
                cmds.append(yaml.safe_load(cmd) if cmd.startswith("[") else shlex.split(cmd))
    return cmds


def _check_import_target(target: str) -> None:
    module, _, attr = target.partition(":")
    assert importlib.util.find_spec(module) is not None, f"no module {module}"
    if attr:
        assert hasattr(importlib.import_module(module), attr), f"no {attr} in {module}"


def test_redis_is_persistent_and_never_evicts(compose: dict[str, Any]) -> None:
    cmd = " ".join(compose["services"]["redis"]["command"])
    assert "--appendonly yes" in cmd
    assert "--maxmemory-policy noeviction" in cmd


def test_services_share_the_data_volume_and_have_healthchecks(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"redis", "api", "worker"} <= set(services)
    for name, svc in services.items():
        assert svc.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
    for name in ("api", "worker", "worker-cpu", "beat"):
        svc = services[name]
        data_dir = svc["environment"]["LIPSYNC_DATA_DIR"]
        assert f"lipsync-data:{data_dir}" in svc["volumes"], name
        assert svc["environment"]["LIPSYNC_REDIS_URL"].startswith("redis://redis:")
    assert "lipsync-data" in compose["volumes"]


def test_worker_reserves_an_nvidia_gpu(compose: dict[str, Any]) -> None:
    devices = compose["services"]["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    cpu = compose["services"]["worker-cpu"]
    assert cpu["environment"]["LIPSYNC_DEVICE"] == "cpu" and "deploy" not in cpu


def test_every_env_var_named_is_a_setting(compose: dict[str, Any]) -> None:
    known = {f"LIPSYNC_{name.upper()}" for name in Settings.model_fields} | EXTRA_VARS
    texts = [(REPO / "docker-compose.yml").read_text()]
    texts += [(REPO / name).read_text() for name in DOCKERFILES]
    named = set().union(*(ENV_VAR.findall(t) for t in texts))
    assert named, "no LIPSYNC_ variables found"
    assert named <= known, f"unknown variables: {sorted(named - known)}"
    # and the compose defaults are valid settings values (the time limits in particular)
    env = compose["x-lipsync-env"]
    values = {
        k.removeprefix("LIPSYNC_").lower(): re.sub(r"^\$\{[A-Z_]+:-(.*)\}$", r"\1", str(v))
        for k, v in env.items()
    }
    Settings(**values)


def test_commands_name_real_modules(compose: dict[str, Any]) -> None:
    cmds = _commands(compose)
    assert cmds
    seen = set()
    for cmd in cmds:
        if cmd[0] == "celery":
            _check_import_target(cmd[cmd.index("-A") + 1] + ":app")
            seen.add("celery " + cmd[cmd.index("-A") + 2])
        elif cmd[0] == "uvicorn":
            assert "--factory" in cmd
            _check_import_target(next(a for a in cmd[1:] if ":" in a))
            seen.add("uvicorn")
        elif cmd[0] == "python" and cmd[1] == "-m":
            _check_import_target(cmd[2])
        elif cmd[0] == "python" and cmd[1] == "-c":
            compile(cmd[2], "<healthcheck>", "exec")
    assert {"celery worker", "celery beat", "uvicorn"} <= seen


def test_dockerfiles_copy_real_paths_and_install_real_extras() -> None:
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    for name in DOCKERFILES:
        steps = _dockerfile(name)
        for instr, rest in steps:
            if instr == "COPY" and not rest.startswith("--from"):
                for src in shlex.split(rest)[:-1]:
                    assert (REPO / src).exists(), f"{name}: COPY {src} does not exist"
            if instr == "RUN" and "pip install" in rest:
                for group in re.findall(r"\.\[([a-z,]+)\]", rest):
                    for extra in group.split(","):
                        assert extra in extras, f"{name}: no extra {extra}"


def test_api_image_is_slim_and_worker_image_has_cuda() -> None:
    api = " ".join(rest for _, rest in _dockerfile("Dockerfile.api"))
    assert "torch" not in api and "pipeline" not in api
    assert "pip install --require-hashes -r requirements/api.lock" in api
    base = next(rest for instr, rest in _dockerfile("Dockerfile.worker") if instr == "FROM")
    assert base.startswith("nvidia/cuda:")
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    service = " ".join(extras["service"])
    for pkg in ("fastapi", "uvicorn", "python-multipart", "celery", "redis", "prometheus-client"):
        assert pkg in service
    assert "torch" not in service


# --- lock files: what make setup (dev) and the two images install -------------------------

LOCKS = REPO / "requirements"
# lock -> the extras (besides the base set) it must cover, and what it leaves out
LOCK_EXTRAS = {
    "dev.lock": ("dev",),
    "api.lock": ("service",),
    "worker.lock": ("pipeline", "service"),
}
LOCK_WITHOUT = {"api.lock": {"torch"}, "worker.lock": {"torch"}}
# the pip install steps each install makes, in order
INSTALLS = {
    "Dockerfile.api": ["--require-hashes -r requirements/api.lock", "--no-deps ."],
    "Dockerfile.worker": [
        '--index-url "$TORCH_INDEX_URL"',
        "--require-hashes -r requirements/worker.lock",
        "--no-deps .",
    ],
    "scripts/bootstrap.sh": [
        "-q --upgrade pip",
        '-q --require-hashes -r "$lock"',
        "-q --no-deps -e .",
    ],
}


def _lock(name: str) -> dict[str, tuple[str, list[str]]]:
    """{package: (pinned version, hashes)} of a lock file; fails on any line that isn't pinned."""
    text = re.sub(r"\\\n\s*", " ", (LOCKS / name).read_text())
    out: dict[str, tuple[str, list[str]]] = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        req, *options = line.split(" --")
        m = re.fullmatch(r"([A-Za-z0-9._-]+)==(\S+)", req.strip())
        assert m, f"{name}: not an exact pin: {line!r}"
        hashes = [o.split(":", 1)[1] for o in options if o.startswith("hash=sha256:")]
        assert hashes and len(hashes) == len(options), f"{name}: {req} needs sha256 hashes only"
        out[canonicalize_name(m[1])] = (m[2], hashes)
    return out


def _asked(extras: tuple[str, ...]) -> list[Requirement]:
    """The requirements pyproject.toml names for the base set plus these extras (recursively)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    todo, seen = list(extras), set()
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for r in map(Requirement, project["optional-dependencies"][extra]):
            if canonicalize_name(r.name) == canonicalize_name(project["name"]):
                todo += sorted(r.extras)
            else:
                reqs.append(r)
    return reqs


def _pip_installs(path: str) -> list[str]:
    """The arguments of every `pip install` a Dockerfile's RUN steps or a script make, in order."""
    if path.startswith("Dockerfile"):
        text = " ; ".join(rest for instr, rest in _dockerfile(path) if instr == "RUN")
    else:
        lines = (REPO / path).read_text().splitlines()
        text = " ; ".join(ln for ln in lines if not ln.lstrip().startswith("#"))
    return [
        re.split(r"&&|;|\|\|", part, maxsplit=1)[0].strip()
        for part in text.split("pip install ")[1:]
    ]


@pytest.mark.parametrize("lock", sorted(LOCK_EXTRAS))
def test_each_lock_pins_everything_pyproject_asks_for(lock: str) -> None:
    pins = _lock(lock)
    for req in _asked(LOCK_EXTRAS[lock]):
        name = canonicalize_name(req.name)
        if name in LOCK_WITHOUT.get(lock, ()):
            assert name not in pins, f"{lock} must leave {name} out"
            continue
        assert name in pins, f"{lock} does not pin {req.name} (run make lock)"
        version = Version(pins[name][0])
        assert req.specifier.contains(version, prereleases=True), f"{lock}: {name} {version} {req}"
        for extra in req.extras:  # celery[redis]: the extra's own packages are there too
            assert extra in pins, f"{lock}: {req} but no {extra}"


def test_the_dev_lock_pins_the_cpu_build_of_the_constrained_torch() -> None:
    pinned = re.search(r"^torch==(\S+)$", (REPO / "constraints.txt").read_text(), re.M)
    assert pinned, "constraints.txt must pin torch"
    assert pinned[1] == "2.13.0"
    version = Version(_lock("dev.lock")["torch"][0])
    assert version.public == pinned[1] and version.local == "cpu", version
    cuda = [p for p in _lock("dev.lock") if p.startswith(("nvidia-", "cuda-", "triton"))]
    assert not cuda, f"CUDA packages in the dev lock: {cuda}"


def test_image_locks_take_the_tested_dev_versions() -> None:
    dev = _lock("dev.lock")
    for lock in ("api.lock", "worker.lock"):
        for name, (version, _) in _lock(lock).items():
            assert name in dev, f"{lock}: {name} is not in the dev lock (tests never ran it)"
            assert dev[name][0] == version, f"{lock}: {name} {version}, dev {dev[name][0]}"


def test_installs_come_from_the_locks_with_hashes_then_the_project_without_deps() -> None:
    for path, expected in INSTALLS.items():
        assert _pip_installs(path) == expected, path
    api = (REPO / "Dockerfile.api").read_text()
    worker = (REPO / "Dockerfile.worker").read_text()
    # the worker's torch is the CUDA build of constraints.txt's pin, and only that
    assert "grep '^torch==' constraints.txt | xargs pip install --index-url" in worker
    for text, lock in ((api, "api.lock"), (worker, "worker.lock")):
        assert f"COPY requirements/{lock} ./requirements/" in text
    boot = (REPO / "scripts/bootstrap.sh").read_text()
    assert re.search(r"^lock=requirements/dev\.lock$", boot, re.M)
    # re-installs when the lock changes, as for pyproject.toml and constraints.txt
    stamp_test = re.search(r'if \[ ! -f "\$stamp" \](.*?); then', boot, re.S)
    assert stamp_test
    for changed in ("pyproject.toml", "constraints.txt", '"$lock"'):
        assert f'[ {changed} -nt "$stamp" ]' in stamp_test[1], changed
    # and make lock writes every lock these install from
    recipe = (REPO / "Makefile").read_text().split("\nlock:", 1)[1].split("\n\n", 1)[0]
    for lock in LOCK_EXTRAS:
        assert f"-o requirements/{lock}" in recipe, lock


def test_dockerfiles_copy_every_package_before_installing_it() -> None:
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages = [p.rstrip("*").rstrip(".") for p in setuptools["packages"]["find"]["include"]]
    assert {"lipsync", "app", "worker", "service"} <= set(packages)
    for name in DOCKERFILES:
        steps = _dockerfile(name)
        project = next(
            i for i, (instr, rest) in enumerate(steps) if instr == "RUN" and "--no-deps ." in rest
        )
        copied = {
            src.rstrip("/")
            for instr, rest in steps[:project]
            if instr == "COPY"
            for src in shlex.split(rest)[:-1]
        }
        missing = [p for p in packages if p not in copied]
        assert not missing, f"{name} does not copy {missing} before installing the project"


def test_the_licence_is_an_spdx_expression_not_a_table() -> None:
    """setuptools >= 77 warns about a `license = {text = ...}` table on every build (three
    times on a first set-up); an SPDX string builds quietly."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert project["project"]["license"] == "Apache-2.0"
    assert any(r.startswith("setuptools>=77") for r in project["build-system"]["requires"])


def test_worker_image_can_pull_a_named_set_of_weights_at_build_time() -> None:
    steps = _dockerfile("Dockerfile.worker")
    args = [rest for instr, rest in steps if instr == "ARG"]
    assert 'PULL_MODELS=""' in args and 'PULL_ACCEPT_LICENCE=""' in args
    pull = next(rest for instr, rest in steps if instr == "RUN" and "models pull" in rest)
    assert "lipsync models pull $PULL_MODELS --models-dir /srv/models" in pull
    assert "${PULL_ACCEPT_LICENCE:+--accept-licence}" in pull
    # after the project is installed, before the image drops to the unprivileged user
    order = [instr + " " + rest for instr, rest in steps]
    installed = next(i for i, s in enumerate(order) if "pip install --no-deps ." in s)
    user = next(i for i, s in enumerate(order) if s.startswith("USER"))
    assert installed < order.index("RUN " + pull) < user
    # make up ENGINE=musetalk pulls before starting
    assert 'ENGINE="$(ENGINE)" bash scripts/up.sh' in (REPO / "Makefile").read_text()
    up = (REPO / "scripts/up.sh").read_text()
    assert up.index('models pull "$ENGINE"') < up.index("--- 1. Redis")
