"""RFC 3264 answer to an INVITE's SDP offer, for a send-only G.711 announcement.

Rules:

- The first audio m-line with a non-zero port and a plain RTP profile (RTP/AVP or
  RTP/AVPF) is the one we use; every other m-line (video, a second audio stream, SRTP
  audio, ...) is answered with port 0, as RFC 3264 §6 requires, echoing its formats.
- The codec is the first of PCMU/PCMA in that m-line's format list (the offerer's order
  of preference), static 0/8 or a dynamic number whose rtpmap says PCMU/8000 or
  PCMA/8000; the offered number is kept. telephone-event and everything else is left out.
- The offer's direction decides whether playing makes sense: ``sendrecv``/``recvonly``
  are answered ``sendonly``; ``sendonly``/``inactive`` (or the RFC 2543 hold address
  0.0.0.0) mean they will not listen, so there is no answer: ``NoAnswer("inactive")``.
- The remote address must be an IP literal: a host name in ``c=`` would need a DNS
  lookup in the call path, so it is refused (``bad_sdp``).
- ``a=ptime``/``a=maxptime`` in the offer are not honoured: we always send 20 ms.

No SRTP, no ICE, no RTCP: the answer carries none of their attributes, which per their
RFCs tells the offerer they are not in use.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Literal

from ringback.sip.sdp import (
    Attribute,
    Connection,
    MediaDescription,
    Origin,
    SdpError,
    SessionDescription,
    parse_sdp,
)

__all__ = ["Answer", "NoAnswer", "NoAnswerReason", "Selection", "answer_sdp", "negotiate", "select"]

NoAnswerReason = Literal["no_sdp", "bad_sdp", "no_audio", "no_codec", "inactive"]
_PLAIN_RTP = ("RTP/AVP", "RTP/AVPF")


@dataclass(frozen=True, slots=True)
class Answer:
    codec: Literal["PCMU", "PCMA"]
    payload_type: int
    remote_addr: tuple[str, int]  # (IP literal, port) from the offer's c= and m= lines
    remote_family: Literal[4, 6]
    offer_direction: str  # "sendrecv" or "recvonly"
    sdp: bytes


@dataclass(frozen=True, slots=True)
class NoAnswer:
    reason: NoAnswerReason
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Selection:
    """What the offer lets us play, before any socket exists: the call core decides on this
    (fail open or go on), and the shell renders the answer once it has a port."""

    codec: Literal["PCMU", "PCMA"]
    payload_type: int
    remote_addr: tuple[str, int]  # (IP literal, port) from the offer's c= and m= lines
    remote_family: Literal[4, 6]
    offer_direction: str  # "sendrecv" or "recvonly"
    offer: SessionDescription
    media_index: int


def select(offer_sdp: bytes | None) -> Selection | NoAnswer:
    """Choose the stream and codec of ``offer_sdp``, or say why there is nothing to play."""
    if offer_sdp is None or not offer_sdp.strip():
        return NoAnswer("no_sdp", "INVITE has no SDP offer")
    try:
        offer = parse_sdp(offer_sdp)
        chosen = _choose_media(offer)
        if isinstance(chosen, NoAnswer):
            return chosen
        index, media = chosen
        codec_pt = _choose_codec(media)
    except SdpError as exc:
        return NoAnswer("bad_sdp", str(exc))
    if codec_pt is None:
        return NoAnswer("no_codec", f"no PCMU/PCMA in offered formats {' '.join(media.formats)}")
    codec, pt = codec_pt

    direction = offer.direction_of(media)
    if direction in ("sendonly", "inactive"):
        return NoAnswer("inactive", f"offer is {direction}: nobody would listen")
    host = offer.connection_of(media).host
    try:
        remote_ip = ipaddress.ip_address(host)
    except ValueError:
        return NoAnswer("bad_sdp", f"c= address is not an IP literal: {host[:60]!r}")
    if remote_ip.is_unspecified:
        return NoAnswer("inactive", f"offer connection address {host} (hold)")
    if remote_ip.is_multicast:
        return NoAnswer("bad_sdp", f"multicast c= address {host} not supported")
    return Selection(
        codec=codec,
        payload_type=pt,
        remote_addr=(str(remote_ip), media.port),
        remote_family=4 if remote_ip.version == 4 else 6,
        offer_direction=direction,
        offer=offer,
        media_index=index,
    )


def answer_sdp(
    chosen: Selection,
    *,
    local_ip: str,
    local_port: int,
    session_id: int,
    direction: str = "sendonly",
) -> bytes:
    """The SDP answer for ``chosen``, sending from ``local_ip:local_port``. ``direction``
    is ``sendonly`` for a warning; the lab callee answers ``sendrecv`` like a phone (what
    it receives is discarded), so softphones do not show the call as held.

    ``session_id`` is used as both the o= session id and version (a new session per call).
    """
    try:
        local = ipaddress.ip_address(local_ip)
    except ValueError:
        raise ValueError(f"local_ip must be an IP literal, got {local_ip!r}") from None
    addrtype = "IP4" if local.version == 4 else "IP6"
    answer = SessionDescription(
        origin=Origin("ringback", str(session_id), str(session_id), "IN", addrtype, local_ip),
        session_name="ringback",
        connection=Connection("IN", addrtype, local_ip),
        times=["0 0"],
    )
    pt, codec = chosen.payload_type, chosen.codec
    for i, m in enumerate(chosen.offer.media):
        if i == chosen.media_index:
            answer.media.append(
                MediaDescription(
                    "audio",
                    local_port,
                    m.proto,
                    [str(pt)],
                    attributes=[
                        Attribute("rtpmap", f"{pt} {codec}/8000"),
                        Attribute("ptime", "20"),
                        Attribute(direction),
                    ],
                )
            )
        else:
            answer.media.append(MediaDescription(m.media, 0, m.proto, list(m.formats) or ["0"]))
    return answer.to_bytes()


def negotiate(
    offer_sdp: bytes | None, *, local_ip: str, local_port: int, session_id: int
) -> Answer | NoAnswer:
    """:func:`select`, then :func:`answer_sdp` (for tools that have their port already)."""
    chosen = select(offer_sdp)
    if isinstance(chosen, NoAnswer):
        return chosen
    sdp = answer_sdp(chosen, local_ip=local_ip, local_port=local_port, session_id=session_id)
    return Answer(
        codec=chosen.codec,
        payload_type=chosen.payload_type,
        remote_addr=chosen.remote_addr,
        remote_family=chosen.remote_family,
        offer_direction=chosen.offer_direction,
        sdp=sdp,
    )


def _choose_media(offer: SessionDescription) -> tuple[int, MediaDescription] | NoAnswer:
    audio = [(i, m) for i, m in enumerate(offer.media) if m.media.lower() == "audio"]
    if not audio:
        return NoAnswer("no_audio", "offer has no audio stream")
    for i, m in audio:
        if m.port != 0 and m.proto.upper() in _PLAIN_RTP:
            return i, m
    if all(m.port == 0 for _, m in audio):
        return NoAnswer("no_audio", "every audio stream in the offer is disabled (port 0)")
    protos = sorted({m.proto for _, m in audio if m.port != 0})
    return NoAnswer("no_audio", f"no plain RTP audio stream (offered {', '.join(protos)})")


def _choose_codec(media: MediaDescription) -> tuple[Literal["PCMU", "PCMA"], int] | None:
    maps = media.rtpmaps()
    for fmt in media.formats:
        if not fmt.isdigit():
            continue
        rtpmap = maps.get(int(fmt))
        if rtpmap is None or rtpmap.clock_rate != 8000 or rtpmap.channels not in (None, 1):
            continue
        name = rtpmap.encoding.upper()
        if name == "PCMU":
            return "PCMU", rtpmap.payload_type
        if name == "PCMA":
            return "PCMA", rtpmap.payload_type
    return None
