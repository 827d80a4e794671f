"""The options a push may set (``GET /api/v1/lipsync/options``), as declared once in
:mod:`lipsync.options` and the engines' wings, with this server's defaults: what the web page
builds its form from; with the engines (which need weights), the licences of the models this
server loads and whether it is in commercial-only mode."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from app.deps import SettingsDep
from app.schemas import GUARD_RESPONSES, EngineInfo, OptionInfo, OptionsResponse, json_example
from lipsync.licences import commercial_only_from_env, report, restricted_values
from lipsync.registry import engine_specs
from service.options import push_specs
from service.settings import Settings

router = APIRouter(prefix="/api/v1/lipsync", tags=["options"], responses=GUARD_RESPONSES)


def server_defaults(settings: Settings) -> dict[str, Any]:
    """The options whose default is this server's setting rather than the library's."""
    return {
        "engine": settings.default_engine,
        "enhancer": settings.default_enhancer,
        "max_size": settings.max_output_size,
        "evaluate": settings.evaluate_results,
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


class BundledModel(BaseModel):
    key: str
    name: str
    file: str
    package: str
    used_for: str
    licence: str
    commercial: bool | None = Field(description="true: allowed; false: excluded; null: check")
    commercial_use: str = Field(description="yes, NO or check")
    source: str = Field(description="where the licence statement comes from")
    training_data: str
    note: str


class OptionalModel(BaseModel):
    file: str
    used_by: str
    licence: str
    commercial: bool | None
    commercial_use: str


class Licences(BaseModel):
    bundled: list[BundledModel] = Field(description="the models the default path loads")
    optional: list[OptionalModel] = Field(description="weights a server may add in models/")


class ServerOptions(OptionsResponse):
    engines: list[EngineInfo] = Field(
        default_factory=list,
        description="the engines a push may choose (the engine option's choices), and "
        "whether each needs weights files",
    )
    commercial_only: bool = Field(
        default=False,
        description="LIPSYNC_COMMERCIAL_ONLY: choices that load a component whose licence "
        "excludes commercial use are left out here and refused at the push (422, "
        "licence_restricted)",
    )
    licences: Licences | None = Field(
        default=None,
        description="every model file this server may load: licence, whether commercial use "
        "is allowed and the source of that statement",
    )


@router.get("/options", response_model=ServerOptions, responses={200: json_example(_EXAMPLE)})
async def list_options(settings: SettingsDep) -> ServerOptions:
    """Every option a push may send as a form field: type, choices or range, default, help,
    and the engines that read it; the engines, and whether each needs weights; whether the
    server is in commercial-only mode and the licences of the models it loads. No key
    needed: it describes the server, not a job."""
    defaults = server_defaults(settings)
    commercial_only = commercial_only_from_env()
    infos = []
    for spec in push_specs():
        info = spec.describe()
        if spec.name in defaults:
            info["default"] = defaults[spec.name]
        refused = restricted_values(spec.name) if commercial_only else set()
        if refused and info["choices"]:
            info["choices"] = [c for c in info["choices"] if c["value"] not in refused]
        infos.append(OptionInfo.model_validate(info))
    refused = restricted_values("engine") if commercial_only else set()
    engines = [
        EngineInfo(
            name=spec.name,
            summary=spec.summary,
            needs_weights=spec.needs_weights,
            weights=[m.filename for m in spec.weights],
            ready=not missing,
            missing=list(missing),
        )
        for spec in engine_specs()
        for missing in [spec.missing_weights(settings.models_dir)]
        if spec.name not in refused
    ]
    licences = report(commercial_only=commercial_only)
    return ServerOptions(
        options=infos,
        engines=engines,
        commercial_only=commercial_only,
        licences=Licences.model_validate(
            {"bundled": licences["bundled"], "optional": licences["optional"]}
        ),
    )
