"""Every answer the e2e tests receive, checked against the API's own OpenAPI document.

:func:`api_client` (used by the shared fixtures: ``Stack.client``, ``Service.client``) gives
an ``httpx.Client`` whose transport checks each answer against the document that the same
server serves at ``/openapi.json``: the operation (path template and method), a declared
status, a declared content type, the required response headers and their schemas, and the
body against the schema of its status and content type (JSON bodies as JSON; an event
stream event by event, each event's data against the schema of its event in
``x-itemSchema``; text as a string). A mismatch raises :class:`OpenAPIMismatch` where the
test reads the answer. Paths outside the document (the web page, the document itself) are
not checked; an unknown route's answer must still be the error body.
"""

from __future__ import annotations

import json
import re
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import ValidationError
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

#: Served outside the document on purpose: the web page and the document with its viewers.
UNDOCUMENTED = re.compile(r"^/($|static/|openapi\.json$|docs|redoc)")
_BASE = "urn:lipsync:openapi"
_MAX_BODY = 64 * 1024 * 1024

#: (method, path template, status, content type) of every answer checked in this process.
CHECKED: Counter[tuple[str, str, int, str]] = Counter()


class OpenAPIMismatch(AssertionError):
    """An answer that its OpenAPI document does not describe."""


def _formats() -> FormatChecker:
    checker = FormatChecker()
    for name, func in Draft202012Validator.FORMAT_CHECKER.checkers.items():
        checker.checkers[name] = func

    @checker.checks("uri")
    def _uri(value: object) -> bool:
        if not isinstance(value, str):
            return True
        parts = urlsplit(value)
        return bool(parts.scheme and (parts.netloc or parts.path))

    return checker


def media_type(value: str | None) -> str:
    return (value or "").split(";")[0].strip().lower()


@dataclass
class Event:
    event: str = "message"
    data: list[str] = field(default_factory=list)
    id: str | None = None
    retry: str | None = None


def parse_events(text: str) -> list[Event]:
    """The complete events of an event stream (a block without data is no event)."""
    events = []
    blocks = re.split(r"\r?\n\r?\n", text)
    for block in blocks[:-1]:  # the last one is not terminated yet (or empty)
        event = Event()
        for line in block.splitlines():
            if not line or line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "data":
                event.data.append(value)
            elif name == "event":
                event.event = value
            elif name == "id":
                event.id = value
            elif name == "retry":
                event.retry = value
        if event.data:
            events.append(event)
    return events


