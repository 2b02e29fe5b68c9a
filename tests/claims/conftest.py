from __future__ import annotations

from pathlib import Path

import pytest

FILES = Path(__file__).parent / "files"


@pytest.fixture
def sample():
    """The text of a sample file under tests/claims/files/."""
    return lambda name: (FILES / name).read_text()
