"""What an INVITE's offer lets us play, and where its RTP may go (the media policy)."""

from __future__ import annotations

from ringback.calls.effects import Address
from ringback.media.codecs import G711
from ringback.media.destinations import DestinationPolicy
from ringback.media.offer_answer import NoAnswer, Selection, select
from ringback.sip.body import sdp_of
from ringback.sip.model import Request
from ringback.sip.uri import parse_name_addr

MediaPlan = tuple[Selection, tuple[Address, ...]]


def media_plan(
    invite: Request, source: Address, policy: DestinationPolicy, codecs: frozenset[str] = G711
) -> MediaPlan | str:
    """(the chosen stream and codec, the allowed destinations in order of preference), or
    the reason there is nothing to play (``no_sdp``, ``no_codec``, ...). ``codecs``: the
    encodings every recording is prepared in (see :mod:`ringback.media.codecs`).

    Media safety: RTP goes only where the policy allows — the offer's address, or the
    INVITE's source (where symmetric RTP would latch) at the offer's port, in that order.
    """
    offer = sdp_of(invite.headers.get("Content-Type"), invite.body)
    if offer is None:
        return "no_sdp"
    media = select(offer, codecs)
    if isinstance(media, NoAnswer):
        return media.reason
    port = media.remote_addr[1]
    candidates = (media.remote_addr, (source[0], port))
    destinations = tuple(dict.fromkeys(a for a in candidates if policy.allows(*a)))
    if not destinations:
        return "media_destination_refused"
    return media, destinations


def caller_of(invite: Request) -> str | None:
    """The caller's URI (P-Asserted-Identity, else From), at most 200 characters."""
    value = invite.headers.get("P-Asserted-Identity") or invite.headers.get("From")
    if value is None:
        return None
    try:
        return parse_name_addr(value).uri[:200]
    except Exception:
        return None