class Document:
    """One served OpenAPI document, ready to check answers against."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        resource = Resource.from_contents(doc, default_specification=DRAFT202012)
        self.registry: Registry[Any] = Registry().with_resource(_BASE, resource)
        self.formats = _formats()
        self.paths = [
            (re.compile("^" + re.sub(r"\{[^/]+\}", "[^/]+", path) + "$"), path)
            for path in doc["paths"]
        ]

    # -- schemas -------------------------------------------------------------------------
    def resolve(self, node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node:
            node = self.registry.resolver(_BASE).lookup(_BASE + node["$ref"]).contents
        return node

    def validate(self, instance: Any, schema: dict[str, Any], where: str) -> None:
        validator = Draft202012Validator(
            _absolute(schema), registry=self.registry, format_checker=self.formats
        )
        error = next(iter(sorted(validator.iter_errors(instance), key=lambda e: e.path)), None)
        if error is not None:
            raise OpenAPIMismatch(f"{where}: {_describe(error)}\ninstance: {_short(instance)}")

    # -- answers -------------------------------------------------------------------------
    def operation(self, method: str, path: str) -> tuple[str, dict[str, Any]] | None:
        for pattern, template in self.paths:
            if pattern.match(path):
                operation = self.doc["paths"][template].get(method.lower())
                return (template, operation) if operation is not None else None
        return None

    def answer(self, method: str, path: str, status: int) -> tuple[str, dict[str, Any]]:
        """(the path template, the declared response) for this answer; raises if none is."""
        found = self.operation(method, path)
        if found is None:  # an unknown route or method: the error body all the same
            if status not in (404, 405):
                raise OpenAPIMismatch(f"{method} {path}: {status} for an undocumented route")
            problem = {"$ref": "#/components/schemas/Problem"}
            return path, {"content": {"application/json": {"schema": problem}}}
        template, operation = found
        responses = operation["responses"]
        declared = (
            responses.get(str(status))
            or responses.get(f"{str(status)[0]}XX")
            or responses.get("default")
        )
        if declared is None:
            raise OpenAPIMismatch(
                f"{method} {template}: status {status} is not declared ({sorted(responses)})"
            )
        return template, self.resolve(declared)

    def check_head(self, method: str, path: str, response: httpx.Response) -> dict[str, Any]:
        """Status, content type and headers; the media type object the body must match."""
        template, declared = self.answer(method, path, response.status_code)
        where = f"{method} {template} {response.status_code}"
        content = declared.get("content") or {}
        ctype = media_type(response.headers.get("content-type"))
        media: dict[str, Any] = {}
        if content:
            by_type = {media_type(k): v for k, v in content.items()}
            if ctype not in by_type:
                raise OpenAPIMismatch(f"{where}: content type {ctype!r} not in {list(by_type)}")
            media = by_type[ctype]
        for name, spec in (declared.get("headers") or {}).items():
            spec = self.resolve(spec)
            value = response.headers.get(name)
            if value is None:
                if spec.get("required") and method != "HEAD":
                    raise OpenAPIMismatch(f"{where}: required header {name} is missing")
                continue
            schema = spec.get("schema", {})
            typed: Any = value
            if self.resolve(schema).get("type") == "integer" and value.strip().isdigit():
                typed = int(value)
            self.validate(typed, schema, f"{where} header {name}")
        return {"where": where, "ctype": ctype, "media": media, "declared": declared,
                "key": (method, template, response.status_code, ctype)}  # fmt: skip

    def check_body(self, head: dict[str, Any], body: bytes, complete: bool) -> None:
        where, ctype, media = head["where"], head["ctype"], head["media"]
        if not head["declared"].get("content"):
            if complete and body:
                raise OpenAPIMismatch(f"{where}: a body ({len(body)} bytes) where none is declared")
            return
        schema = media.get("schema")
        if ctype == "text/event-stream":
            self._check_events(where, media, body.decode("utf-8", "replace"))
        if not complete or schema is None:
            return
        if ctype == "application/json" or ctype.endswith("+json"):
            try:
                instance = json.loads(body)
            except ValueError as exc:
                raise OpenAPIMismatch(f"{where}: not JSON ({exc}): {body[:200]!r}") from None
            self.validate(instance, schema, where)
        elif ctype.startswith("text/"):
            self.validate(body.decode("utf-8"), schema, where)
        # binary bodies (video/mp4, octet-stream, byteranges): any bytes

    def check_webhook(self, name: str, headers: Any, body: bytes) -> Any:
        """A webhook request as a receiver got it, against ``webhooks.<name>.post``: its
        declared header parameters and its JSON body. Returns the parsed body."""
        operation = self.doc["webhooks"][name]["post"]
        where = f"webhook {name}"
        headers = httpx.Headers(headers)  # names in any case
        for param in operation.get("parameters", []):
            param = self.resolve(param)
            if param["in"] != "header":
                continue
            value = headers.get(param["name"])
            if value is None:
                if param.get("required"):
                    raise OpenAPIMismatch(f"{where}: required header {param['name']} missing")
                continue
            self.validate(value, param["schema"], f"{where} header {param['name']}")
        content = self.resolve(operation["requestBody"])["content"]
        ctype = media_type(headers.get("content-type"))
        if ctype not in content:
            raise OpenAPIMismatch(f"{where}: content type {ctype!r} not in {list(content)}")
        payload = json.loads(body)
        self.validate(payload, content[ctype]["schema"], f"{where} body")
        return payload

    def _check_events(self, where: str, media: dict[str, Any], text: str) -> None:
        item = media.get("x-itemSchema")
        if item is None:
            raise OpenAPIMismatch(f"{where}: an event stream without x-itemSchema")
        branches = {b["properties"]["event"]["const"]: b for b in item["oneOf"]}
        for event in parse_events(text):
            self.validate(
                {"event": event.event, "data": "\n".join(event.data)},
                {k: v for k, v in item.items() if k != "oneOf"},
                f"{where} event",
            )
            branch = branches.get(event.event)
            if branch is None:
                raise OpenAPIMismatch(f"{where}: undeclared event {event.event!r}")
            data = branch["properties"]["data"]
            try:
                value = json.loads("\n".join(event.data))
            except ValueError as exc:
                raise OpenAPIMismatch(
                    f"{where}: event {event.event} data not JSON: {exc}"
                ) from None
            self.validate(value, data["contentSchema"], f"{where} event {event.event}")


def _absolute(node: Any) -> Any:
    """``node`` with its document-local references (``#/components/...``) made absolute."""
    if isinstance(node, dict):
        return {
            k: _BASE + v if k == "$ref" and v.startswith("#") else _absolute(v)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_absolute(v) for v in node]
    return node


def _describe(error: ValidationError) -> str:
    path = "/".join(str(p) for p in error.absolute_path) or "(root)"
    return f"at {path}: {error.message[:500]}"


def _short(value: Any) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else value
    return text[:800]


_documents: dict[str, Document] = {}
_lock = threading.Lock()


def document_of(base_url: str) -> Document:
    """The document served by the server at ``base_url`` (fetched once per server)."""
    with _lock:
        if base_url not in _documents:
            resp = httpx.get(f"{base_url}/openapi.json", timeout=60)
            resp.raise_for_status()
            _documents[base_url] = Document(resp.json())
        return _documents[base_url]


class _CheckedStream(httpx.SyncByteStream):
    def __init__(
        self, inner: httpx.SyncByteStream, document: Document, head: dict[str, Any]
    ) -> None:
        self.inner, self.document, self.head = inner, document, head
        self.body = bytearray()
        self.done = False

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.inner:
            if len(self.body) < _MAX_BODY:
                self.body += chunk
            yield chunk
        self.done = True
        if len(self.body) < _MAX_BODY:
            self.document.check_body(self.head, bytes(self.body), complete=True)

    def close(self) -> None:
        try:
            self.inner.close()
        finally:
            if not self.done and self.head["ctype"] == "text/event-stream":
                self.document.check_body(self.head, bytes(self.body), complete=False)


class CheckedTransport(httpx.BaseTransport):
    """An HTTP transport that checks every answer against the server's OpenAPI document."""

    def __init__(self, inner: httpx.BaseTransport | None = None) -> None:
        self.inner = inner or httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        path = request.url.path
        if request.method == "OPTIONS" or UNDOCUMENTED.match(path):
            return response
        base = f"{request.url.scheme}://{request.url.netloc.decode()}"
        document = document_of(base)
        try:
            head = document.check_head(request.method, path, response)
        except OpenAPIMismatch:
            response.close()
            raise
        CHECKED[head["key"]] += 1
        assert isinstance(response.stream, httpx.SyncByteStream)
        response.stream = _CheckedStream(response.stream, document, head)
        return response

    def close(self) -> None:
        self.inner.close()


def api_client(base_url: str, **kwargs: Any) -> httpx.Client:
    """An ``httpx.Client`` for the API at ``base_url`` whose answers are all checked."""
    return httpx.Client(base_url=base_url, transport=CheckedTransport(), **kwargs)
