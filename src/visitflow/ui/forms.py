"""Reading posted forms: each problem becomes a sentence attached to the field it is about.

The view checks only what a person can fix in the form itself (a blank field, a time that is not a time);
everything about the visit's state is the workflow's to decide, and its rejection is placed next to the
field it names, or above the form's button when it names none.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime

from visitflow.catalogue import field_label
from visitflow.models import REASONS_NEEDING_TEXT, ReasonCode
from visitflow.rules.documentation import missing_note_fields
from visitflow.services.errors import ServiceError
from visitflow.ui.present import Clock

FORM = "_form"  # the error that belongs to the form as a whole, shown beside its submit button
# Every action form carries a key made when the form is drawn (and kept when it is drawn again with an
# error), so a double click or a resend after a lost answer acts once: it becomes the Update id.
ACTION_KEY = "idempotency_key"
_ROW_ID = re.compile(r"^[A-Za-z0-9_-]{1,200}$")


@dataclass
class FormState:
    """What a form shows: the values typed (kept on error) and one message per field."""

    values: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    def v(self, name: str, default: str = "") -> str:
        return self.values.get(name, default) or default

    def e(self, name: str) -> str:
        return self.errors.get(name, "")

    def need(self, name: str, message: str) -> str:
        value = self.v(name).strip()
        if not value:
            self.errors.setdefault(name, message)
        return value

    def time(self, name: str, clock: Clock, missing: str) -> datetime | None:
        raw = self.need(name, missing)
        if not raw:
            return None
        parsed = clock.parse_input(raw)
        if parsed is None:
            self.errors[name] = "Enter a date and time, e.g. 2024-11-26 09:30."
        return parsed

    def reason(self, code_field: str = "reason_code", text_field: str = "reason_text") -> ReasonCode | None:
        raw = self.need(code_field, "Choose a reason code.")
        if not raw:
            return None
        try:
            code = ReasonCode(raw)
        except ValueError:
            self.errors[code_field] = "Choose one of the listed reason codes."
            return None
        if code in REASONS_NEEDING_TEXT and not self.v(text_field).strip():
            self.errors[text_field] = "This reason code needs a short explanation (EVV-04)."
        return code

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def key(self) -> str | None:
        """The action's idempotency key, as drawn into the form (None from an old page without one)."""
        return self.v(ACTION_KEY).strip()[:200] or None


def read_dates(params, f: FormState, target: object, names: tuple[str, ...]) -> None:
    """Date filters from a query string or a form onto `target`; a date that cannot be read is a field error."""
    for name in names:
        raw = str(params.get(name) or "").strip()
        f.values[name] = raw
        if raw:
            try:
                setattr(target, name, date.fromisoformat(raw))
            except ValueError:
                f.errors[name] = "Enter a date, e.g. 2026-11-02."


def read_form(form, names: list[str]) -> FormState:
    return FormState(values={n: str(form.get(n, "") or "") for n in [*names, ACTION_KEY]})


@dataclass
class Target:
    """Where an action's result goes: the visit page's work panel, or one row of a work list."""

    context: str = "visit"
    row: str = ""

    @classmethod
    def of(cls, form) -> Target:
        row = str(form.get("row", "") or "")
        if form.get("context") == "row" and _ROW_ID.match(row):
            return cls("row", row)
        return cls()


def note_field_name(name: str) -> str:
    return f"note_{name}"


def note_errors(fields: dict[str, str], required: list[str]) -> dict[str, str]:
    """DOC-03 checked before the workflow sees the note, so each missing field gets its own message."""
    return {name: f"{field_label(name)} is required for this discipline (DOC-03)."
            for name in missing_note_fields(fields, required)}


def place_rejection(err: ServiceError, f: FormState) -> dict[str, str]:
    """Attach a refusal to the field it names (as data), or to the form as a whole when the form has no such
    field. A note's missing fields (DOC-03) each get their own message."""
    if err.field == "fields" and err.facts.get("missing"):
        return {note_field_name(n): f"{field_label(n)} is required for this discipline (DOC-03)."
                for n in err.facts["missing"]}
    return {err.field if err.field in f.values else FORM: _sentence(err.message)}


def _sentence(message: str) -> str:
    message = message.strip()
    if not message:
        return "The visit did not accept this."
    message = message[0].upper() + message[1:]
    return message if message.endswith((".", "!", "?")) else message + "."


def binary_file(data: bytes) -> bool:
    """An uploaded file with NUL bytes is binary (a spreadsheet, a PDF, an image), not the text file a page asks
    for; no database could keep it as text either."""
    return b"\x00" in data
