"""AUTH-03: a physician order's visit frequency, as clinicians write it, and how many visits a week it allows.

Written like `SN 1W4` (one skilled nursing visit a week for 4 weeks), chained `HHA 3W2, 2W2` (3 a week for two
weeks, then 2 a week for two), ranges `PT 2-3W4` (the upper bound counts) and a number of as-needed visits
`SN 1W4, PRN 3`. Weeks count from the start of care (here: the day the order takes effect), not calendar weeks.

Pure: no database, no clock. A mistake is reported with the position (0-based offset of the segment where it
happened) so the office can find it in what they typed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date

from visitflow.models import Discipline

# The disciplines orders name, and the visit disciplines each covers: skilled nursing is an RN's or an LPN's visit.
ORDER_DISCIPLINES: dict[str, frozenset[Discipline]] = {
    "SN": frozenset({Discipline.RN, Discipline.LPN}),
    "PT": frozenset({Discipline.PT}),
    "OT": frozenset({Discipline.OT}),
    "ST": frozenset({Discipline.SLP}),
    "HHA": frozenset({Discipline.HHA}),
    "PCA": frozenset({Discipline.PCA}),
}
ALIASES = {"SLP": "ST", "RN": "SN", "LPN": "SN", "AIDE": "HHA"}
MAX_COUNT = 31  # visits a week (or PRN visits): more than daily-and-then-some is a typing mistake
MAX_WEEKS = 52


class FrequencyError(ValueError):
    """A frequency that cannot be read; the message names the text, the position and what was expected."""

    def __init__(self, text: str, position: int, expected: str) -> None:
        self.text, self.position, self.expected = text, position, expected
        super().__init__(f'"{text}": position {position}: {expected}')


@dataclass(frozen=True)
class Segment:
    """`low-highWweeks`: at most `high` visits a week (at least `low` are planned) for `weeks` weeks."""

    low: int
    high: int
    weeks: int

    def __str__(self) -> str:
        count = str(self.high) if self.low == self.high else f"{self.low}-{self.high}"
        return f"{count}W{self.weeks}"


@dataclass(frozen=True)
class Frequency:
    discipline: str  # SN, PT, OT, ST, HHA, PCA
    segments: tuple[Segment, ...] = ()
    prn: int = 0  # as-needed visits allowed over the weekly bounds, for the whole order
    text: str = field(default="", compare=False)

    @property
    def weeks(self) -> int:
        return sum(s.weeks for s in self.segments)

    def covers(self, discipline: Discipline | str) -> bool:
        return Discipline(discipline) in ORDER_DISCIPLINES[self.discipline]

    def bound_in_week(self, week: int) -> int:
        """Most visits allowed in order week `week` (0 = the first); 0 past the last segment."""
        for segment in self.segments:
            if week < segment.weeks:
                return segment.high
            week -= segment.weeks
        return 0

    def __str__(self) -> str:
        parts = [str(s) for s in self.segments] + ([f"PRN {self.prn}"] if self.prn else [])
        return f"{self.discipline} {', '.join(parts)}"


_SPACE = re.compile(r"\s*")
_WORD = re.compile(r"[A-Za-z]+")
_NUMBER = re.compile(r"\d+")


class _Reader:
    def __init__(self, text: str) -> None:
        self.text, self.at = text, 0

    def skip_space(self) -> None:
        self.at = _SPACE.match(self.text, self.at).end()

    def take(self, pattern: re.Pattern[str]) -> str | None:
        match = pattern.match(self.text, self.at)
        if match is None:
            return None
        self.at = match.end()
        return match.group()

    def peek(self) -> str:
        return self.text[self.at:self.at + 1]

    def found(self) -> str:
        return f', found "{self.peek()}"' if self.peek() else ", found the end"


def _count(reader: _Reader, start: int, what: str) -> int:
    digits = reader.take(_NUMBER)
    if digits is None:
        raise FrequencyError(reader.text, start, f"expected {what}{reader.found()}")
    value = int(digits)
    if not 1 <= value <= (MAX_WEEKS if what == "the number of weeks" else MAX_COUNT):
        limit = MAX_WEEKS if what == "the number of weeks" else MAX_COUNT
        raise FrequencyError(reader.text, start, f"{what} must be 1 to {limit}, not {value}")
    return value


def parse_frequency(text: str) -> Frequency:
    """Read one discipline's frequency, e.g. `HHA 3W2, 2W2` or `PT 2-3W4, PRN 2`."""
    reader = _Reader(text)
    reader.skip_space()
    start = reader.at
    word = reader.take(_WORD)
    if word is None:
        raise FrequencyError(text, start, f"expected a discipline (SN, PT, OT, ST, HHA, PCA){reader.found()}")
    discipline = ALIASES.get(word.upper(), word.upper())
    if discipline not in ORDER_DISCIPLINES:
        raise FrequencyError(text, start, f"unknown discipline {word!r}: use SN, PT, OT, ST, HHA or PCA")
    segments: list[Segment] = []
    prn: int | None = None
    while True:
        reader.skip_space()
        start = reader.at
        if reader.peek() == "" and (segments or prn is not None):
            break
        if reader.text[reader.at:reader.at + 3].upper() == "PRN":
            if prn is not None:
                raise FrequencyError(text, start, "PRN is given twice")
            reader.at += 3
            reader.skip_space()
            prn = _count(reader, start, "the number of PRN visits")
        else:
            low = _count(reader, start, "a visit count like 3W2 or PRN 2")
            high = low
            if reader.peek() == "-":
                reader.at += 1
                high = _count(reader, start, "the upper visit count after -")
                if high < low:
                    raise FrequencyError(text, start, f"the range {low}-{high} runs backwards")
            if reader.peek().upper() != "W":
                raise FrequencyError(text, start, f"expected W after the visit count{reader.found()}")
            reader.at += 1
            segments.append(Segment(low, high, _count(reader, start, "the number of weeks")))
        reader.skip_space()
        if reader.peek() == "":
            break
        if reader.peek() not in ",;":
            raise FrequencyError(text, reader.at, f"expected a comma before the next segment{reader.found()}")
        reader.at += 1
        reader.skip_space()
        if reader.peek() == "":
            raise FrequencyError(text, reader.at, "expected a segment after the comma, found the end")
    if sum(s.weeks for s in segments) > MAX_WEEKS:
        raise FrequencyError(text, 0, f"the segments add up to more than {MAX_WEEKS} weeks")
    return Frequency(discipline=discipline, segments=tuple(segments), prn=prn or 0, text=text.strip())


