"""How the UI words things: local times, durations, lateness, safe HTML ids. Labels are in `catalogue`."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from markupsafe import Markup, escape

from visitflow.catalogue import METHOD_LABELS, PUNCH_LABELS, REASON_LABELS, ROLE_LABELS, RULES, SERVICE_NAMES
from visitflow.models import as_utc


def human_duration(delta: timedelta) -> str:
    """'2 d 3 h', '5 h 10 min', '12 min' — the two largest units a person cares about; seconds only under
    a minute (short deadlines in a demo or a test), never '0 min'."""
    seconds = abs(delta.total_seconds())
    if 0 < seconds < 60:
        return f"{max(1, round(seconds))} s"
    minutes = int(seconds // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    if hours:
        return f"{hours} h {mins} min" if mins else f"{hours} h"
    return f"{mins} min"


class Clock:
    """Formats times in the agency's zone; one per app (settings.agency_timezone)."""

    def __init__(self, timezone: str) -> None:
        self.zone = ZoneInfo(timezone)
        self.zone_name = timezone

    def local(self, dt: datetime) -> datetime:
        return as_utc(dt).astimezone(self.zone)

    def when(self, dt: datetime | None) -> str:
        return f"{self.local(dt):%a %d %b %H:%M}" if dt else "—"

    def clock(self, dt: datetime | None) -> str:
        return f"{self.local(dt):%H:%M}" if dt else "—"

    def day(self, d: date | datetime | None) -> str:
        if d is None:
            return "—"
        if isinstance(d, datetime):
            d = self.local(d).date()
        return f"{d:%a %d %b %Y}"

    def input_value(self, dt: datetime | None) -> str:
        """The value of an <input type=datetime-local> showing dt in the agency's zone."""
        return f"{self.local(dt):%Y-%m-%dT%H:%M}" if dt else ""

    def parse_input(self, value: str) -> datetime | None:
        """A datetime-local value, read in the agency's zone, as UTC; None when it is not a time."""
        try:
            naive = datetime.fromisoformat(value.strip())
        except ValueError:
            return None
        if naive.tzinfo is not None:
            return naive.astimezone(UTC)
        return naive.replace(tzinfo=self.zone).astimezone(UTC)

    @staticmethod
    def now() -> datetime:
        return datetime.now(UTC)

    def lateness(self, due: datetime | None, now: datetime | None = None) -> tuple[str, bool]:
        """('3 h 10 min late', True), ('due now', False) within a minute either side, or ('due in 5 h', False)."""
        if due is None:
            return "no deadline", False
        delta = (now or self.now()) - as_utc(due)
        if abs(delta.total_seconds()) < 60:
            return "due now", False  # never "0 min late"
        if delta.total_seconds() > 0:
            return f"{human_duration(delta)} late", True
        return f"due in {human_duration(delta)}", False

    def ago(self, dt: datetime | None, now: datetime | None = None) -> str:
        if dt is None:
            return "—"
        delta = (now or self.now()) - as_utc(dt)
        return f"{human_duration(delta)} ago" if delta.total_seconds() >= 60 else "just now"


# Texts the workflow wrote (timeline details, hold messages) carry UTC stamps, enum values and rule ids.
_UTC_SPAN = re.compile(r"(\d{4}-\d{2}-\d{2}) (\d{2}:\d{2})-(\d{2}:\d{2}) UTC")
_UTC_STAMP = re.compile(r"(\d{4}-\d{2}-\d{2}) (\d{2}:\d{2}) UTC")
_ROUTED = re.compile(r" -> (" + "|".join(r.value for r in ROLE_LABELS) + r")$")
_RULE_ID = re.compile(r"\b(?:DOC|SIG|AUTH|EVV|REL|SUP|MV|ORD)-\d{2}\b")
# Enum values only where the workflow writes them, so plain words ("other", "manual") are left alone.
_PUNCH = re.compile(r"\b(" + "|".join(PUNCH_LABELS) + r")\b")
_METHOD = re.compile(r"\bvia (" + "|".join(METHOD_LABELS) + r")\b")
_REASONS = {r.value: label for r, label in REASON_LABELS.items()}
_REASON = re.compile(r"(\(|reason: |reason code )(" + "|".join(_REASONS) + r")\b")
_SERVICE = re.compile(r"\b(" + "|".join(SERVICE_NAMES) + r")\b")


