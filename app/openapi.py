"""The OpenAPI document the app serves (``/openapi.json``), built from the code at start-up.

FastAPI builds it from the routes (their models, parameters and ``responses``); this module
holds what FastAPI cannot see or would name badly, and nothing is edited by hand afterwards:

- :data:`OPERATION_IDS`: the one place that names operations (``push``, ``status`` ...): the
  method names of generated clients (``openapi-python-client``, ``@hey-api/openapi-ts``);
- the push's multipart form (push reads its body itself): :func:`app.schemas.push_form_schema`
  as ``components/schemas/PushForm``;
- security as the server enforces it: the ``/api/v1/lipsync`` routes take ``X-API-Key``;
  required (``[{APIKeyHeader: []}]``) when this server sets ``LIPSYNC_API_KEYS``, else
  optional (``[{APIKeyHeader: []}, {}]``: a key is accepted and ignored, none is needed).
  It is the document's top-level ``security``; the operations that never need a key
  (options, health, metrics) say ``security: []``;
- ``servers``: ``LIPSYNC_PUBLIC_BASE_URL``, else ``/`` (the host that served the document);
- ``webhooks``: ``jobFinished``, the signed POST of a job's final status (:func:`job_finished`).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import FastAPI, Header, status
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from fastapi.utils import generate_unique_id

from app.schemas import PUSH_FORM, JobStatus, push_form_schema, push_request_body
from service.settings import Settings
from service.webhook import SIGNATURE_HEADER, USER_AGENT

#: operationId of each route, by its function's name: generated clients' method names.
OPERATION_IDS: dict[str, str] = {
    "push": "push",
    "terminate": "terminate",
    "job_status": "status",
    "download": "download",
    "list_jobs": "listJobs",
    "delete": "deleteJob",
    "events": "events",
    "list_options": "listOptions",
    "healthz": "healthz",
    "readyz": "readyz",
    "metrics": "metrics",
    "job_finished": "jobFinished",
}

SECURITY_SCHEME = "APIKeyHeader"
#: The signature header's form (service/webhook.py ``sign``).
SIGNATURE_PATTERN = r"^t=[0-9]+,v1=[0-9a-f]{64}$"


def operation_id(route: APIRoute) -> str:
    """FastAPI's ``generate_unique_id_function``: the route's entry in :data:`OPERATION_IDS`
    (a documented route without one is a start-up error, not a made-up name)."""
    if not route.include_in_schema:
        return generate_unique_id(route)
    try:
        return OPERATION_IDS[route.name]
    except KeyError:
        raise RuntimeError(
            f"route {route.name} ({route.path}) has no operationId in app/openapi.py"
        ) from None


def servers(settings: Settings) -> list[dict[str, str]]:
    base = settings.public_base_url.rstrip("/")
    if base:
        return [{"url": base, "description": "this deployment (LIPSYNC_PUBLIC_BASE_URL)"}]
    return [{"url": "/", "description": "the host that served this document"}]


def security(settings: Settings) -> list[dict[str, list[str]]]:
    """The key requirement of the /api/v1/lipsync routes on this server (app.deps.get_owner):
    required with LIPSYNC_API_KEYS, else optional (an empty requirement: no key)."""
    required: dict[str, list[str]] = {SECURITY_SCHEME: []}
    return [required] if settings.api_keys else [required, {}]


def job_finished(
    body: JobStatus,
    signature: Annotated[
        str,
        Header(
            alias=SIGNATURE_HEADER,
            pattern=SIGNATURE_PATTERN,
            description="t=<unix seconds>,v1=<hex HMAC-SHA256(LIPSYNC_WEBHOOK_SECRET, "
            "'<t>.<raw body>')>; verify it (lipsync.client.verify_webhook) and refuse an old t",
            examples=["t=1735732929,v1=" + "0" * 64],
        ),
    ],
    user_agent: Annotated[str, Header(alias="User-Agent", examples=[USER_AGENT])],
) -> None:
    """The job's final status, exactly as ``GET /status`` answers it, POSTed to the push's
    ``webhook_url`` when the job ends (succeeded, failed or canceled). Answer any 2xx within
    ``LIPSYNC_WEBHOOK_TIMEOUT_S``; anything else (another status, a redirect, no answer in
    time) is tried again later, ``LIPSYNC_WEBHOOK_MAX_ATTEMPTS`` times in all. The same job
    may be delivered more than once: use ``task_id`` to drop repeats."""


def declare_webhooks(app: FastAPI) -> None:
    app.webhooks.add_api_route(
        "jobFinished",
        job_finished,
        methods=["POST"],
        operation_id=OPERATION_IDS["job_finished"],
        status_code=status.HTTP_204_NO_CONTENT,
        response_description="delivered (any 2xx): no more attempts",
        responses={
            "default": {
                "description": "any other answer, or none in time: the delivery is tried "
                "again later"
            }
        },
        tags=["webhooks"],
    )


def install_openapi(app: FastAPI, settings: Settings) -> None:
    """Serve the document described above (built once, on first request)."""
    declare_webhooks(app)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(
                title=app.title,
                version=app.version,
                openapi_version=app.openapi_version,
                summary=app.summary,
                description=app.description,
                routes=app.routes,
                webhooks=app.webhooks.routes,
                tags=app.openapi_tags,
                servers=servers(settings),
                separate_input_output_schemas=app.separate_input_output_schemas,
            )
            _describe_push_form(doc)
            _apply_security(doc, settings)
            _describe_head(doc)
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _describe_head(doc: dict[str, Any]) -> None:
    """``HEAD`` on every ``GET`` operation (app/limits.py ``HeadAsGet``): the same
    parameters, security and statuses with their headers, and no body."""
    for item in doc["paths"].values():
        get = item.get("get")
        if get is None or "head" in item:
            continue
        responses = {
            status: {k: v for k, v in answer.items() if k != "content"}
            for status, answer in get["responses"].items()
        }
        item["head"] = {
            **{k: v for k, v in get.items() if k in ("tags", "parameters", "security")},
            "summary": f"Headers of: {get.get('summary') or get['operationId']}",
            "description": "The GET's status and headers without its body.",
            "operationId": f"{get['operationId']}Head",
            "responses": responses,
        }


def _describe_push_form(doc: dict[str, Any]) -> None:
    """The push's form (one field per declared option): push reads its multipart body itself,
    so FastAPI cannot see the fields."""
    push = doc["paths"]["/api/v1/lipsync/push"]["post"]
    push["requestBody"] = push_request_body()
    doc["components"]["schemas"][PUSH_FORM] = push_form_schema()


def _apply_security(doc: dict[str, Any], settings: Settings) -> None:
    """One requirement for the keyed routes at the top (FastAPI puts it on each operation
    from the X-API-Key dependency), ``[]`` on the operations that never read a key."""
    doc["security"] = security(settings)
    for item in doc.get("webhooks", {}).values():  # signed (X-Lipsync-Signature), no key
        for operation in item.values():
            operation["security"] = []
    for item in doc["paths"].values():
        for operation in item.values():
            if operation.pop("security", None) is None:
                operation["security"] = []
