"""Fixtures of the court API tests: a live Service on a fresh database, an HTTP client,
an operator token. Helpers the tests call directly stay in court_api_support.

Every log record of the session, down to DEBUG, is captured for the check that no secret
is ever logged (`secret_logs`, `test_zz_no_secrets_in_logs.py`)."""

import logging
from collections.abc import Iterator

import pytest
import secret_logs
from court_api_support import api, operator, service

__all__ = ["api", "operator", "service"]


@pytest.fixture(scope="session", autouse=True)
def debug_logs_captured() -> Iterator[None]:
    root = logging.getLogger()
    level = root.level
    root.addHandler(secret_logs.CAPTURE)
    root.setLevel(logging.DEBUG)
    yield
    root.removeHandler(secret_logs.CAPTURE)
    root.setLevel(level)
    secret_logs.dump()
