"""Every line through the columnar machinery: small groups would otherwise go to the Python reader."""

from __future__ import annotations

import pytest

from leopard_etl.sources.fhir import columnar


@pytest.fixture(autouse=True)
def columnar_for_every_group(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(columnar, "SMALL_GROUP", 0)
