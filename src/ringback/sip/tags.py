"""To tags derived from the request (RFC 3261 §8.2.7: "the same tag for the same request").

A 302's To tag is a keyed hash of the INVITE's Call-ID and From tag, so the answer to an
INVITE depends only on the INVITE and the key: a retransmission, or the same INVITE
reaching another worker process that holds the same key, gets byte-identical bytes, and
nothing outside the key holders can predict a tag.
"""

from __future__ import annotations

import hashlib

TAG_KEY_BYTES = 16


def derived_tag(key: bytes, call_id: bytes, from_tag: bytes) -> str:
    """12 hex digits (48 bits, as many as :func:`~ringback.sip.responses.new_tag`)."""
    return hashlib.blake2b(call_id + b"\x00" + from_tag, digest_size=6, key=key).hexdigest()
