"""How long preparing a 60 s recording in every codec takes (issue 15: target < 2 s).

The recording is 60 s of 16 kHz speech (the shipped warning's message, resampled with
ffmpeg and repeated), prepared as a court upload is: :func:`ringback.media.encode.prepare_all`
in every encoding this machine's ffmpeg can make (G.711 with numpy; G.722, Opus, AMR-NB
12.2 and AMR-WB 12.65 with one ffmpeg process each, side by side), both AMR packetisations
included. Reports wall time and the CPU time of the ffmpeg processes per run, and their
medians; the figure the target is about is the wall-time median.

    .venv/bin/python bench/prepare_codecs.py [--runs 7] [--seconds 60]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import time

import numpy as np

from ringback.media import shipped
from ringback.media.encode import available_encodings, prepare_all


def speech_16k(seconds: float) -> bytes:
    speech, rate = shipped.read_pcm(shipped.default_warning_path())
    wide = subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "s16le", "-ar", str(rate), "-ac", "1", "-i", "-",
         "-ar", "16000", "-f", "s16le", "-"],
        input=speech, capture_output=True, check=True,
    ).stdout  # fmt: skip
    samples = np.frombuffer(wide, dtype="<i2")
    n = int(seconds * 16000)
    return np.resize(samples, n).astype("<i2").tobytes()


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--seconds", type=float, default=60.0)
    args = ap.parse_args()
    encodings = available_encodings()
    pcm = speech_16k(args.seconds)
    print(f"{args.seconds:g} s at 16 kHz in {', '.join(sorted(encodings))}", flush=True)
    walls, cpus, owns = [], [], []
    for run in range(args.runs):
        cpu0, own0, t0 = children_cpu(), time.process_time(), time.perf_counter()
        audio = prepare_all(pcm, 16000, encodings)
        wall, cpu = time.perf_counter() - t0, children_cpu() - cpu0
        own = time.process_time() - own0
        owns.append(own)
        walls.append(wall)
        cpus.append(cpu)
        print(
            f"run {run + 1}: {wall:.2f} s wall, ffmpeg CPU {cpu:.2f} s, Python CPU {own:.2f} s, "
            f"{audio.frame_count} frames x {len(audio.keys)} frame lists, "
            f"{audio.nbytes / 1e6:.1f} MB",
            flush=True,
        )
    print(
        f"median {statistics.median(walls):.2f} s wall (min {min(walls):.2f}, max "
        f"{max(walls):.2f}); ffmpeg CPU median {statistics.median(cpus):.2f} s, Python CPU "
        f"median {statistics.median(owns):.2f} s",
        flush=True,
    )


if __name__ == "__main__":
    main()
