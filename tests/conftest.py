"""Shared fixtures: paths to the golden vectors copied into tests/golden/."""

from __future__ import annotations

from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
GOLDEN = TESTS / "golden"
REPO = TESTS.parent


@pytest.fixture
def golden() -> Path:
    return GOLDEN
