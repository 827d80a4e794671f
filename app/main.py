"""The FastAPI application: ``uvicorn --factory app.main:create_app``.

Nothing happens at import. ``create_app`` reads settings (from ``LIPSYNC_*`` unless given)
and the lifespan builds the Redis job store and a producer-only Celery app, neither of which
connects until first used; the pipeline (torch, models) is never imported here.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from kombu.exceptions import OperationalError

import lipsync
from app.deps import Services
from app.errors import install_error_handlers
from app.limits import BodyCap, HeadAsGet, HostCheck
from app.metrics import build_registry
from app.openapi import install_openapi, operation_id
from app.routers import events, health, jobs, metrics, options, owned, results, web
from service.jobs import JobStore, StoreError
from service.queue import create_celery
from service.settings import Settings, load_settings

log = logging.getLogger("lipsync.api")


def _unavailable(what: str, settings: Settings) -> JSONResponse:
    return JSONResponse(
        {"detail": {"code": "unavailable", "message": f"{what} is unavailable; retry shortly"}},
        status_code=503,
        headers={"Retry-After": str(min(settings.retry_after_s, 10))},
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app for ``settings`` (default: read from the environment now)."""
    settings = settings or load_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings.ensure_dirs()
        store = JobStore.from_url(
            settings.redis_url,
            settings.redis_prefix,
            settings.result_ttl_s,
            settings.redis_timeout_s,
        )
        celery = create_celery(settings, with_tasks=False)
        app.state.services = Services(settings=settings, store=store, celery=celery)
        app.state.metrics_registry = build_registry(store)
        try:
            yield
        finally:
            store.close()
            celery.close()

    app = FastAPI(
        title="lipsync",
        version=lipsync.__version__,
        summary="Lip-sync a face video or image to new speech: push, status, download.",
        lifespan=lifespan,
        generate_unique_id_function=operation_id,  # operationIds: app/openapi.py
    )

    @app.exception_handler(StoreError)
    async def _redis_down(request: Request, exc: StoreError) -> JSONResponse:
        log.warning("Redis error on %s: %s", request.url.path, exc)
        return _unavailable("the job store (Redis)", settings)

    @app.exception_handler(OperationalError)
    async def _broker_down(request: Request, exc: OperationalError) -> JSONResponse:
        log.warning("broker error on %s: %s", request.url.path, exc)
        return _unavailable("the job queue (broker)", settings)

    install_error_handlers(app)
    # Outermost first: a wrong Host, then an oversized body, are refused before any route,
    # parsing or authentication runs.
    app.add_middleware(HeadAsGet)
    app.add_middleware(BodyCap, settings=settings, upload_path=f"{jobs.router.prefix}/push")
    app.add_middleware(HostCheck, settings=settings)
    _allow_cors(app, settings)
    app.include_router(jobs.router)
    app.include_router(owned.router)
    app.include_router(events.router)
    app.include_router(options.router)
    app.include_router(results.router)
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.include_router(web.router)
    install_openapi(app, settings)
    return app


#: What a page on an allowed origin may send and read (LIPSYNC_CORS_ORIGINS).
CORS_ALLOW_HEADERS = ["X-API-Key", "Idempotency-Key", "Content-Type", "Range", "Last-Event-ID"]
CORS_EXPOSE_HEADERS = ["Retry-After", "Content-Disposition", "Content-Range", "Accept-Ranges"]


def _allow_cors(app: FastAPI, settings: Settings) -> None:
    """CORS for the origins in LIPSYNC_CORS_ORIGINS (none: no CORS headers at all). Added
    last, so outermost: preflights are answered before the Host check, the body cap or
    authentication (they carry no key), and error answers carry the headers too, so a page
    can read their codes. No credentials: the API key is a header, never a cookie."""
    if not settings.cors_origins:
        return
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_methods=["GET", "POST", "DELETE"],
        allow_headers=CORS_ALLOW_HEADERS,
        expose_headers=CORS_EXPOSE_HEADERS,
        max_age=settings.cors_max_age_s,
    )
