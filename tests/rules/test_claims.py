import pytest

from visitflow.rules import npi_is_valid


def test_clm_02_known_good_npi() -> None:
    assert npi_is_valid("1234567893")


@pytest.mark.parametrize("npi", ["1234567890", "123456789", "12345678933", "12345678a3", " 234567893", "",
                                 "١٢٣٤٥٦٧٨٩٣"])
def test_clm_02_bad_npi(npi: str) -> None:
    assert not npi_is_valid(npi)


def test_clm_02_exactly_one_check_digit_fits() -> None:
    assert [d for d in "0123456789" if npi_is_valid("123456789" + d)] == ["3"]
