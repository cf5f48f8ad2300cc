"""Received G.722, Opus, AMR-NB and AMR-WB RTP payloads → 8 kHz PCM, with ffmpeg.

For ``ringback dial`` (a tool, not the call path): it records what it hears and decodes it
for its verdict once the call is over. Blocking (a subprocess): call it off the event loop.
The payloads are put back into the files ffmpeg reads — raw G.722, Ogg Opus (RFC 7845),
AMR/AMR-WB storage (RFC 4867 §5, from octet-aligned or bandwidth-efficient payloads).
"""

from __future__ import annotations

import subprocess

import numpy as np
import numpy.typing as npt

from ringback.media import amr
from ringback.media.ogg import opus_file
from ringback.media.recorder import OTHER_CLOCKS

__all__ = ["decodable", "decode_to_8k"]


def decodable(codec: str) -> bool:
    """Whether ``codec`` (a name as :class:`~ringback.media.recorder.RtpRecorder` keeps
    it: ``G722``, ``opus``, ``AMR/be``, ``AMR-WB/oa``, ...) can be decoded here."""
    return codec in OTHER_CLOCKS


def _container(codec: str, payloads: list[bytes]) -> tuple[list[str], bytes]:
    if codec == "G722":
        return ["-f", "g722"], b"".join(payloads)
    if codec == "opus":
        return ["-f", "ogg"], opus_file(payloads)
    name, _, packing = codec.partition("/")
    kind = amr.AMR_WB if name == "AMR-WB" else amr.AMR_NB
    frames: list[amr.AmrFrame] = []
    for payload in payloads:
        try:
            frames += amr.depacketize(payload, kind, octet_aligned=packing == "oa")
        except ValueError:
            continue  # a damaged packet: skipped, as a receiver would
    return ["-f", "amr"], amr.to_storage(frames, kind)


def decode_to_8k(codec: str, payloads: list[bytes]) -> npt.NDArray[np.int16]:
    """The payloads of one stream, in order, decoded to 8 kHz mono int16."""
    if not payloads:
        return np.zeros(0, np.int16)
    demuxer, data = _container(codec, payloads)
    done = subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", *demuxer, "-i", "pipe:0", "-ac", "1",
         "-ar", "8000", "-f", "s16le", "pipe:1"],
        input=data, capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    out = done.stdout[: len(done.stdout) // 2 * 2]
    return np.frombuffer(out, dtype="<i2").astype(np.int16)
