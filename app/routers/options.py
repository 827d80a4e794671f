"""The options a push may set (``GET /api/v1/lipsync/options``), as declared once in
:mod:`lipsync.options`, with this server's defaults: what the web page builds its form from."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from app.deps import SettingsDep
from app.schemas import GUARD_RESPONSES, OptionInfo, OptionsResponse, json_example
from lipsync.options import public_specs
from service.settings import Settings

router = APIRouter(prefix="/api/v1/lipsync", tags=["options"], responses=GUARD_RESPONSES)


def server_defaults(settings: Settings) -> dict[str, Any]:
    """The options whose default is this server's setting rather than the library's."""
    return {
        "engine": settings.default_engine,
        "enhancer": settings.default_enhancer,
        "max_size": settings.max_output_size,
    }


_EXAMPLE = {
    "options": [
        {
            "name": "sync_mode",
            "type": "str",
            "label": "sync mode",
            "help": "what to do when the video and the speech differ in length",
            "default": "loop",
            "choices": [{"value": "loop", "help": "repeat the video"}],
            "advanced": False,
        }
    ]
}


@router.get("/options", response_model=OptionsResponse, responses={200: json_example(_EXAMPLE)})
async def list_options(settings: SettingsDep) -> OptionsResponse:
    """Every option a push may send as a form field: type, choices or range, default, help,
    and the engines that read it. No key needed: it describes the server, not a job."""
    defaults = server_defaults(settings)
    infos = []
    for spec in public_specs():
        info = spec.describe()
        if spec.name in defaults:
            info["default"] = defaults[spec.name]
        infos.append(OptionInfo.model_validate(info))
    return OptionsResponse(options=infos)
