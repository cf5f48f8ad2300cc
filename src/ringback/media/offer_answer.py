"""RFC 3264 answer to an INVITE's SDP offer, for a send-only announcement.

Rules:

- The first audio m-line with a non-zero port and a plain RTP profile (RTP/AVP or
  RTP/AVPF) is the one we use; every other m-line (video, a second audio stream, SRTP
  audio, ...) is answered with port 0, as RFC 3264 §6 requires, echoing its formats.
- The codec is the first format in that m-line's list (the offerer's order of preference)
  whose encoding is prepared (``available``: G.711 by default; G.722, Opus, AMR, AMR-WB
  when ffmpeg can make them, see :mod:`ringback.media.codecs`), by its static number or its
  rtpmap; the offered (dynamic) number is kept, with the clock rate, channels and an fmtp
  that fits: AMR honours ``octet-align`` and ``mode-set`` (an offer whose mode-set holds no
  prepared mode, or that asks for CRC, robust sorting or interleaving, is skipped for the
  next format). RFC 4733 ``telephone-event`` at the chosen codec's clock rate is answered
  too when offered (we never send it). EVS and everything else is left out.
- The offer's direction decides whether playing makes sense: ``sendrecv``/``recvonly``
  are answered ``sendonly``; ``sendonly``/``inactive`` (or the RFC 2543 hold address
  0.0.0.0) mean they will not listen, so there is no answer: ``NoAnswer("inactive")``.
- The remote address must be an IP literal: a host name in ``c=`` would need a DNS
  lookup in the call path, so it is refused (``bad_sdp``).
- ``a=ptime``/``a=maxptime`` in the offer are not honoured: we always send 20 ms.

SRTP: an ``RTP/SAVP``/``RTP/SAVPF`` stream is played when ``SRTP`` is among ``available``
(libsrtp is there) and one of its ``a=crypto`` lines has a suite we answer
(:mod:`ringback.media.srtp`); otherwise an SRTP-only offer is ``no_codec``. No ICE, no
DTLS-SRTP, no RTCP:
no ICE, no RTCP: the answer carries none of their attributes, which per their
RFCs tells the offerer they are not in use.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace
from typing import Literal

from ringback.media.amr import AmrKind
from ringback.media.codecs import ENCODINGS, G711, Encoding
from ringback.media.srtp import Crypto, choose_crypto, new_crypto
from ringback.sip.sdp import (
    Attribute,
    Connection,
    MediaDescription,
    Origin,
    RtpMap,
    SdpError,
    SessionDescription,
    parse_sdp,
)

__all__ = [
    "SRTP",
    "Answer",
    "NoAnswer",
    "NoAnswerReason",
    "Selection",
    "answer_sdp",
    "fmtp_params",
    "negotiate",
    "select",
]

NoAnswerReason = Literal["no_sdp", "bad_sdp", "no_audio", "no_codec", "inactive"]
_PLAIN_RTP = ("RTP/AVP", "RTP/AVPF")
_SRTP = ("RTP/SAVP", "RTP/SAVPF")
SRTP = "SRTP"  # in ``available``: SDES-SRTP can be answered


@dataclass(frozen=True, slots=True)
class Answer:
    codec: str
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

    codec: str  # the SDP encoding name: "PCMU", "G722", "opus", "AMR-WB", ...
    payload_type: int
    remote_addr: tuple[str, int]  # (IP literal, port) from the offer's c= and m= lines
    remote_family: Literal[4, 6]
    offer_direction: str  # "sendrecv" or "recvonly"
    offer: SessionDescription
    media_index: int
    frames_key: str = ""  # which prepared frames to send (default: ``codec``)
    clock_rate: int = 8000
    channels: int | None = None
    fmtp: str | None = None  # the answer's fmtp for the codec
    telephone_event: tuple[int, str | None] | None = None  # (payload type, fmtp) to answer
    crypto: tuple[int, str] | None = None  # SDES-SRTP: the offer's (tag, suite) we answer

    @property
    def samples_per_packet(self) -> int:
        """The RTP timestamp increment of a 20 ms packet at this codec's clock."""
        return self.clock_rate // 50

    @property
    def frames(self) -> str:
        return self.frames_key or self.codec


