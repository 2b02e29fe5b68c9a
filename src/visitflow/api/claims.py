"""Claim files: check an 837 before it goes to the payer."""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.concurrency import run_in_threadpool

from visitflow.claims.check import DEFAULT_FILING_LIMIT_DAYS, CheckReport, check_837, file_text
from visitflow.claims.validate import UnreadableX12
from visitflow.deps import SettingsDep, StaffUser

router = APIRouter(prefix="/api/claims", tags=["claims"])

# A payer file of a few thousand claims is well under this; anything larger is not a claim file a person checks.
MAX_FILE_BYTES = 5_000_000

_BODY = {"requestBody": {"required": True, "content": {
    "text/plain": {"schema": {"type": "string"}, "example": "ISA*00*          *00*          *ZZ*..."},
    "application/json": {"schema": {"type": "object", "required": ["x12"],
                                    "properties": {"x12": {"type": "string"}}}},
}}}


@router.post("/check", openapi_extra=_BODY, response_model=CheckReport)
async def check_claim_file(
        request: Request, _user: StaffUser, settings: SettingsDep,
        filing_limit_days: Annotated[int, Query(ge=1, le=3650, description="the payer's filing limit (CLM-07)")]
        = DEFAULT_FILING_LIMIT_DAYS,
        as_of: Annotated[date | None, Query(description="count filing days to this day (default: today)")] = None,
) -> CheckReport:
    """Check an 837P or 837I file: pyx12 against the implementation guide (CLM-06), then CLM-01, 02, 03, 05, 07.

    Send the file as `text/plain`, or as JSON `{"x12": "..."}`. The answer lists each finding with its rule, the
    segment and line, and what is wrong; no findings means the file is clean. A body that is not an 837 is a 422.
    """
    text = await _file_text(request)
    today = as_of or datetime.now(ZoneInfo(settings.agency_timezone)).date()
    try:
        # pyx12 walks the whole file: off the event loop.
        return await run_in_threadpool(check_837, text, today, filing_limit_days)
    except UnreadableX12 as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"not a readable 837 file: {exc}") from exc


async def _file_text(request: Request) -> str:
    body = await request.body()
    if len(body) > MAX_FILE_BYTES:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, f"the file is over {MAX_FILE_BYTES:,} bytes")
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        try:
            document = json.loads(body)
        except ValueError as exc:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"body: not JSON ({exc})") from exc
        if not isinstance(document, dict) or not isinstance(document.get("x12"), str):
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, 'body: expected {"x12": "<the file>"}')
        text = document["x12"]
    elif content_type in ("text/plain", ""):
        text = file_text(body)
    else:
        raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
                            f"send the file as text/plain or as JSON {{\"x12\": ...}}, not {content_type}")
    if not text.strip():
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "body: the file is empty")
    return text
