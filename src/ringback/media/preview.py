"""What a recording sounds like to a caller, as a WAV file: the stored PCM, G.711 as sent
(a WAV with the μ-law/A-law format tag), or the audio after G.722, Opus, AMR-NB or AMR-WB
(encoded with the same ffmpeg settings as the warning is prepared with, then decoded).
Blocking (ffmpeg): run it in a thread."""

from __future__ import annotations

import hashlib
import struct
import subprocess
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Final

import numpy as np

from ringback.media.codecs import ENCODINGS
from ringback.media.encode import EncodeError, encode_args
from ringback.media.g711 import alaw_encode, ulaw_encode

__all__ = ["PREVIEW_CODECS", "preview_wav", "resample", "wav_bytes"]

# The API's `codec` values and the encoding each stands for.
_THROUGH: Final = {"g722": "G722", "opus": "opus", "amr": "AMR@7", "amr-wb": "AMR-WB@2"}
PREVIEW_CODECS: Final = ("pcm", "pcmu", "pcma", *_THROUGH)
_DECODED_RATE: Final = {"g722": 16000, "opus": 16000, "amr": 8000, "amr-wb": 16000}
_FFMPEG: Final = ("ffmpeg", "-nostdin", "-hide_banner", "-v", "error", "-y")
_CACHED: Final = 32  # previews made through ffmpeg, kept (a page plays the same ones again)
_cache: OrderedDict[tuple[bytes, int, str], bytes] = OrderedDict()
_cache_lock = threading.Lock()


def wav_bytes(pcm: bytes, codec: str = "pcm", rate: int = 8000) -> bytes:
    """A mono WAV: 16-bit PCM at ``rate``, or G.711 μ-law (tag 7) / A-law (tag 6) of 8 kHz
    ``pcm`` (``rate`` must then be 8000)."""
    if codec == "pcm":
        fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * 2, 2, 16)
        chunks = [b"fmt " + struct.pack("<I", len(fmt)) + fmt]
        data = pcm
    else:
        if rate != 8000:
            raise ValueError("G.711 is 8 kHz")
        samples = np.frombuffer(pcm, dtype="<i2").astype(np.int16)
        data = ulaw_encode(samples) if codec == "pcmu" else alaw_encode(samples)
        tag = 7 if codec == "pcmu" else 6
        fmt = struct.pack("<HHIIHHH", tag, 1, 8000, 8000, 1, 8, 0)
        chunks = [
            b"fmt " + struct.pack("<I", len(fmt)) + fmt,
            b"fact" + struct.pack("<II", 4, len(data)),
        ]
    pad = b"\x00" if len(data) % 2 else b""
    chunks.append(b"data" + struct.pack("<I", len(data)) + data + pad)
    body = b"WAVE" + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _ffmpeg(args: list[str]) -> None:
    done = subprocess.run([*_FFMPEG, *args], capture_output=True, timeout=60, check=False)
    if done.returncode != 0:
        raise EncodeError(f"ffmpeg: {done.stderr.decode(errors='replace')[-300:]}")


def resample(pcm: bytes, rate: int, to: int) -> bytes:
    """Mono s16le ``pcm`` from ``rate`` to ``to`` Hz with ffmpeg's SoX resampler."""
    if rate == to:
        return pcm
    with tempfile.TemporaryDirectory(prefix="ringback-preview-") as tmp:
        src, out = Path(tmp) / "in.raw", Path(tmp) / "out.raw"
        src.write_bytes(pcm)
        _ffmpeg(
            ["-f", "s16le", "-ar", str(rate), "-ac", "1", "-i", str(src),
             "-af", "aresample=resampler=soxr:precision=28", "-ar", str(to), "-f", "s16le",
             str(out)]
        )  # fmt: skip
        return out.read_bytes()


def preview_wav(pcm: bytes, rate: int, codec: str = "pcm") -> bytes:
    """``pcm`` (mono s16le at ``rate``) as a caller offering ``codec`` hears it (the last
    few made with ffmpeg are kept: a recording is immutable, its digest is the key)."""
    if codec == "pcm":
        return wav_bytes(pcm, "pcm", rate)
    key = (hashlib.sha256(pcm).digest(), rate, codec)
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    wav = _made(pcm, rate, codec)
    with _cache_lock:
        _cache[key] = wav
        while len(_cache) > _CACHED:
            _cache.popitem(last=False)
    return wav


def _made(pcm: bytes, rate: int, codec: str) -> bytes:
    if codec in ("pcmu", "pcma"):
        return wav_bytes(resample(pcm, rate, 8000), codec, 8000)
    if codec not in _THROUGH:
        raise ValueError(f"unknown codec {codec!r}")
    encoding = ENCODINGS[_THROUGH[codec]]
    out_rate = _DECODED_RATE[codec]
    with tempfile.TemporaryDirectory(prefix="ringback-preview-") as tmp:
        src, coded, out = Path(tmp) / "in.raw", Path(tmp) / "coded", Path(tmp) / "out.raw"
        src.write_bytes(pcm)
        _ffmpeg(encode_args(encoding, src, coded, rate)[len(_FFMPEG) :])
        demuxer = {"g722": ["-f", "g722"], "opus": ["-f", "ogg"]}.get(codec, ["-f", "amr"])
        _ffmpeg(
            [*demuxer, "-i", str(coded), "-ac", "1", "-ar", str(out_rate), "-f", "s16le", str(out)]
        )
        return wav_bytes(out.read_bytes(), "pcm", out_rate)
