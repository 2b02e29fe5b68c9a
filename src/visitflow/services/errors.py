"""The one error type of VisitFlow's services: why something asked of it was refused.

Each refusal carries an HTTP-like status (403 not yours to do, 404 no such thing, 409 not in this state,
422 the request itself is wrong, 503 may or may not have happened), a sentence a person understands, and as
data the field it is about (named as in the request), so a form shows it next to that field. One handler
in `main` turns it into an answer: JSON for the API, a page or an inline message for the UI.
"""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    def __init__(self, status: int, message: str, field: str | None = None, **facts: Any) -> None:
        super().__init__(message)
        self.status, self.message, self.field, self.facts = status, message, field, facts
