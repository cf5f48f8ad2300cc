"""The encodings a warning is prepared in, and what RTP and SDP need to know of each.

An *encoding* is one way a recording is prepared (``PCMU``, ``G722``, ``AMR-WB@2`` is
AMR-WB in mode 2, 12.65 kbit/s, ...). Its *frames key* names the list of 20 ms RTP payloads
the pacer sends: the encoding itself, or for AMR the encoding plus its packetisation
(``AMR-WB@2/be`` bandwidth-efficient, ``/oa`` octet-aligned), both made at preparation.

Every packet is 20 ms; what differs is the RTP clock: G.722 samples at 16 kHz but its RTP
clock is 8 kHz (RFC 3551 §4.5.2: a historical error kept), Opus always counts 48 kHz
(RFC 7587 §4.1), AMR-WB 16 kHz. EVS has no free encoder: it is never prepared.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from ringback.media.amr import AMR_NB, AMR_WB, AmrKind

__all__ = [
    "ENCODINGS",
    "G711",
    "Encoding",
    "amr_key",
]


@dataclass(frozen=True, slots=True)
class Encoding:
    key: str  # "PCMU", "G722", "opus", "AMR@7", "AMR-WB@8", ...
    sdp_name: str  # the rtpmap encoding name
    clock_rate: int  # the RTP clock (what SDP says)
    channels: int | None  # the rtpmap channel count (Opus: always 2, RFC 7587)
    encoder: str  # the ffmpeg encoder it needs ("" for G.711: numpy tables)
    amr: AmrKind | None = None
    mode: int | None = None  # AMR codec mode (mode-set value)

    @property
    def samples_per_packet(self) -> int:
        """RTP timestamp increment per 20 ms packet."""
        return self.clock_rate // 50

    def frames_keys(self) -> tuple[str, ...]:
        if self.amr is not None:
            return (f"{self.key}/oa", f"{self.key}/be")
        return (self.key,)


def amr_key(kind: AmrKind, mode: int) -> str:
    return f"{kind.name}@{mode}"


G711: Final = frozenset({"PCMU", "PCMA"})

# The AMR modes prepared: AMR-NB 12.2 kbit/s (mode 7, in the usual VoLTE mode-set 0,2,4,7)
# and AMR-WB 12.65 kbit/s (mode 2, the top of the mode-set 0,1,2 most VoLTE networks offer;
# 23.85 kbit/s would add 0.8 s of CPU to every preparation for little gain on speech).
ENCODINGS: Final[dict[str, Encoding]] = {
    e.key: e
    for e in (
        Encoding("PCMU", "PCMU", 8000, None, ""),
        Encoding("PCMA", "PCMA", 8000, None, ""),
        Encoding("G722", "G722", 8000, None, "g722"),
        Encoding("opus", "opus", 48000, 2, "libopus"),
        Encoding(amr_key(AMR_NB, 7), "AMR", 8000, None, "libopencore_amrnb", AMR_NB, 7),
        Encoding(amr_key(AMR_WB, 2), "AMR-WB", 16000, None, "libvo_amrwbenc", AMR_WB, 2),
    )
}
