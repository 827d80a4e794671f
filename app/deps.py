"""Annotated dependencies: settings, job store, Celery producer, and the caller's identity."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Annotated

from celery import Celery
from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader

from app.errors import problem
from service.jobs import JobStore
from service.settings import Settings


@dataclass
class Services:
    """What the app builds once at start-up (kept on ``app.state.services``)."""

    settings: Settings
    store: JobStore
    celery: Celery


# The dependencies are ``async def`` on purpose: none of them waits on I/O, and FastAPI runs
# every plain ``def`` dependency in its thread pool, a hop each per request (five on a status
# poll: under 200 polls/s that hopping, not Redis, dominated the latency).
async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


async def get_settings(services: Annotated[Services, Depends(get_services)]) -> Settings:
    return services.settings


async def get_store(services: Annotated[Services, Depends(get_services)]) -> JobStore:
    return services.store


async def get_celery(services: Annotated[Services, Depends(get_services)]) -> Celery:
    return services.celery


_api_key_header = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    description="Required when the server sets LIPSYNC_API_KEYS; each key sees only its jobs.",
)


def owner_of_key(key: str) -> str:
    """The owner id stored with a job: a digest, so keys never sit in Redis."""
    return "key:" + hashlib.sha256(key.encode()).hexdigest()[:24]


async def get_owner(
    settings: Annotated[Settings, Depends(get_settings)],
    api_key: Annotated[str | None, Security(_api_key_header)] = None,
) -> str:
    """``public`` when no keys are configured; else the key's owner id, or 401."""
    if not settings.api_keys:
        return "public"
    if api_key:
        given = api_key.encode()
        for key in settings.api_keys:
            if hmac.compare_digest(given, key.encode()):
                return owner_of_key(key)
    raise problem(
        401, "missing or invalid X-API-Key", "unauthorized", headers={"WWW-Authenticate": "ApiKey"}
    )


SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[JobStore, Depends(get_store)]
CeleryDep = Annotated[Celery, Depends(get_celery)]
OwnerDep = Annotated[str, Depends(get_owner)]
