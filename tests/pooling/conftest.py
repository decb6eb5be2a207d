"""One synthetic 8-centre cohort for every pooling test, generated and run once per session."""

from __future__ import annotations

import pytest
from pooling_cohort import Cohort, build_cohort


@pytest.fixture(scope="session")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Cohort:
    return build_cohort(tmp_path_factory.mktemp("pooling"))