def readable(text: str | None, clock: Clock, with_rule_ids: bool = False) -> str:
    """A workflow-written text in a person's words: times in the agency's zone, punch kinds, methods, reason
    codes and services by name, no routing arrows; rule ids only for the people who work by them."""
    if not text:
        return ""

    def span(m: re.Match) -> str:
        start = datetime.fromisoformat(f"{m[1]}T{m[2]}").replace(tzinfo=UTC)
        end = datetime.fromisoformat(f"{m[1]}T{m[3]}").replace(tzinfo=UTC)
        if end < start:
            end += timedelta(days=1)
        return f"{clock.when(start)}–{clock.clock(end)}"

    def stamp(m: re.Match) -> str:
        return clock.when(datetime.fromisoformat(f"{m[1]}T{m[2]}").replace(tzinfo=UTC))

    text = _UTC_STAMP.sub(stamp, _UTC_SPAN.sub(span, text))
    text = _ROUTED.sub("", text)
    text = _SERVICE.sub(lambda m: SERVICE_NAMES[m[1]], text)
    text = _PUNCH.sub(lambda m: PUNCH_LABELS[m[1]].lower() if m.start() else PUNCH_LABELS[m[1]], text)
    text = _METHOD.sub(lambda m: f"via {METHOD_LABELS[m[1]]}", text)
    text = _REASON.sub(lambda m: m[1] + _REASONS[m[2]].lower(), text)
    text = re.sub(r" in reason_text\b", "", text)  # the form puts the words next to the explanation field
    text = text.replace("reason_text", "the explanation").replace("reason_code", "the reason code")
    if not with_rule_ids:
        text = re.sub(r"\s*\(\s*\)", "", re.sub(r"^\s+|\s+(?=[,.;:)])", "", _RULE_ID.sub("", text)))
        text = re.sub(r"\s{2,}", " ", text).strip()
        text = text[:1].upper() + text[1:]
    return text


def problem_text(message: str, rule_id: str, clock: Clock, with_rule_ids: bool = False) -> str:
    """A hold's message under its heading: the rule id it starts with is already the heading's tag."""
    if message.startswith(rule_id):
        message = message[len(rule_id):].strip()
    text = readable(message, clock, with_rule_ids)
    return text[:1].upper() + text[1:]


CHANGE_MENTION = re.compile(r"\(change #(\d{1,10})\)")


def link_changes(text: str) -> Markup:
    """Text that names a change ("(change #12)", as the workflow writes it) with the change's page linked."""
    return Markup(CHANGE_MENTION.sub(lambda m: f'(<a href="/changes/{m.group(1)}">change #{m.group(1)}</a>)',
                                     str(escape(text))))


def event_detail(kind: str, detail: str, clock: Clock, with_rule_ids: bool = False) -> str:
    """A timeline entry's detail. A hold's own words are told once, under the visit's open holds: its
    events (held, cleared, decided) name the problem, and a decision keeps its reason."""
    rule_id = detail.split(" ", 1)[0]
    if rule_id in RULES and kind in ("hold", "hold_cleared", "exception_approved", "exception_rejected"):
        name = RULES[rule_id] + (f" ({rule_id})" if with_rule_ids else "")
        if kind.startswith("exception_") and ": " in detail:
            return f"{name}: {readable(detail.split(': ', 1)[1], clock, with_rule_ids)}"
        return name
    return readable(detail, clock, with_rule_ids)
