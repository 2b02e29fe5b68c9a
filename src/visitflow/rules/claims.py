"""Claim edits pyx12 does not make (CLM-*)."""

from __future__ import annotations

# NPIs are ISO 7812 card numbers under the health-industry prefix 80840 (CMS NPI check digit rule).
_NPI_PREFIX = "80840"


def npi_is_valid(npi: str) -> bool:
    """CLM-02: ten ASCII digits whose last digit is the Luhn check digit over 80840 + the first nine."""
    if len(npi) != 10 or not (npi.isascii() and npi.isdigit()):
        return False
    total = 0
    # Luhn from the right over prefix + all ten digits: the check digit itself is position 0 (not doubled).
    for position, char in enumerate(reversed(_NPI_PREFIX + npi)):
        digit = int(char)
        if position % 2 == 1:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10 == 0
