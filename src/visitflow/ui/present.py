"""How the UI words things: local times, durations, lateness, safe HTML ids. Labels are in `catalogue`."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from visitflow.models import as_utc


def human_duration(delta: timedelta) -> str:
    """'2 d 3 h', '5 h 10 min', '12 min' — the two largest units a person cares about."""
    minutes = int(abs(delta.total_seconds()) // 60)
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
        """('3 h 10 min late', True) or ('due in 5 h', False)."""
        if due is None:
            return "no deadline", False
        delta = (now or self.now()) - as_utc(due)
        if delta.total_seconds() > 0:
            return f"{human_duration(delta)} late", True
        return f"due in {human_duration(delta)}", False

    def ago(self, dt: datetime | None, now: datetime | None = None) -> str:
        if dt is None:
            return "—"
        delta = (now or self.now()) - as_utc(dt)
        return f"{human_duration(delta)} ago" if delta.total_seconds() >= 60 else "just now"
