"""SDP for an anchored call: every leg sees ``ringback``'s relay address, never the other
leg's (so media can be neither aimed nor hijacked through the B2BUA), and both legs agree on
one codec, so the relay copies packets without transcoding.

- :func:`leg_sdp`: the answer to the caller (the 183 and the 200 carry the same one) and the
  offer to the callee: the codec chosen for the warning, plus RFC 4733 ``telephone-event``
  when the caller offered it, so DTMF passes through.
- :func:`anchor`: an SDP from one leg (a re-INVITE's offer, its answer) rewritten for the
  other: our relay address and port, our origin; codecs and directions unchanged.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from ringback.media.offer_answer import Selection
from ringback.sip.sdp import (
    Attribute,
    Connection,
    MediaDescription,
    Origin,
    SdpError,
    SessionDescription,
    parse_sdp,
)

Address = tuple[str, int]


@dataclass(frozen=True, slots=True)
class PeerMedia:
    """Where one leg's peer says it receives audio, and in which direction."""

    address: Address | None  # None: on hold (0.0.0.0 or port 0)
    direction: str


def _addrtype(ip: str) -> str:
    return "IP4" if ipaddress.ip_address(ip).version == 4 else "IP6"


def telephone_event_pt(selection: Selection) -> int | None:
    """The caller's payload type for ``telephone-event`` at the chosen codec's clock rate,
    if it offered one."""
    media = selection.offer.media[selection.media_index]
    for pt, rtpmap in media.rtpmaps().items():
        clock = rtpmap.clock_rate
        if rtpmap.encoding.lower() == "telephone-event" and clock == selection.clock_rate:
            return pt
    return None


def leg_sdp(
    selection: Selection,
    local: Address,
    *,
    session: int,
    version: int,
    direction: str = "sendrecv",
) -> bytes:
    """One audio stream at ``local``: the chosen codec (and telephone-event if offered)."""
    offered = selection.offer.media[selection.media_index]
    pt = selection.payload_type
    formats = [str(pt)]
    channels = f"/{selection.channels}" if selection.channels else ""
    rtpmap = f"{pt} {selection.codec}/{selection.clock_rate}{channels}"
    attributes = [Attribute("rtpmap", rtpmap)]
    fmtp = offered.fmtp(pt)
    if fmtp:
        attributes.append(Attribute("fmtp", f"{pt} {fmtp}"))
    te = telephone_event_pt(selection)
    if te is not None:
        formats.append(str(te))
        attributes.append(Attribute("rtpmap", f"{te} telephone-event/{selection.clock_rate}"))
        attributes.append(Attribute("fmtp", f"{te} {offered.fmtp(te) or '0-16'}"))
    attributes += [Attribute("ptime", "20"), Attribute(direction)]
    addrtype = _addrtype(local[0])
    sd = SessionDescription(
        Origin("ringback", str(session), str(version), "IN", addrtype, local[0]),
        "ringback",
        connection=Connection("IN", addrtype, local[0]),
    )
    sd.media.append(
        MediaDescription("audio", local[1], offered.proto, formats, attributes=attributes)
    )
    return sd.to_bytes()


def anchor(sdp: bytes, local: Address, *, session: int, version: int) -> tuple[bytes, PeerMedia]:
    """``sdp`` from one leg, for the other: our address and port on the first audio stream
    (other streams refused with port 0), our origin. Raises :class:`SdpError` if unusable."""
    sd = parse_sdp(sdp)
    audio = next((i for i, m in enumerate(sd.media) if m.media.lower() == "audio"), None)
    if audio is None:
        raise SdpError("no audio stream")
    media = sd.media[audio]
    host = sd.connection_of(media).host
    direction = sd.direction_of(media)
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise SdpError(f"c= address is not an IP literal: {host[:60]!r}") from None
    held = ip.is_unspecified or media.port == 0
    peer = PeerMedia(None if held else (str(ip), media.port), direction)
    addrtype = _addrtype(local[0])
    out = SessionDescription(
        Origin("ringback", str(session), str(version), "IN", addrtype, local[0]),
        "ringback",
        connection=Connection("IN", addrtype, local[0]),
    )
    for i, m in enumerate(sd.media):
        if i == audio:
            attrs = [a for a in m.attributes if a.name not in ("rtcp", "candidate", "ice-ufrag")]
            out.media.append(
                MediaDescription(
                    "audio",
                    0 if media.port == 0 else local[1],
                    m.proto,
                    list(m.formats),
                    attributes=attrs,
                )
            )
        else:
            out.media.append(MediaDescription(m.media, 0, m.proto, list(m.formats) or ["0"]))
    return out.to_bytes(), peer


def peer_media(sdp: bytes) -> PeerMedia:
    """Where the peer of an SDP receives audio (the callee's answer)."""
    _, peer = anchor(sdp, ("0.0.0.0", 9), session=0, version=0)
    return peer
