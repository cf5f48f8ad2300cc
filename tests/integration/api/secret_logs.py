"""Debug logs of the API test suite, and the secrets the suite handled, for the check that
no token, secret or webhook signature is ever logged (test_zz_no_secrets_in_logs.py).

The API tests' conftest puts `CAPTURE` on the root logger at DEBUG for the whole session;
`court_api_support.Api` notes every token and secret it sends or receives in `SECRETS`.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

# What a secret looks like when no test told us its value.
PATTERNS = (
    re.compile(r"rbk_[A-Za-z0-9_-]{40,}"),  # a whole API token (logs show only its prefix)
    re.compile(r"whsec_[A-Za-z0-9_-]{20,}"),  # a generated subscription secret
    re.compile(r"sha256=[0-9a-fA-F]{64}"),  # a webhook signature
    re.compile(r"Bearer\s+[A-Za-z0-9_-]{16,}"),
)
SECRETS: set[str] = set()
DUMP_ENV = "RINGBACK_TEST_SECRET_LOG"  # where the session writes what it captured


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.format(record))
        except Exception:  # a log call with bad arguments: keep what it says anyway
            self.lines.append(repr(record.msg))


CAPTURE = Capture()


def note(*values: object) -> None:
    """Remember secrets the suite handled (strings of 16 characters or more)."""
    for value in values:
        if isinstance(value, str) and len(value) >= 16:
            SECRETS.add(value)


def note_body(body: object) -> None:
    if isinstance(body, dict):
        for key in ("token", "webhook_secret", "secret", "previous_secret"):
            note(body.get(key))


def leaks(lines: list[str], secrets: set[str]) -> list[str]:
    """Every log line that holds a secret, with what it holds."""
    found = []
    for line in lines:
        for pattern in PATTERNS:
            if pattern.search(line):
                found.append(f"{pattern.pattern}: {line[:300]}")
        for secret in secrets:
            if secret in line:
                found.append(f"secret {secret[:6]}…: {line[:300]}")
    return found


_LEVEL: list[int] = []  # the root logger's level before `start`


def start() -> None:
    root = logging.getLogger()
    _LEVEL.append(root.level)
    root.addHandler(CAPTURE)
    root.setLevel(logging.DEBUG)


def stop() -> None:
    """Stop capturing (the check is done; later suites need not log at DEBUG)."""
    root = logging.getLogger()
    root.removeHandler(CAPTURE)
    if _LEVEL:
        root.setLevel(_LEVEL.pop())


def dump() -> None:
    """At the end of a session started with DUMP_ENV: write the capture there."""
    target = os.environ.get(DUMP_ENV)
    if target:
        Path(target).write_text(json.dumps({"lines": CAPTURE.lines, "secrets": sorted(SECRETS)}))
