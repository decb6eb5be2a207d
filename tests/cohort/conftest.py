"""Fixtures of the cohort rule tests: the project's own mappings, loaded once."""

from __future__ import annotations

import pytest

from leopard_etl.mappings import Mappings, load_mappings


@pytest.fixture(scope="session")
def mappings() -> Mappings:
    return load_mappings()