def order_week(anchor: date, day: date) -> int:
    """0-based order week of `day`: weeks run seven days from `anchor` (start of care), not Monday to Sunday."""
    return (day - anchor).days // 7


@dataclass(frozen=True)
class CountedVisit:
    visit_id: str
    day: date
    sort_key: str  # scheduled start (ISO) then id: who came first in a week takes the weekly places


@dataclass(frozen=True)
class FrequencyVerdict:
    within: bool
    week: int
    week_start: date
    bound: int
    place: int  # this visit is the place-th in its week
    prn_used: int  # PRN visits taken by earlier over-bound visits, this one included when it takes one
    prn: int


def check_visit(freq: Frequency, anchor: date, visits: list[CountedVisit], visit_id: str) -> FrequencyVerdict:
    """Whether visit `visit_id` (one of `visits`: every live visit of the discipline under the order) fits.

    In each order week the first `bound` visits (by scheduled start) are within the frequency; the rest are PRN
    visits, which count against the order's PRN limit in the order they came. A visit before the anchor counts
    as over.
    """
    ordered = sorted(visits, key=lambda v: (v.sort_key, v.visit_id))
    by_week: dict[int, int] = {}
    prn_used = 0
    for v in ordered:
        week = order_week(anchor, v.day)
        by_week[week] = by_week.get(week, 0) + 1
        bound = freq.bound_in_week(week) if week >= 0 else 0
        over = by_week[week] > bound
        if over:
            prn_used += 1
        if v.visit_id == visit_id:
            week_start = date.fromordinal(anchor.toordinal() + 7 * week)
            return FrequencyVerdict(within=not over or prn_used <= freq.prn, week=week, week_start=week_start,
                                    bound=bound, place=by_week[week], prn_used=prn_used, prn=freq.prn)
    raise ValueError(f"visit {visit_id} is not among the visits counted")


def explain(freq: Frequency, verdict: FrequencyVerdict, order_words: str) -> str:
    """Why a visit is over the frequency, in the words an office uses."""
    when = f"order week {verdict.week + 1} (from {verdict.week_start.isoformat()})"
    if verdict.week < 0:
        return f"visit is before {order_words} takes effect"
    allowed = (f"{order_words} allows {verdict.bound} {freq.discipline} visit{'s' if verdict.bound != 1 else ''}"
               f" that week ({freq})")
    prn = (f"and its {freq.prn} PRN visit{'s are' if freq.prn != 1 else ' is'} used" if freq.prn
           else "and no PRN visits")
    return f"visit {verdict.place} of {when}: {allowed} {prn}"
