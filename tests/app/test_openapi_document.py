"""The OpenAPI document the app builds (app/openapi.py), checked without a server: valid
OpenAPI 3.1 (openapi-spec-validator), its examples valid against their schemas, the
keyword and naming rules of issue 29, and the response checker of the e2e tests
(tests/app/openapi_check.py) refusing what the document does not allow."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate

from app.main import create_app
from app.openapi import OPERATION_IDS
from service.settings import Settings
from service.status import JobStage
from tests.app.openapi_check import Document, OpenAPIMismatch
from tests.app.service_harness import KEY_A, REPO


def build(**settings: Any) -> dict[str, Any]:
    return create_app(Settings(**settings)).openapi()


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return build(api_keys=[KEY_A])


@pytest.fixture(scope="module")
def open_doc() -> dict[str, Any]:
    return build()


def operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for section in ("paths", "webhooks"):
        for path, item in doc.get(section, {}).items():
            for method, operation in item.items():
                yield path, method, operation


def walk(node: Any, where: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every object of the document with its JSON pointer; property maps' names are data."""
    if isinstance(node, dict):
        yield where, node
        for key, value in node.items():
            if key in ("properties", "examples") and isinstance(value, dict):
                for name, sub in value.items():
                    yield from walk(sub, f"{where}/{key}/{name}")
            else:
                yield from walk(value, f"{where}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from walk(value, f"{where}/{i}")


def test_valid_openapi_31_with_and_without_keys(doc: dict[str, Any], open_doc: dict[str, Any]):
    for one in (doc, open_doc):
        assert one["openapi"].startswith("3.1.")
        validate(one)  # raises on any error


def test_security_follows_the_server(doc: dict[str, Any], open_doc: dict[str, Any]) -> None:
    """Keys set: X-API-Key required; unset: optional (the server ignores a key then)."""
    assert doc["security"] == [{"APIKeyHeader": []}]
    assert open_doc["security"] == [{"APIKeyHeader": []}, {}]
    scheme = doc["components"]["securitySchemes"]["APIKeyHeader"]
    assert scheme == {**scheme, "type": "apiKey", "in": "header", "name": "X-API-Key"}
    public = {"listOptions", "healthz", "readyz", "metrics", "jobFinished"}
    for path, method, operation in operations(doc):
        if operation["operationId"].removesuffix("Head") in public:  # HEAD as its GET
            assert operation["security"] == [], (path, method)
        else:  # the top-level requirement applies
            assert "security" not in operation, (path, method)
            assert path.startswith("/api/v1/lipsync/"), path
    # the rest of the two documents is the same
    strip = {"security"}
    assert {k: v for k, v in doc.items() if k not in strip} == {
        k: v for k, v in open_doc.items() if k not in strip
    }


def test_operation_ids_come_from_the_one_table(doc: dict[str, Any]) -> None:
    ids = [operation["operationId"] for _, _, operation in operations(doc)]
    gets = [operation["operationId"] for _, m, operation in operations(doc) if m == "get"]
    # every GET answers HEAD too (app/limits.py HeadAsGet): its id with "Head"
    assert sorted(ids) == sorted([*OPERATION_IDS.values(), *(f"{g}Head" for g in gets)])
    assert {"push", "status", "download", "listJobs", "deleteJob", "events"} <= set(ids)
    names = json.dumps(doc)
    assert "_api_v1_lipsync_" not in names  # no FastAPI default names (push_api_v1_...)
    assert not [n for n in doc["components"]["schemas"] if n.startswith("Body_")]


def test_no_deprecated_example_keyword(doc: dict[str, Any]) -> None:
    found = [where for where, node in walk(doc) if "example" in node]
    assert found == []


def test_examples_match_their_schemas(doc: dict[str, Any]) -> None:
    """Each media type's and parameter's examples, and each schema's ``examples``."""
    checker = Document(doc)
    count = 0
    for where, node in walk(doc):
        if "schema" in node and isinstance(node.get("examples"), dict):
            for name, example in node["examples"].items():
                value = checker.resolve(example)["value"]
                checker.validate(value, node["schema"], f"{where} example {name}")
                count += 1
        if isinstance(node.get("examples"), list) and ("type" in node or "$ref" in node):
            for value in node["examples"]:
                checker.validate(value, node, f"{where} examples")
                count += 1
    print(f"\nFIGURE openapi_examples_checked = {count}")
    assert count >= 40, count


def test_typed_fields(doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]
    result = schemas["JobResult"]
    assert {"width", "height", "fps"} <= set(result["required"])
    assert result["properties"]["width"]["type"] == "integer"
    assert result["properties"]["fps"]["type"] == "number"
    assert "quality" not in result["properties"]  # it follows the result: status.quality
    quality = json.dumps(schemas["JobStatus"]["properties"]["quality"])
    assert "#/components/schemas/QualityInfo" in quality
    assert "#/components/schemas/Quality" in json.dumps(schemas["QualityInfo"]["properties"])
    assert {"sync_offset_ms", "lse_d", "pause_closed_share"} <= set(schemas["Quality"]["required"])
    assert schemas["JobStatus"]["properties"]["stage"]["enum"] == list(JobStage.__args__)
    default = schemas["OptionInfo"]["properties"]["default"]
    assert {b.get("type") for b in default["anyOf"]} == {
        "string", "integer", "number", "boolean", "array", "null"
    }  # fmt: skip
    for model, prop in (("PushResponse", "status_url"), ("PushResponse", "download_url"),
                        ("WebhookInfo", "url")):  # fmt: skip
        assert schemas[model]["properties"][prop]["format"] == "uri", (model, prop)
    form = schemas["PushForm"]
    for name in ("video_url", "audio_url", "webhook_url"):
        assert form["properties"][name]["format"] == "uri"
    code = schemas["ErrorDetail"]["properties"]["code"]
    from service.errors import HTTP_ERROR_CODES

    assert code["enum"] == list(HTTP_ERROR_CODES)


def test_every_stage_the_code_writes_is_in_the_enum() -> None:
    """The stage enum against the places that write a stage: the pipeline's phases, the
    worker's fetch stage, and every literal stage in the store's scripts and the worker."""
    from lipsync.pipeline import PHASES
    from worker.fetch import STAGE

    written = set(PHASES) | {STAGE, "evaluate"}
    for path in [*(REPO / "service" / "jobs").glob("*.py"), *(REPO / "worker").glob("*.py")]:
        text = path.read_text()
        written |= set(re.findall(r"""['"]stage['"],\s*['"]([a-z_]+)['"]""", text))
        written |= set(re.findall(r"""['"]stage['"]:\s*['"]([a-z_]+)['"]""", text))
        written |= set(re.findall(r"""\bstage=['"]([a-z_]+)['"]""", text))
        written |= set(re.findall(r"""progress\(\s*['"]([a-z_]+)['"]""", text))
    assert {"starting", "canceled", "failed", "queued", "done"} <= written  # the scan works
    assert written <= set(JobStage.__args__), written - set(JobStage.__args__)


def test_every_way_a_shot_face_is_chosen_is_in_the_enum() -> None:
    """ShotFace.chosen_by against the analysis that sets it (lipsync/face/analysis.py)."""
    from service.status import ShotFace

    text = (REPO / "lipsync" / "face" / "analysis.py").read_text()
    body = text[text.index("def _choose(") :]
    body = body[: body.index("\n    def ", 1)]
    written = set(re.findall(r"ShotFace\(index, \"([a-z]+)\"", body))
    written |= set(re.findall(r"\"([a-z]+)\"", body[body.index("how = ") :].splitlines()[0]))
    assert {"none", "box", "speaker", "largest"} <= written  # the scan works
    allowed = set(ShotFace.model_fields["chosen_by"].annotation.__args__)  # type: ignore[union-attr]
    assert written <= allowed, written - allowed


def test_push_form_rules(doc: dict[str, Any]) -> None:
    body = doc["paths"]["/api/v1/lipsync/push"]["post"]["requestBody"]
    media = body["content"]["multipart/form-data"]
    assert media["schema"] == {"$ref": "#/components/schemas/PushForm"}
    assert set(media["encoding"]) == {"video", "audio"}
    form = Document(doc)
    schema = {"$ref": "#/components/schemas/PushForm"}
    ok = {"video": "<bytes>", "audio_url": "https://example.com/a.wav"}
    form.validate(ok, schema, "push form")
    form.validate({**ok, "engine": "retrieval", "fps": 25}, schema, "push form")
    for bad in (
        {**ok, "crf": "18"},  # not an option: additionalProperties false
        {"audio_url": "https://example.com/a.wav"},  # no video at all
        {**ok, "video_url": "https://example.com/v.mp4"},  # both a file and a URL
        {"video": "<bytes>"},  # no audio
        {**ok, "audio": "<bytes>"},  # audio twice
    ):
        with pytest.raises(OpenAPIMismatch):
            form.validate(bad, schema, "push form")


def test_declared_answers(doc: dict[str, Any]) -> None:
    paths = doc["paths"]
    download = paths["/api/v1/lipsync/download"]["get"]
    answers = download["responses"]
    for status in ("200", "206"):
        content = answers[status]["content"]
        assert content["video/mp4"]["schema"] == {"type": "string", "format": "binary"}
        assert {"ETag", "Content-Disposition"} <= set(answers[status]["headers"])
    assert "Content-Range" in answers["206"]["headers"]
    assert "Content-Range" in answers["416"]["headers"]
    assert {p["name"] for p in download["parameters"]} >= {"Range", "If-Range"}
    push = paths["/api/v1/lipsync/push"]["post"]["responses"]
    assert push["429"]["headers"]["Retry-After"]["schema"]["type"] == "integer"
    assert "Retry-After" in paths["/api/v1/lipsync/status"]["get"]["responses"]["503"]["headers"]
    metrics = paths["/metrics"]["get"]["responses"]["200"]["content"]
    assert [m["schema"] for m in metrics.values()] == [{"type": "string"}]
    events = paths["/api/v1/lipsync/events"]["get"]["responses"]["200"]["content"]
    stream = events["text/event-stream"]
    assert {"$ref": "#/components/schemas/JobStatus"} in stream["schema"]["oneOf"]
    assert stream["x-itemSchema"]["oneOf"][0]["properties"]["data"]["contentSchema"] == {
        "$ref": "#/components/schemas/JobStatus"
    }
    assert doc["servers"] == [{"url": "/", "description": "the host that served this document"}]
    hook = doc["webhooks"]["jobFinished"]["post"]
    assert hook["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/JobStatus"
    }
    assert "X-Lipsync-Signature" in {p["name"] for p in hook["parameters"]}


def _response(status: int, body: Any, ctype: str = "application/json", **headers: str):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.Response(status, headers={"content-type": ctype, **headers}, content=raw)


def test_the_response_checker_refuses_what_the_document_does_not_allow(
    doc: dict[str, Any],
) -> None:
    """The e2e tests' checker (a check that cannot fail would prove nothing)."""
    from app.schemas import EXAMPLE_SUCCEEDED

    checker = Document(doc)

    def check(method: str, path: str, response: httpx.Response) -> None:
        head = checker.check_head(method, path, response)
        checker.check_body(head, response.content, complete=True)

    status = "/api/v1/lipsync/status"
    check("GET", status, _response(200, EXAMPLE_SUCCEEDED))
    bad_bodies = [
        {**EXAMPLE_SUCCEEDED, "stage": "rendering"},  # not a stage
        {**EXAMPLE_SUCCEEDED, "result": {**EXAMPLE_SUCCEEDED["result"], "width": "512"}},
        {k: v for k, v in EXAMPLE_SUCCEEDED.items() if k != "state"},
    ]
    for body in bad_bodies:
        with pytest.raises(OpenAPIMismatch):
            check("GET", status, _response(200, body))
    with pytest.raises(OpenAPIMismatch, match="not declared"):
        check("GET", status, _response(418, {"detail": {"code": "x", "message": "y"}}))
    with pytest.raises(OpenAPIMismatch, match="content type"):
        check("GET", status, _response(200, b"ok", "text/plain"))
    with pytest.raises(OpenAPIMismatch):  # a code that is not documented
        check("GET", status, _response(404, {"detail": {"code": "gone", "message": "x"}}))
    with pytest.raises(OpenAPIMismatch, match="Retry-After"):
        check("POST", "/api/v1/lipsync/push", _response(429, _problem("queue_full")))
    check("POST", "/api/v1/lipsync/push", _response(429, _problem("queue_full"), **{
        "retry-after": "30"}))  # fmt: skip
    with pytest.raises(OpenAPIMismatch, match="Content-Range"):  # the envelope, and its size
        check("GET", "/api/v1/lipsync/download", _response(416, _problem("range_not_satisfiable")))
    with pytest.raises(OpenAPIMismatch, match="content type"):  # not the file server's text
        check("GET", "/api/v1/lipsync/download", _response(416, b"", "text/plain"))
    with pytest.raises(OpenAPIMismatch):  # an unknown route answers the error body too
        check("GET", "/nowhere", _response(404, {"detail": "Not Found"}))
    events = "/api/v1/lipsync/events"
    good = f"event: status\ndata: {json.dumps(EXAMPLE_SUCCEEDED)}\n\n".encode()
    check("GET", events, _response(200, good, "text/event-stream"))
    for bad in (
        b'event: status\ndata: {"state": "succeeded"}\n\n',
        b"event: progress\ndata: {}\n\n",
        b'event: error\ndata: {"detail": {"code": "not_found"}}\n\n',
    ):
        with pytest.raises(OpenAPIMismatch):
            check("GET", events, _response(200, bad, "text/event-stream"))


def _problem(code: str) -> dict[str, Any]:
    return {"detail": {"code": code, "message": "m"}}


def test_readme_typescript_example_names_real_operations() -> None:
    """The README's TypeScript client example calls operations the document has."""
    text = (REPO / "README.md").read_text()
    blocks = re.findall(r"```ts\n(.*?)```", text, re.S)
    assert blocks, "README has no TypeScript example"
    code = "\n".join(blocks)
    used = set(re.findall(r"\b(push|status|download|listJobs|deleteJob|events)\(", code))
    assert {"push", "download"} <= used and used & {"status", "events"}, used
    assert used <= set(OPERATION_IDS.values())


def test_segments_are_documented_with_an_example(doc: dict[str, Any]) -> None:
    form = doc["components"]["schemas"]["PushForm"]
    segments = form["properties"]["segments"]
    example = json.loads(segments["examples"][0])
    assert example[1] == {"start": 6, "end": 9, "audio": 1}
    assert "audio_start" in segments["description"]
    assert set(form["patternProperties"]) == {"^audio_[1-7]$", "^audio_url_[1-7]$"}
    assert form["properties"]["segment_audio"]["enum"] == ["replace", "duck", "mix"]
