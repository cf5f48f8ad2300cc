"""Upload-to-ready benchmark: POST /v1/recordings of a 60 s MP3 until the 201 (stored, ready).

Starts a Service on a throw-away embedded PostgreSQL, makes a 60 s 44.1 kHz stereo MP3 of
speech over a tone with ffmpeg/espeak-ng, uploads it `--runs` times one after another and
then `--parallel` at once, and reports the time from starting the request to the 201
(probe, decode + anti-alias resample in ffmpeg, trim, BS.1770 normalise + limit, store).

    .venv/bin/python bench/api_upload.py [--runs 10] [--parallel 4]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import aiohttp

from ringback.config import load_config
from ringback.registry.common import Principal
from ringback.registry.embedded import EmbeddedPostgres
from ringback.server import Service

WHO = Principal("bench", "operator")


def make_mp3(folder: Path) -> Path:
    speech = folder / "speech.wav"
    text = "This number is listed by the court for an unpaid judgment debt. " * 8
    subprocess.run(["espeak-ng", "-w", str(speech), text], check=True)
    out = folder / "warning60.mp3"
    subprocess.run(
        [
            "ffmpeg", "-v", "error", "-y",
            "-f", "lavfi", "-i", "sine=frequency=440:duration=60:sample_rate=44100",
            "-stream_loop", "-1", "-i", str(speech),
            "-filter_complex", "[0]volume=0.2[a];[1]aresample=44100[b];"
            "[a][b]amix=inputs=2:duration=first",
            "-ac", "2", "-c:a", "libmp3lame", "-b:a", "128k", str(out),
        ],
        check=True,
    )  # fmt: skip
    return out


async def upload(http: aiohttp.ClientSession, url: str, token: str, data: bytes) -> float:
    form = aiohttp.FormData()
    form.add_field("file", data, filename="warning60.mp3", content_type="audio/mpeg")
    start = time.perf_counter()
    async with http.post(url, data=form, headers={"Authorization": f"Bearer {token}"}) as r:
        body = await r.json()
        assert r.status == 201, body
    return time.perf_counter() - start


async def main(runs: int, parallel: int) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="ringback-bench-upload-"))
    pg = EmbeddedPostgres(tmp / "pg")
    dsn = await asyncio.to_thread(pg.start)
    config = load_config(None, env={})
    config.database.url = dsn
    config.http.port = 0
    config.sip.port = 0
    config.log.level = "warning"
    config.events.enabled = False
    service = Service(config)
    await service.start()
    try:
        _, token, _ = await service.store.courts.create("Bench Court", WHO)
        mp3 = await asyncio.to_thread(make_mp3, tmp)
        data = mp3.read_bytes()
        print(f"file: 60 s MP3, {len(data) / 1e6:.2f} MB")
        url = f"http://127.0.0.1:{service.http_port}/v1/recordings"
        async with aiohttp.ClientSession() as http:
            first = await upload(http, url, token, data)
            times = [await upload(http, url, token, data) for _ in range(runs)]
            start = time.perf_counter()
            together = await asyncio.gather(
                *(upload(http, url, token, data) for _ in range(parallel))
            )
            wall = time.perf_counter() - start
        times.sort()
        print(f"first upload (cold imports):     {first:.3f} s")
        print(
            f"sequential x{runs}: median {statistics.median(times):.3f} s, "
            f"min {times[0]:.3f} s, max {times[-1]:.3f} s"
        )
        print(
            f"{parallel} at once: max {max(together):.3f} s each, wall {wall:.3f} s "
            f"(max_concurrent_decodes = {config.recordings.max_concurrent_decodes})"
        )
    finally:
        await service.stop()
        await asyncio.to_thread(pg.stop)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--parallel", type=int, default=4)
    args = parser.parse_args()
    asyncio.run(main(args.runs, args.parallel))
