"""Distances between a punch and the service address (EVV-02)."""

from __future__ import annotations

import math

from visitflow.models import GeoPoint

EARTH_RADIUS_M = 6_371_008.8  # mean earth radius (IUGG)


def distance_m(a: GeoPoint, b: GeoPoint) -> float:
    """Great-circle (haversine) distance in metres."""
    lat_a, lat_b = math.radians(a.lat), math.radians(b.lat)
    # abs() keeps the result exactly symmetric in a and b.
    half_dlat = abs(lat_b - lat_a) / 2
    half_dlon = abs(math.radians(b.lon) - math.radians(a.lon)) / 2
    h = math.sin(half_dlat) ** 2 + math.cos(lat_a) * math.cos(lat_b) * math.sin(half_dlon) ** 2
    # Clamp: rounding can push h a hair above 1 for antipodal points.
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(min(1.0, max(0.0, h))))


def describe_distance(metres: float) -> str:
    """A distance as a person says it: "640 m", "2.3 km"."""
    if round(metres) < 1000:
        return f"{round(metres)} m"
    return f"{metres / 1000:.1f} km"
