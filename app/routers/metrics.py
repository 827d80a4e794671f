"""Metrics: Prometheus text exposition at ``/metrics``."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from app.schemas import GUARD_RESPONSES

router = APIRouter(tags=["metrics"], responses=GUARD_RESPONSES)


_EXAMPLE = (
    "# HELP lipsync_queue_depth Jobs waiting for a worker\n"
    "# TYPE lipsync_queue_depth gauge\n"
    "lipsync_queue_depth 0.0\n"
    'lipsync_jobs_finished_total{state="succeeded"} 12.0\n'
)


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {
            "description": "Prometheus text exposition format",
            "content": {
                CONTENT_TYPE_LATEST: {
                    "schema": {"type": "string"},
                    "examples": {"metrics": {"value": _EXAMPLE}},
                }
            },
        }
    },
)
def metrics(request: Request) -> Response:
    """Jobs by state, queue depth, live workers, seconds per stage, process metrics."""
    registry: CollectorRegistry = request.app.state.metrics_registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