def select(offer_sdp: bytes | None, available: frozenset[str] = G711) -> Selection | NoAnswer:
    """Choose the stream and codec of ``offer_sdp`` among the ``available`` encodings
    (keys of :data:`~ringback.media.codecs.ENCODINGS`), or say why there is nothing to play."""
    if offer_sdp is None or not offer_sdp.strip():
        return NoAnswer("no_sdp", "INVITE has no SDP offer")
    try:
        offer = parse_sdp(offer_sdp)
        chosen = _choose_media(offer, SRTP in available)
        if isinstance(chosen, NoAnswer):
            return chosen
        index, media, crypto = chosen
        chosen_codec = _choose_codec(media, available)
    except SdpError as exc:
        return NoAnswer("bad_sdp", str(exc))
    if chosen_codec is None:
        return NoAnswer(
            "no_codec", f"no prepared codec in offered formats {' '.join(media.formats)[:200]}"
        )

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
    return replace(
        chosen_codec,
        crypto=crypto,
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
    extra: tuple[Attribute, ...] = (),
    crypto: Crypto | None = None,
) -> bytes:
    """The SDP answer for ``chosen``, sending from ``local_ip:local_port``. ``direction``
    is ``sendonly`` for a warning; the lab callee answers ``sendrecv`` like a phone (what
    it receives is discarded), so softphones do not show the call as held. ``extra``
    attributes go on the audio m-line (RFC 3312 preconditions). ``crypto``: our SDES key,
    required when ``chosen`` is SRTP.

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
            channels = f"/{chosen.channels}" if chosen.channels else ""
            formats = [str(pt)]
            attributes = [Attribute("rtpmap", f"{pt} {codec}/{chosen.clock_rate}{channels}")]
            if chosen.fmtp:
                attributes.append(Attribute("fmtp", f"{pt} {chosen.fmtp}"))
            if chosen.telephone_event is not None:
                te, te_fmtp = chosen.telephone_event
                formats.append(str(te))
                attributes.append(Attribute("rtpmap", f"{te} telephone-event/{chosen.clock_rate}"))
                attributes.append(Attribute("fmtp", f"{te} {te_fmtp or '0-15'}"))
            if chosen.crypto is not None:
                if crypto is None:
                    raise ValueError("an SRTP answer needs our crypto key")
                attributes.append(Attribute("crypto", crypto.attribute_value()))
            attributes += [Attribute("ptime", "20"), *extra, Attribute(direction)]
            answer.media.append(
                MediaDescription("audio", local_port, m.proto, formats, attributes=attributes)
            )
        else:
            answer.media.append(MediaDescription(m.media, 0, m.proto, list(m.formats) or ["0"]))
    return answer.to_bytes()


def negotiate(
    offer_sdp: bytes | None,
    *,
    local_ip: str,
    local_port: int,
    session_id: int,
    available: frozenset[str] = G711,
) -> Answer | NoAnswer:
    """:func:`select`, then :func:`answer_sdp` (for tools that have their port already)."""
    chosen = select(offer_sdp, available)
    if isinstance(chosen, NoAnswer):
        return chosen
    crypto = new_crypto(*chosen.crypto) if chosen.crypto is not None else None
    sdp = answer_sdp(
        chosen, local_ip=local_ip, local_port=local_port, session_id=session_id, crypto=crypto
    )
    return Answer(
        codec=chosen.codec,
        payload_type=chosen.payload_type,
        remote_addr=chosen.remote_addr,
        remote_family=chosen.remote_family,
        offer_direction=chosen.offer_direction,
        sdp=sdp,
    )


def _choose_media(
    offer: SessionDescription, srtp: bool
) -> tuple[int, MediaDescription, tuple[int, str] | None] | NoAnswer:
    audio = [(i, m) for i, m in enumerate(offer.media) if m.media.lower() == "audio"]
    if not audio:
        return NoAnswer("no_audio", "offer has no audio stream")
    for i, m in audio:
        if m.port == 0:
            continue
        if m.proto.upper() in _PLAIN_RTP:
            return i, m, None
        if srtp and m.proto.upper() in _SRTP:
            crypto = choose_crypto([a.value or "" for a in m.attributes if a.name == "crypto"])
            if crypto is not None:
                return i, m, crypto
    if all(m.port == 0 for _, m in audio):
        return NoAnswer("no_audio", "every audio stream in the offer is disabled (port 0)")
    protos = sorted({m.proto for _, m in audio if m.port != 0})
    if any("SAVP" in p.upper() for p in protos):
        # no crypto suite we answer (or no libsrtp): nothing we can send (counted no_codec)
        return NoAnswer("no_codec", f"SRTP we cannot answer (offered {', '.join(protos)})")
    return NoAnswer("no_audio", f"no plain RTP audio stream (offered {', '.join(protos)})")


def _choose_codec(media: MediaDescription, available: frozenset[str]) -> Selection | None:
    """The first offered format we can play, as a partial :class:`Selection`."""
    maps = media.rtpmaps()
    for fmt in media.formats:
        if not fmt.isdigit():
            continue
        rtpmap = maps.get(int(fmt))
        if rtpmap is None:
            continue
        fmtp = media.fmtp(rtpmap.payload_type)
        found = _playable(
            rtpmap.encoding.upper(), rtpmap.clock_rate, rtpmap.channels, fmtp, available
        )
        if found is None:
            continue
        encoding, frames_key, answer_fmtp = found
        return Selection(
            codec=encoding.sdp_name,
            payload_type=rtpmap.payload_type,
            remote_addr=("", 0),
            remote_family=4,
            offer_direction="",
            offer=_EMPTY,
            media_index=0,
            frames_key=frames_key,
            clock_rate=encoding.clock_rate,
            channels=encoding.channels,
            fmtp=answer_fmtp,
            telephone_event=_telephone_event(media, maps, encoding.clock_rate),
        )
    return None


_EMPTY = SessionDescription(origin=Origin("-", "0", "0", "IN", "IP4", "0.0.0.0"))


def _playable(
    name: str, clock: int, channels: int | None, fmtp: str | None, available: frozenset[str]
) -> tuple[Encoding, str, str | None] | None:
    """(encoding, frames key, answer fmtp) for one offered format, or None."""
    if name in ("PCMU", "PCMA", "G722"):
        if clock == 8000 and channels in (None, 1) and name in available:
            return ENCODINGS[name], name, None
        return None
    if name == "OPUS":
        if clock == 48000 and channels in (None, 2) and "opus" in available:
            return ENCODINGS["opus"], "opus", "stereo=0;sprop-stereo=0;useinbandfec=0"
        return None
    for encoding in ENCODINGS.values():
        kind = encoding.amr
        if kind is not None and name == kind.name.upper() and clock == kind.clock_rate:
            return _amr(kind, channels, fmtp, available)
    return None


def fmtp_params(fmtp: str | None) -> dict[str, str]:
    """``a=fmtp`` parameters (``key=value;key=value``) by lower-case name."""
    out: dict[str, str] = {}
    for part in (fmtp or "").split(";"):
        key, _, value = part.strip().partition("=")
        if key:
            out[key.strip().lower()] = value.strip()
    return out


def _amr(
    kind: AmrKind, channels: int | None, fmtp: str | None, available: frozenset[str]
) -> tuple[Encoding, str, str | None] | None:
    params = fmtp_params(fmtp)
    if channels not in (None, 1):
        return None
    if params.get("crc") == "1" or params.get("robust-sorting") == "1" or "interleaving" in params:
        return None  # payload variants we do not write (all need octet-align=1 besides)
    octet_aligned = params.get("octet-align") == "1"
    allowed: set[int] | None = None
    if "mode-set" in params:
        try:
            allowed = {int(m) for m in params["mode-set"].split(",") if m.strip()}
        except ValueError:
            return None
    modes = [
        e
        for e in ENCODINGS.values()
        if e.amr is kind and e.key in available and (allowed is None or e.mode in allowed)
    ]
    if not modes:
        return None
    best = max(modes, key=lambda e: e.mode or 0)
    answer = ["octet-align=1"] if octet_aligned else []
    if allowed is not None:
        answer.append(f"mode-set={params['mode-set']}")
    return best, f"{best.key}/{'oa' if octet_aligned else 'be'}", ";".join(answer) or None


def _telephone_event(
    media: MediaDescription, maps: dict[int, RtpMap], clock: int
) -> tuple[int, str | None] | None:
    for fmt in media.formats:
        rtpmap = maps.get(int(fmt)) if fmt.isdigit() else None
        if (
            rtpmap is not None
            and rtpmap.encoding.lower() == "telephone-event"
            and rtpmap.clock_rate == clock
        ):
            return rtpmap.payload_type, media.fmtp(rtpmap.payload_type)
    return None
