import pytest
from hypothesis import given
from hypothesis import strategies as st

from visitflow.models import GeoPoint
from visitflow.rules import describe_distance, distance_m

from .conftest import HOME, moved


def test_distance_one_degree_of_latitude() -> None:
    assert distance_m(GeoPoint(lat=0, lon=0), GeoPoint(lat=1, lon=0)) == pytest.approx(111_195.08, abs=0.1)


def test_distance_known_cities() -> None:
    austin, houston = GeoPoint(lat=30.2672, lon=-97.7431), GeoPoint(lat=29.7604, lon=-95.3698)
    assert distance_m(austin, houston) == pytest.approx(235_000, rel=0.01)


def test_distance_matches_the_test_builder_offset() -> None:
    assert distance_m(HOME, moved(HOME, north_m=300, east_m=400)) == pytest.approx(500, rel=1e-3)


def test_distance_antipodes_is_half_the_circumference() -> None:
    assert distance_m(GeoPoint(lat=0, lon=0), GeoPoint(lat=0, lon=180)) == pytest.approx(20_015_115, rel=1e-6)


@pytest.mark.parametrize(("metres", "words"),
                         [(0, "0 m"), (640.4, "640 m"), (999.4, "999 m"), (999.6, "1.0 km"), (2300, "2.3 km"),
                          (12_345, "12.3 km")])
def test_describe_distance(metres: float, words: str) -> None:
    assert describe_distance(metres) == words


points = st.builds(GeoPoint, lat=st.floats(min_value=-90, max_value=90), lon=st.floats(min_value=-180, max_value=180))


@given(a=points, b=points)
def test_evv_02_property_distance_is_symmetric(a: GeoPoint, b: GeoPoint) -> None:
    assert distance_m(a, b) == distance_m(b, a)


@given(a=points)
def test_evv_02_property_distance_to_itself_is_zero(a: GeoPoint) -> None:
    assert distance_m(a, a) == 0


@given(a=points, b=points)
def test_evv_02_property_distance_is_bounded_by_half_the_circumference(a: GeoPoint, b: GeoPoint) -> None:
    assert 0 <= distance_m(a, b) <= 20_015_115.1
