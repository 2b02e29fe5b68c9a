"""AUTH-03: reading order frequencies (property tests) and counting visits against them."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from visitflow.rules.frequency import (
    MAX_COUNT,
    CountedVisit,
    Frequency,
    FrequencyError,
    Segment,
    check_visit,
    parse_frequency,
)

DISCIPLINES = ["SN", "PT", "OT", "ST", "HHA", "PCA"]


@st.composite
def frequencies(draw) -> Frequency:
    segments = []
    for _ in range(draw(st.integers(1, 4))):
        low = draw(st.integers(1, MAX_COUNT))
        high = draw(st.integers(low, MAX_COUNT))
        segments.append(Segment(low, high, draw(st.integers(1, 10))))
    return Frequency(discipline=draw(st.sampled_from(DISCIPLINES)), segments=tuple(segments),
                     prn=draw(st.integers(0, 5)))


@given(frequencies(), st.sampled_from([", ", ",", " , ", "; "]))
def test_what_is_written_is_read_back(freq, comma):
    parts = [str(s) for s in freq.segments] + ([f"PRN {freq.prn}"] if freq.prn else [])
    text = f"{freq.discipline} {comma.join(parts)}"
    assert parse_frequency(text) == freq
    assert parse_frequency(str(freq)) == freq


@given(frequencies(), st.integers(0, 60))
def test_the_bound_of_a_week_is_its_segments_upper_count(freq, week):
    expected, start = 0, 0
    for s in freq.segments:
        if start <= week < start + s.weeks:
            expected = s.high
        start += s.weeks
    assert freq.bound_in_week(week) == expected


@given(st.text(max_size=30))
def test_anything_typed_is_read_or_refused_with_a_position(text):
    try:
        parse_frequency(text)
    except FrequencyError as err:
        assert 0 <= err.position <= len(text)
        assert str(err).startswith(f'"{text}": position {err.position}: ')


@pytest.mark.parametrize(("text", "message"), [
    ("HHA 3W2, 2Q2", '"HHA 3W2, 2Q2": position 9: expected W after the visit count, found "Q"'),
    ("SN 3W", '"SN 3W": position 3: expected the number of weeks, found the end'),
    ("SN 3-1W2", '"SN 3-1W2": position 3: the range 3-1 runs backwards'),
    ("SN 1W2 2W2", '"SN 1W2 2W2": position 7: expected a comma before the next segment, found "2"'),
    ("XX 1W2", '"XX 1W2": position 0: unknown discipline \'XX\': use SN, PT, OT, ST, HHA or PCA'),
    ("SN 0W2", '"SN 0W2": position 3: a visit count like 3W2 or PRN 2 must be 1 to 31, not 0'),
    ("SN 1W4, PRN 2, PRN 3", '"SN 1W4, PRN 2, PRN 3": position 15: PRN is given twice'),
])
def test_a_mistake_says_where_and_what(text, message):
    with pytest.raises(FrequencyError) as info:
        parse_frequency(text)
    assert str(info.value) == message


def test_examples_from_orders():
    assert parse_frequency("HHA 3W2, 2W2").segments == (Segment(3, 3, 2), Segment(2, 2, 2))
    assert parse_frequency("pt 2-3w4").segments == (Segment(2, 3, 4),)
    assert parse_frequency("SN 1W4, PRN 3").prn == 3
    assert parse_frequency("SLP 1W2").discipline == "ST"


START = date(2026, 11, 2)  # a Monday; order weeks still run from the start date, whatever the weekday


def visits(*days: int) -> list[CountedVisit]:
    return [CountedVisit(f"v{i}", START + timedelta(days=d), f"{START + timedelta(days=d)}T{i:02d}")
            for i, d in enumerate(days)]


def test_visits_over_the_weekly_bound_use_the_prn_visits_in_order():
    freq = parse_frequency("HHA 2W1, 1W1, PRN 1")
    vs = visits(0, 1, 2, 7, 8)  # week 1: three visits (bound 2); week 2: two (bound 1)
    verdicts = {v.visit_id: check_visit(freq, START, vs, v.visit_id) for v in vs}
    assert [verdicts[f"v{i}"].within for i in range(5)] == [True, True, True, True, False]
    assert verdicts["v2"].prn_used == 1 and verdicts["v4"].prn_used == 2
    assert verdicts["v4"].week == 1 and verdicts["v4"].place == 2


@given(st.lists(st.integers(0, 27), max_size=20), frequencies())
def test_no_more_visits_pass_than_the_bounds_and_prn_allow(days, freq):
    vs = visits(*days)
    passed = [v for v in vs if check_visit(freq, START, vs, v.visit_id).within]
    allowed = sum(min(freq.bound_in_week(w), sum(1 for d in days if d // 7 == w)) for w in range(4))
    assert len(passed) <= allowed + freq.prn
    assert len(passed) == min(len(vs), allowed + freq.prn)
