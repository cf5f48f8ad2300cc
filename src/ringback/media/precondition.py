"""RFC 3312 (updated by RFC 4032) QoS preconditions, as an announcement answers them.

A VoLTE caller's INVITE carries ``Require: precondition`` and an offer whose audio stream
says, per status type, what it has reserved and what it needs::

    a=curr:qos local none            (segmented: the offerer's access network)
    a=curr:qos remote none
    a=des:qos mandatory local sendrecv
    a=des:qos mandatory remote sendrecv

or ``e2e`` in place of ``local``/``remote``. ``ringback`` has no access network to reserve:
its own side is met at once. The answer (in the reliable 183) mirrors the offer from our
side — our ``local`` is the offerer's ``remote`` — with our side ``sendrecv`` and theirs as
they said, and ``a=conf:qos remote sendrecv`` asks them to tell us (an UPDATE) when theirs
is met. The warning starts only once every mandatory precondition is met (RFC 3312 §5:
the callee must not alert the user before).

Pure functions over parsed SDP; no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from ringback.sip.sdp import Attribute, MediaDescription, Origin, SessionDescription, parse_sdp

__all__ = ["Qos", "answer_attributes", "offer_qos", "replace_attributes"]

_DIRECTIONS = ("none", "send", "recv", "sendrecv")
_QOS_NAMES = ("curr", "des", "conf")


@dataclass(frozen=True, slots=True)
class Qos:
    """The offerer's view of its own side (segmented ``local``, or ``e2e``)."""

    e2e: bool
    current: str  # "none", "send", "recv", "sendrecv": what the offerer has reserved
    desired: str  # what its mandatory precondition asks for ("none" if not mandatory)
    strength: str  # the strength tag of its desired state ("mandatory", "optional", ...)

    @property
    def met(self) -> bool:
        """Whether the offerer's side is reserved as far as its precondition asks."""
        if self.strength != "mandatory":
            return True
        return _covers(self.current, self.desired)


def _covers(current: str, desired: str) -> bool:
    if desired in ("none", ""):
        return True
    if current == "sendrecv":
        return True
    return current == desired


def _fields(value: str | None) -> list[str]:
    return (value or "").split()


def offer_qos(offer: SessionDescription, media: MediaDescription) -> Qos | None:
    """The offerer's QoS state for ``media``; None when the offer has no qos preconditions.
    Session-level ``curr``/``des`` lines count too (some IMS clients put them there)."""
    attrs = [*offer.attributes, *media.attributes]
    current: dict[str, str] = {}
    desired: dict[str, tuple[str, str]] = {}
    for a in attrs:
        f = _fields(a.value)
        if a.name == "curr" and len(f) == 3 and f[0] == "qos":
            current[f[1]] = f[2] if f[2] in _DIRECTIONS else "none"
        elif a.name == "des" and len(f) == 4 and f[0] == "qos":
            desired[f[2]] = (f[1], f[3] if f[3] in _DIRECTIONS else "none")
    if not current and not desired:
        return None
    e2e = "e2e" in current or "e2e" in desired
    side = "e2e" if e2e else "local"
    strength, want = desired.get(side, ("none", "none"))
    return Qos(e2e, current.get(side, "none"), want, strength)


def answer_attributes(qos: Qos) -> tuple[Attribute, ...]:
    """The answer's precondition lines: our side met, theirs as they last said, and a
    request to confirm theirs unless it is met already."""
    want = "sendrecv"
    strength = qos.strength if qos.strength != "none" else "mandatory"
    desired = qos.desired if qos.desired != "none" else want
    if qos.e2e:
        state = "sendrecv" if qos.met else "none"
        lines = [
            Attribute("curr", f"qos e2e {state}"),
            Attribute("des", f"qos mandatory e2e {want}"),
        ]
        if not qos.met:
            lines.append(Attribute("conf", "qos e2e recv"))
        return tuple(lines)
    lines = [
        Attribute("curr", "qos local sendrecv"),
        Attribute("curr", f"qos remote {qos.current}"),
        Attribute("des", f"qos mandatory local {want}"),
        Attribute("des", f"qos {strength} remote {desired}"),
    ]
    if not qos.met:
        lines.append(Attribute("conf", "qos remote sendrecv"))
    return tuple(lines)


def replace_attributes(sdp: bytes, attributes: tuple[Attribute, ...]) -> bytes:
    """``sdp`` (our earlier answer) with its audio stream's precondition lines replaced by
    ``attributes`` and the o= version one higher (RFC 3264 §8: a changed description)."""
    parsed = parse_sdp(sdp)
    o = parsed.origin
    parsed.origin = Origin(
        o.username, o.sess_id, str(int(o.sess_version) + 1), o.nettype, o.addrtype, o.address
    )
    for m in parsed.media:
        if m.port == 0:
            continue
        kept = [a for a in m.attributes if a.name not in _QOS_NAMES]
        direction = [a for a in kept if a.name in ("sendonly", "sendrecv", "recvonly", "inactive")]
        rest = [a for a in kept if a not in direction]
        m.attributes = [*rest, *attributes, *direction]
    return parsed.to_bytes()
