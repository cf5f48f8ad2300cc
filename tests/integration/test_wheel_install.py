"""ringback as a user installs it: a built wheel in a fresh virtualenv, not the source tree.

The wheel is built the way a release is (`python -m build`: an sdist, then the wheel from
that sdist), installed into a new virtualenv (its dependencies taken from the test's
environment), and `ringback demo` is started from that virtualenv in an empty folder, so
nothing can come from the repository: the shipped warning recording and the SQL migrations
must be in the package.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import sysconfig
import time
import urllib.request
from pathlib import Path

from ringback.registry.embedded import EmbeddedPostgres

PORTS = ("--sip-port", "0", "--http-port", "0")  # any free ports


def _run(*args: str | Path, cwd: Path, env: dict[str, str], timeout: float) -> str:
    result = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, f"{args}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_built_wheel_installs_and_runs_the_demo(repo_root: Path, tmp_path: Path) -> None:
    # The user's environment, minus anything that would reach back into the source tree or
    # configure the service.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("RINGBACK_") and k not in ("PYTHONPATH", "VIRTUAL_ENV")
    }
    dist = tmp_path / "dist"
    _run(
        sys.executable,
        "-m",
        "build",
        "--outdir",
        dist,
        repo_root,
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    (wheel,) = dist.glob("ringback-*.whl")

    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", venv, cwd=tmp_path, env=env, timeout=120)
    # The wheel alone (--no-deps): its dependencies come from the test's own environment
    # through a path entry, so the test does not spend minutes in pip's resolver. A plain
    # path entry runs no .pth file of that directory, so this environment's editable
    # ringback stays out: only the wheel's copy can be imported (checked below).
    site = _run(
        venv / "bin" / "python",
        "-c",
        "import sysconfig; print(sysconfig.get_paths()['purelib'])",
        cwd=tmp_path,
        env=env,
        timeout=60,
    ).strip()
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (Path(site) / "test-dependencies.pth").write_text("".join(f"{d}\n" for d in sorted(deps)))
    _run(
        venv / "bin" / "python",
        "-m",
        "pip",
        "install",
        "-q",
        "--no-deps",
        wheel,
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    installed = _run(
        venv / "bin" / "python",
        "-c",
        "import ringback.media.shipped as s; print(s.__file__); print(s.default_warning_path())",
        cwd=tmp_path,
        env=env,
        timeout=60,
    ).split()
    assert all(Path(p).is_relative_to(venv) for p in installed), installed

    data_dir = tmp_path / "demo"
    stdout, stderr = tmp_path / "demo.out", tmp_path / "demo.err"
    with stdout.open("w") as out, stderr.open("w") as err:
        process = subprocess.Popen(
            [venv / "bin" / "ringback", "demo", "--data-dir", data_dir, *PORTS],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=err,
        )
    try:
        demo_json = data_dir / "demo.json"
        deadline = time.monotonic() + 60
        while not demo_json.exists():
            assert process.poll() is None, f"ringback demo exited:\n{stderr.read_text()}"
            assert time.monotonic() < deadline, f"demo.json never appeared:\n{stderr.read_text()}"
            time.sleep(0.1)
        demo = json.loads(demo_json.read_text())  # written only once the demo is seeded
        with urllib.request.urlopen(demo["http"] + "/healthz", timeout=10) as response:
            assert response.status == 200
            assert json.loads(response.read()) == {"status": "ok"}
        # The shipped recording is served from the installed package.
        url = demo["http"] + "/v1/recordings/default/audio.wav"
        request = urllib.request.Request(
            url, headers={"Authorization": f"Bearer {demo['operator_token']}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
            assert response.read(4) == b"RIFF"
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise
    assert process.returncode == 0, stderr.read_text()
    assert not EmbeddedPostgres(data_dir).running()  # stopped cleanly on exit
