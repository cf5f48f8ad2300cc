"""Prepare a recording in every encoding at once: ffmpeg for G.722, Opus and AMR, numpy for
G.711. Blocking (subprocesses, one per encoding, run side by side): call it in a thread,
never on the event loop, and never per call — the result is cached and shared.

Timing: 60 s of 16 kHz speech in all six encodings takes about 3 s of CPU in the ffmpeg
processes (AMR-WB the longest, under 1 s), so about 1.5 s on two idle cores
(``bench/prepare_codecs.py``, ``bench/RESULTS.md``).
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Final

import numpy as np

from ringback.media import amr
from ringback.media.codecs import ENCODINGS, G711, Encoding
from ringback.media.g711 import alaw_encode, ulaw_encode
from ringback.media.ogg import opus_packets
from ringback.media.prepared import FRAME_MS, PreparedAudio

__all__ = [
    "EncodeError",
    "available_encodings",
    "encode_args",
    "encode_frames",
    "prepare_all",
]

_FFMPEG: Final = ("ffmpeg", "-nostdin", "-hide_banner", "-v", "error", "-y")
_BITRATE: Final = {"AMR@7": "12200", "AMR-WB@2": "12650", "opus": "32000"}


class EncodeError(RuntimeError):
    """ffmpeg failed or wrote something unreadable for one encoding."""


def available_encodings(ffmpeg: str = "ffmpeg") -> frozenset[str]:
    """The encodings this machine's ffmpeg can make (G.711 always)."""
    try:
        out = subprocess.run(
            [ffmpeg, "-hide_banner", "-encoders"], capture_output=True, timeout=10, check=False
        ).stdout.decode(errors="replace")
    except (OSError, subprocess.SubprocessError):
        return G711
    names = {line.split()[1] for line in out.splitlines() if len(line.split()) > 1}
    return G711 | {e.key for e in ENCODINGS.values() if e.encoder and e.encoder in names}


def encode_args(e: Encoding, source: Path, out: Path, rate: int) -> list[str]:
    """The ffmpeg command that encodes mono s16le ``source`` at ``rate`` as ``e``."""
    args = [*_FFMPEG, "-f", "s16le", "-ar", str(rate), "-ac", "1", "-i", str(source)]
    resample = "aresample=resampler=soxr:precision=28"
    if e.key == "G722":
        args += ["-af", resample, "-ar", "16000", "-c:a", "g722", "-f", "g722"]
    elif e.key == "opus":
        args += ["-af", resample, "-ar", "48000", "-c:a", "libopus", "-b:a", _BITRATE["opus"]]
        args += ["-frame_duration", "20", "-application", "voip", "-f", "ogg"]
    elif e.amr is not None:
        args += ["-af", resample, "-ar", str(e.amr.clock_rate), "-c:a", e.encoder]
        args += ["-b:a", _BITRATE[e.key], "-f", "amr"]
    else:  # 8 kHz PCM for the G.711 tables
        args += ["-af", resample, "-ar", "8000", "-f", "s16le"]
    return [*args, str(out)]


def _frames(e: Encoding, data: bytes) -> dict[str, list[bytes]]:
    if e.key == "G722":
        return {e.key: [data[i : i + 160] for i in range(0, len(data) - 159, 160)]}
    if e.key == "opus":
        return {e.key: opus_packets(data)}
    if e.amr is not None:
        frames = amr.parse_storage(data, e.amr)
        wrong = {f.frame_type for f in frames} - {e.mode}
        if wrong:
            raise EncodeError(f"{e.key}: ffmpeg wrote frame types {sorted(wrong)}")
        return {
            f"{e.key}/oa": [amr.packetize(f, e.amr, octet_aligned=True) for f in frames],
            f"{e.key}/be": [amr.packetize(f, e.amr, octet_aligned=False) for f in frames],
        }
    raise AssertionError(e.key)


def _fit(frames: list[bytes], count: int) -> list[bytes]:
    """Exactly ``count`` frames: an encoder's extra flush frame is dropped, a missing last
    one repeats the one before (the end of a recording is its padding silence)."""
    if len(frames) >= count:
        return frames[:count]
    if not frames:
        raise EncodeError("the encoder wrote no frames")
    return frames + [frames[-1]] * (count - len(frames))


