"""Health: liveness (``/healthz``) and readiness (``/readyz``: Redis and a live worker)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from app.deps import SettingsDep, StoreDep
from app.schemas import GUARD_RESPONSES, Health, json_example
from lipsync.registry import engine_specs

router = APIRouter(tags=["health"], responses=GUARD_RESPONSES)


@router.get(
    "/healthz",
    response_model=Health,
    response_model_exclude_none=True,
    responses={200: json_example({"status": "ok"})},
)
def healthz() -> Health:
    """The process is up (no dependency is checked)."""
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Health,
    responses={
        200: json_example(
            {
                "status": "ready",
                "redis": True,
                "workers": ["gpu0@host"],
                "engines": {"viseme": [], "musetalk": ["musetalkV15/unet.pth"]},
            }
        ),
        503: {
            "model": Health,
            **json_example(
                {"status": "unavailable", "redis": True, "workers": [], "message": "no live worker"}
            ),
        },
    },
)
def readyz(store: StoreDep, settings: SettingsDep) -> JSONResponse:
    """Ready when Redis answers and at least one worker sent a heartbeat recently; with
    each engine and the weights files it lacks in models/ (empty: it can run)."""
    engines = {s.name: list(s.missing_weights(settings.models_dir)) for s in engine_specs()}
    try:
        store.ping()
        workers = store.workers.live()
    except Exception as exc:
        body = Health(
            status="unavailable",
            redis=False,
            message=f"Redis: {type(exc).__name__}",
            engines=engines,
        )
        return JSONResponse(body.model_dump(exclude_none=True), status_code=503)
    if not workers:
        body = Health(
            status="unavailable", redis=True, workers=[], message="no live worker", engines=engines
        )
        return JSONResponse(body.model_dump(exclude_none=True), status_code=503)
    ok = Health(status="ready", redis=True, workers=workers, engines=engines)
    return JSONResponse(ok.model_dump(exclude_none=True))
