"""Refuse text no database can store, before it reaches a route.

PostgreSQL text and JSON cannot hold NUL characters, and nothing can store a lone UTF-16 surrogate
("\\ud800" with no partner) as UTF-8. Such input is a client error, in a body or in the address (a visit
id in the path): answer 422 with the reason rather than failing inside the database with a 500.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def unstorable_text(body: bytes, content_type: str) -> str | None:
    """Why this request body cannot be stored, or None when it can."""
    if "multipart/form-data" in content_type.lower():
        # A form with a file: the file's bytes are its page's to judge (it says in words, on the page, that a
        # binary file is not the text file it asks for); only the typed fields are checked here.
        if any(b"\x00" in field for field in _multipart_text_fields(body, content_type)):
            return "text may not contain NUL characters"
        return None
    if b"\x00" in body:
        return "the request contains a NUL character, which cannot be stored"
    if "json" in content_type:
        try:
            strings = list(_strings(json.loads(body)))
        except ValueError:
            return None  # malformed JSON: the route's own validation says so (422)
    elif "x-www-form-urlencoded" in content_type:
        strings = [s for pair in parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True) for s in pair]
    else:
        return None
    for text in strings:
        if "\x00" in text:
            return "text may not contain NUL characters"
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return "text contains an invalid character (a lone UTF-16 surrogate)"
    return None


def _multipart_text_fields(body: bytes, content_type: str) -> Iterator[bytes]:
    """The values of a multipart form's fields that are not files. With no boundary, the whole body."""
    boundary = next((p.split("=", 1)[1].strip().strip('"') for p in content_type.split(";")[1:]
                     if p.strip().lower().startswith("boundary=")), "")
    if not boundary:
        yield body
        return
    for part in body.split(b"--" + boundary.encode("latin-1")):
        headers = part.partition(b"\r\n\r\n")[0]
        if b"filename=" not in headers.lower():
            yield part


def unstorable_address(path: str, query: str) -> str | None:
    """Why this address (a visit id in the path, a filter in the query) cannot be looked up, or None."""
    for text in (path, *(s for pair in parse_qsl(query, keep_blank_values=True) for s in pair)):
        if "\x00" in text:
            return "the address contains a NUL character, which no record can have"
    return None


async def reject_unstorable_text(request: Request, call_next):
    problem = unstorable_address(request.scope["path"], request.url.query)
    if problem:  # a NUL in a visit id would reach PostgreSQL, which refuses it with an error
        return JSONResponse(status_code=422, content={"detail": problem})
    if request.method in ("POST", "PUT", "PATCH"):
        problem = unstorable_text(await request.body(), request.headers.get("content-type", ""))
        if problem:
            return JSONResponse(status_code=422, content={"detail": problem})
    return await call_next(request)
