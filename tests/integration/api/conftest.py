"""Fixtures of the court API tests: a live Service on a fresh database, an HTTP client,
an operator token. Helpers the tests call directly stay in court_api_support."""

from court_api_support import api, operator, service

__all__ = ["api", "operator", "service"]
