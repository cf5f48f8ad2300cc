"""The compiled SIP scan (src/ringback/_fastsip.c) reads bytes from the network: built again
with AddressSanitizer and UBSan, it must get through 300,000 randomly damaged INVITEs and
ACKs without one out-of-bounds read, use after free or undefined operation."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import ringback

SRC = Path(ringback.__file__).resolve().parent / "_fastsip.c"
FUZZ = Path(__file__).with_name("fastsip_fuzz.py")


def _runtime(name: str) -> str:
    path = subprocess.run(
        ["gcc", f"-print-file-name={name}"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert os.path.isabs(path), f"gcc has no {name} (Debian: libasan8 / libubsan1)"
    return path


def test_the_compiled_scan_is_clean_under_address_and_undefined_sanitizers(
    tmp_path: Path,
) -> None:
    package = tmp_path / "ringback"
    shutil.copytree(SRC.parent, package, ignore=shutil.ignore_patterns("*.so", "__pycache__"))
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
            str(SRC),
            "-o",
            str(package / f"_fastsip{suffix}"),
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
        [sys.executable, "-c", "import ringback._fastsip as f; print(f.__file__)"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().startswith(str(tmp_path)), done.stdout  # the sanitized build
    done = subprocess.run(
        [sys.executable, str(FUZZ), "1", "300000"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    fuzzed, count, _, accepted = done.stdout.split()
    assert (fuzzed, count) == ("fuzzed", "300000")
    assert 0 < int(accepted) < 300000  # some damage is harmless, most is refused
