"""Fixtures of the court API tests: a live Service on a fresh database, an HTTP client,
an operator token. Helpers the tests call directly stay in court_api_support.

Every log record of the session, down to DEBUG, is captured for the check that no secret
is ever logged (`secret_logs`, `test_zz_no_secrets_in_logs.py`)."""

from collections.abc import Iterator

import pytest
import secret_logs
from court_api_support import api, operator, service

__all__ = ["api", "operator", "service"]


@pytest.fixture(scope="session", autouse=True)
def debug_logs_captured() -> Iterator[None]:
    secret_logs.start()
    yield
    secret_logs.stop()
    secret_logs.dump()
