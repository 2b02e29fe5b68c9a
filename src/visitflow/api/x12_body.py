"""Reading an X12 file sent to the API: as `text/plain`, or as JSON `{"x12": "...", "filename": "..."}`."""

from __future__ import annotations

import json

from fastapi import HTTPException, Request, status

from visitflow.claims.check import file_text

# A payer file of a few thousand claims is well under this; anything larger is not a file a person handles.
MAX_FILE_BYTES = 5_000_000


def x12_body_schema(example: str) -> dict:
    return {"requestBody": {"required": True, "content": {
        "text/plain": {"schema": {"type": "string"}, "example": example},
        "application/json": {"schema": {"type": "object", "required": ["x12"], "properties": {
            "x12": {"type": "string"}, "filename": {"type": "string", "maxLength": 200}}}},
    }}}


async def x12_body(request: Request) -> tuple[str, str | None]:
    """The file's text and, when the caller named it, its file name."""
    body = await request.body()
    if len(body) > MAX_FILE_BYTES:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, f"the file is over {MAX_FILE_BYTES:,} bytes")
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    filename = None
    if content_type == "application/json":
        try:
            document = json.loads(body)
        except ValueError as exc:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"body: not JSON ({exc})") from exc
        if not isinstance(document, dict) or not isinstance(document.get("x12"), str):
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, 'body: expected {"x12": "<the file>"}')
        text = document["x12"]
        filename = document.get("filename")
        if filename is not None and (not isinstance(filename, str) or len(filename) > 200):
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "filename: a name of at most 200 characters")
    elif content_type in ("text/plain", ""):
        text = file_text(body)
    else:
        raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
                            f"send the file as text/plain or as JSON {{\"x12\": ...}}, not {content_type}")
    if not text.strip():
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "body: the file is empty")
    return text, filename
