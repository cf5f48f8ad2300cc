"""No token, secret or webhook signature in the logs, even at DEBUG.

Named to run last: when the whole API suite ran in this session, its captured debug log is
checked; run on its own, it runs the API suite in a subprocess with debug logging and
checks that. Either way the secrets the suite handled are known by value (tokens issued,
secrets returned, signatures by their shape)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import secret_logs

HERE = Path(__file__).resolve().parent


def test_debug_logs_of_the_api_suite_hold_no_secret(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    others = [
        item for item in request.session.items if Path(str(item.path)).parent.is_relative_to(HERE)
    ]
    if len(others) > 50:  # the suite ran in this session: its log is in the capture
        lines, secrets = list(secret_logs.CAPTURE.lines), set(secret_logs.SECRETS)
        secret_logs.stop()
    else:
        out = tmp_path / "capture.json"
        env = {**os.environ, secret_logs.DUMP_ENV: str(out)}
        run = subprocess.run(
            [
                sys.executable, "-m", "pytest", str(HERE), "-q", "-p", "no:cacheprovider",
                "--deselect", f"{Path(__file__).relative_to(Path.cwd())}"
                "::test_debug_logs_of_the_api_suite_hold_no_secret",
            ],
            env=env, capture_output=True, text=True, timeout=1500,
        )  # fmt: skip
        assert run.returncode == 0, run.stdout[-3000:]
        captured = json.loads(out.read_text())
        lines, secrets = captured["lines"], set(captured["secrets"])
    # The capture is real: debug records of the service, and secrets the suite used.
    assert any(line.startswith("DEBUG ") for line in lines)
    assert any("HTTP listening" in line for line in lines)
    assert sum(s.startswith("rbk_") for s in secrets) >= 20
    assert not secret_logs.leaks(lines, secrets)
