"""Bar geometry for the dashboard's server-rendered SVG charts (no chart library, no JavaScript).

Widths are percentages of the chart's widest bar, so the SVG bars stretch with the page while the labels
and numbers stay real, readable HTML text at any width.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Bar:
    label: str
    value: float
    width: float  # percent of the chart width
    href: str | None = None
    note: str = ""
    tone: str = "primary"
    shown: str | None = None  # the value as printed (e.g. dollars), when not a plain count


def bars(items: list[tuple[str, float]], tones: dict[str, str] | None = None,
         hrefs: dict[str, str] | None = None, notes: dict[str, str] | None = None,
         shown=None) -> list[Bar]:
    """`shown`, if given, prints each value (e.g. cents as dollars)."""
    top = max((value for _, value in items), default=0) or 1
    return [Bar(label=label, value=value, width=round(100 * value / top, 2),
                href=(hrefs or {}).get(label), note=(notes or {}).get(label, ""),
                tone=(tones or {}).get(label, "primary"), shown=shown(value) if shown else None)
            for label, value in items]


@dataclass
class Segment:
    label: str
    value: int
    x: float
    width: float
    tone: str


@dataclass
class StackedBar:
    label: str
    note: str
    total: int
    segments: list[Segment]


AGE_TONES = ["age-0", "age-1", "age-2", "age-3"]  # fresh to stale: the legend says which is which


def stacked(rows: list[tuple[str, str, list[int]]], bucket_labels: list[str]) -> list[StackedBar]:
    """One bar per row, split into buckets; every row on the same scale so lengths compare."""
    top = max((sum(buckets) for _, _, buckets in rows), default=0) or 1
    result = []
    for label, note, buckets in rows:
        x, segments = 0.0, []
        for i, value in enumerate(buckets):
            width = round(100 * value / top, 2)
            if value:
                segments.append(Segment(bucket_labels[i], value, x, width, AGE_TONES[i % len(AGE_TONES)]))
            x += width
        result.append(StackedBar(label, note, sum(buckets), segments))
    return result