def encode_frames(
    pcm: bytes, rate: int, encodings: Iterable[str], *, timeout_s: float = 30.0
) -> dict[str, list[bytes]]:
    """20 ms RTP payloads of mono s16le ``pcm`` at ``rate`` Hz for each encoding, keyed by
    frames key; padded with silence to whole frames. ``EncodeError`` if ffmpeg fails."""
    wanted = [ENCODINGS[k] for k in encodings if k in ENCODINGS]  # not "SRTP" & co
    step = rate // 50
    samples = np.frombuffer(pcm, dtype="<i2")
    count = -(-samples.size // step)
    padded = np.zeros(count * step, dtype="<i2")
    padded[: samples.size] = samples
    out: dict[str, list[bytes]] = {}
    g711 = [e for e in wanted if e.key in G711]
    others = [e for e in wanted if e.key not in G711]
    with tempfile.TemporaryDirectory(prefix="ringback-encode-") as tmp:
        source = Path(tmp) / "in.raw"
        source.write_bytes(padded.tobytes())
        jobs: list[tuple[Encoding | None, Path, subprocess.Popen[bytes]]] = []
        try:
            if g711 and rate != 8000:
                target = Path(tmp) / "pcm8k.raw"
                args = encode_args(ENCODINGS["PCMU"], source, target, rate)
                jobs.append((None, target, subprocess.Popen(args, stderr=subprocess.PIPE)))
            for e in others:
                target = Path(tmp) / f"{e.key}.out"
                args = encode_args(e, source, target, rate)
                jobs.append((e, target, subprocess.Popen(args, stderr=subprocess.PIPE)))
            for job, target, proc in jobs:
                _, err = proc.communicate(timeout=timeout_s)
                name = job.key if job is not None else "PCM 8 kHz"
                if proc.returncode != 0:
                    raise EncodeError(f"ffmpeg {name}: {err.decode(errors='replace')[-300:]}")
                if job is not None:
                    try:
                        for key, frames in _frames(job, target.read_bytes()).items():
                            out[key] = _fit(frames, count)
                    except ValueError as exc:
                        raise EncodeError(f"{name}: {exc}") from exc
                else:
                    pcm8k = np.frombuffer(target.read_bytes(), dtype="<i2")
                    padded8k = np.zeros(count * 160, dtype="<i2")
                    padded8k[: min(pcm8k.size, padded8k.size)] = pcm8k[: padded8k.size]
                    _g711(g711, padded8k, out)
        except subprocess.TimeoutExpired as exc:
            raise EncodeError(f"ffmpeg took longer than {timeout_s:g} s") from exc
        finally:
            for _, _, proc in jobs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
    if g711 and rate == 8000:
        _g711(g711, padded, out)
    return out


def _g711(wanted: list[Encoding], pcm8k: np.ndarray, out: dict[str, list[bytes]]) -> None:
    for e in wanted:
        encoded = (ulaw_encode if e.key == "PCMU" else alaw_encode)(pcm8k)
        out[e.key] = [encoded[i : i + 160] for i in range(0, len(encoded), 160)]


def prepare_all(
    pcm: bytes,
    rate: int,
    encodings: Iterable[str],
    *,
    repeat: int = 1,
    gap_ms: int = 0,
) -> PreparedAudio:
    """``pcm`` (mono s16le at ``rate``) prepared in every one of ``encodings``, laid out
    ``repeat`` times with ``gap_ms`` of silence between (encoded with it: each codec's own
    silence, its state carried on)."""
    if repeat < 1:
        raise ValueError(f"repeat must be >= 1, got {repeat}")
    if not pcm or len(pcm) % 2:
        raise ValueError("empty recording or odd byte count")
    step = rate // 50
    recording_frames = -(-(len(pcm) // 2) // step)
    gap_frames = -(-gap_ms // FRAME_MS)
    # the gap, and at least one frame of each codec's own silence (to loop with)
    body = np.zeros((recording_frames + max(gap_frames, 1)) * step, dtype="<i2")
    body[: len(pcm) // 2] = np.frombuffer(pcm, dtype="<i2")
    encoded = encode_frames(body.tobytes(), rate, encodings)
    return PreparedAudio.from_encoded(
        encoded, recording_frames=recording_frames, gap_frames=gap_frames, repeat=repeat
    )
