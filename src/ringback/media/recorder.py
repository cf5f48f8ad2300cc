"""Received RTP → 8 kHz PCM on the sender's own timeline (sans-I/O).

G.711 is decoded as it arrives. Other codecs (G.722, Opus, AMR, AMR-WB: see
:mod:`ringback.media.codec_decode`) are kept as payloads and decoded by the ``decoder``
the recorder is given, when the audio is asked for (``ringback dial`` passes one that runs
ffmpeg; without one those packets are ignored).

Each packet is placed by its RTP timestamp, not by arrival order, so reordered packets
land where they belong, a duplicate overwrites itself and a lost packet leaves 20 ms of
silence instead of shortening the audio. Streams (SSRCs) follow one another in the order
they were first heard. Nothing here reads a socket or a clock: packets and their arrival
times are handed in.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import numpy.typing as npt

from ringback.media.g711 import alaw_decode, ulaw_decode
from ringback.media.rtp import is_rtcp, parse_rtp_header

__all__ = ["G711_STATIC", "RtpRecorder"]

RATE: Final = 8000
#: payload types with a fixed meaning (RFC 3551); an SDP's rtpmap may name others
G711_STATIC: Final = {0: "PCMU", 8: "PCMA"}
MAX_SPAN: Final = 10 * 60 * RATE  # samples per stream kept: ten minutes of audio
_DECODERS = {"PCMU": ulaw_decode, "PCMA": alaw_decode}
# codec name -> RTP clock rate of the codecs a decoder may handle (see codec_decode)
OTHER_CLOCKS: Final = {
    "G722": 8000,
    "opus": 48000,
    "AMR/be": 8000,
    "AMR/oa": 8000,
    "AMR-WB/be": 16000,
    "AMR-WB/oa": 16000,
}
Decoder = Callable[[str, list[bytes]], npt.NDArray[np.int16]]


@dataclass(slots=True)
class _Stream:
    ssrc: int
    ts0: int
    chunks: dict[int, npt.NDArray[np.int16]] = field(default_factory=dict)  # offset -> PCM
    codec: str = ""  # a codec decoded later: its payloads by RTP timestamp offset
    payloads: dict[int, bytes] = field(default_factory=dict)


class RtpRecorder:
    """The audio of one phase of a call (early media, or the answered call)."""

    def __init__(self, decoder: Decoder | None = None) -> None:
        self.decoder = decoder
        self._decoded: npt.NDArray[np.int16] | None = None  # pcm(), until the next packet
        self._streams: dict[int, _Stream] = {}
        self.packets = 0
        self.ignored = 0  # not RTP, RTCP, a payload type that is not G.711, out of range
        self.first_at: float | None = None
        self.last_at: float | None = None
        self._codecs: Counter[str] = Counter()

    def __contains__(self, ssrc: int) -> bool:
        return ssrc in self._streams

    @staticmethod
    def ssrc_of(data: bytes) -> int | None:
        """The SSRC of an RTP packet, or None when it is not one."""
        if is_rtcp(data):
            return None
        try:
            return parse_rtp_header(data).ssrc
        except ValueError:
            return None

    def add(self, data: bytes, now: float, codecs: dict[int, str] | None = None) -> bool:
        """One datagram from the media socket; ``codecs`` maps payload types to PCMU/PCMA
        (the answer's rtpmap; the static types 0 and 8 otherwise). False when ignored."""
        if is_rtcp(data):
            self.ignored += 1
            return False
        try:
            header = parse_rtp_header(data)
        except ValueError:
            self.ignored += 1
            return False
        codec = (codecs or G711_STATIC).get(header.payload_type)
        if codec is None:
            codec = G711_STATIC.get(header.payload_type)
        decode = _DECODERS.get(codec or "")
        later = decode is None and self.decoder is not None and codec in OTHER_CLOCKS
        end = len(data)
        if header.padding and end > header.header_len:
            end -= data[-1]
        payload = data[header.header_len : end]
        if (decode is None and not later) or not payload:
            self.ignored += 1
            return False
        stream = self._streams.get(header.ssrc)
        if stream is None:
            stream = self._streams[header.ssrc] = _Stream(header.ssrc, header.timestamp)
        offset = ((header.timestamp - stream.ts0 + 2**31) % 2**32) - 2**31
        span = MAX_SPAN * (OTHER_CLOCKS.get(codec or "", RATE) // RATE)
        if not -span < offset < span:
            self.ignored += 1
            return False
        self._decoded = None
        if decode is not None:
            stream.chunks[offset] = decode(payload)
        else:
            assert codec is not None
            stream.codec = codec
            stream.payloads[offset] = payload
        assert codec is not None
        self._codecs[codec] += 1
        self.packets += 1
        if self.first_at is None:
            self.first_at = now
        self.last_at = now
        return True

    @property
    def codec(self) -> str | None:
        """The codec most packets used."""
        common = self._codecs.most_common(1)
        return common[0][0] if common else None

    def pcm(self) -> npt.NDArray[np.int16]:
        """Everything received, each stream on its timeline, gaps as silence (a stream the
        decoder decodes: its packets in timestamp order; a lost one is not filled)."""
        if self._decoded is not None:
            return self._decoded
        parts: list[npt.NDArray[np.int16]] = []
        for stream in self._streams.values():
            if stream.payloads and self.decoder is not None:
                ordered = [stream.payloads[k] for k in sorted(stream.payloads)]
                parts.append(self.decoder(stream.codec, ordered)[: 2 * MAX_SPAN])
            if not stream.chunks:
                continue
            start = min(stream.chunks)
            end = max(o + len(c) for o, c in stream.chunks.items())
            out = np.zeros(min(end - start, 2 * MAX_SPAN), np.int16)
            for offset, chunk in sorted(stream.chunks.items()):
                at = offset - start
                out[at : at + len(chunk)] = chunk[: max(0, len(out) - at)]
            parts.append(out)
        self._decoded = np.concatenate(parts) if parts else np.zeros(0, np.int16)
        return self._decoded

    @property
    def seconds(self) -> float:
        return len(self.pcm()) / RATE
