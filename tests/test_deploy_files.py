"""docker-compose.yml and the Dockerfiles can't be built here: check they match the code.

Every module, command, environment variable and path they name must exist, and the settings
the issue asks for (Redis persistence, GPU reservation, healthchecks, no torch in the API
image) must be there.
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

from app.settings import Settings

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
    assert 'pip install -c constraints.txt ".[service]"' in api
    base = next(rest for instr, rest in _dockerfile("Dockerfile.worker") if instr == "FROM")
    assert base.startswith("nvidia/cuda:")
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    service = " ".join(extras["service"])
    for pkg in ("fastapi", "uvicorn", "python-multipart", "celery", "redis", "prometheus-client"):
        assert pkg in service
    assert "torch" not in service
