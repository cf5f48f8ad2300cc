"""The compiled modules read bytes from the network: built again with AddressSanitizer and
UBSan, the SIP scan (src/ringback/_fastsip.c) must get through 300,000 randomly damaged
INVITEs and ACKs, and the batched UDP I/O (src/ringback/_udpio.c) through thousands of
random datagrams, batch sizes and bad destinations, without one out-of-bounds access, use
after free or undefined operation."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import ringback

PACKAGE = Path(ringback.__file__).resolve().parent


def _runtime(name: str) -> str:
    path = subprocess.run(
        ["gcc", f"-print-file-name={name}"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert os.path.isabs(path), f"gcc has no {name} (Debian: libasan8 / libubsan1)"
    return path


def sanitized(module: str, tmp_path: Path) -> dict[str, str]:
    """Build ringback.`module` with the sanitizers into a copy of the package under
    `tmp_path`; the environment that runs Python with it."""
    package = tmp_path / "ringback"
    shutil.copytree(PACKAGE, package, ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    subprocess.run(
        [
            "gcc",
            "-shared",
            "-fPIC",
            "-O1",
            "-g",
            "-fsanitize=address,undefined",
            "-fno-sanitize-recover=all",
            "-fno-omit-frame-pointer",
            f"-I{sysconfig.get_paths()['include']}",
            str(PACKAGE / f"{module}.c"),
            "-o",
            str(package / f"{module}{suffix}"),
        ],
        check=True,
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(tmp_path),
        "PYTHONMALLOC": "malloc",  # every object from malloc, so ASan sees each bound
        "LD_PRELOAD": f"{_runtime('libasan.so')}:{_runtime('libubsan.so')}",
        "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=0:exitcode=66",
        "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1:exitcode=67",
    }
    done = subprocess.run(
        [sys.executable, "-c", f"import ringback.{module} as m; print(m.__file__)"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().startswith(str(tmp_path)), done.stdout  # the sanitized build
    return env


def test_the_compiled_scan_is_clean_under_address_and_undefined_sanitizers(
    tmp_path: Path,
) -> None:
    env = sanitized("_fastsip", tmp_path)
    done = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("fastsip_fuzz.py")), "1", "300000"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    fuzzed, count, _, accepted = done.stdout.split()
    assert (fuzzed, count) == ("fuzzed", "300000")
    assert 0 < int(accepted) < 300000  # some damage is harmless, most is refused


def test_the_batched_udp_io_is_clean_under_address_and_undefined_sanitizers(
    tmp_path: Path,
) -> None:
    env = sanitized("_udpio", tmp_path)
    done = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("udpio_fuzz.py")), "1", "300"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    word, count = done.stdout.split()
    assert word == "received" and int(count) > 5000
