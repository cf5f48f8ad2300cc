"""To tags derived from the request (RFC 3261 §8.2.7: "the same tag for the same request").

A 302's To tag is a keyed hash of the INVITE's Call-ID and From tag, so the answer to an
INVITE depends only on the INVITE and the key: a retransmission, or the same INVITE
reaching another worker process that holds the same key, gets byte-identical bytes, and
nothing outside the key holders can predict a tag.

The hash is SipHash-2-4 (Aumasson and Bernstein), a keyed function made for short inputs:
computed in C (``_fastsip.derived_tag``) it costs about a tenth of a keyed BLAKE2b from
hashlib, whose per-call set-up was 4 % of a redirected call's CPU. :func:`siphash24` here is
the reference, used wherever the C module did not build.
"""

from __future__ import annotations

from collections.abc import Callable

TAG_KEY_BYTES = 16

_MASK = (1 << 64) - 1

COMPILED_TAG: Callable[[bytes, bytes, bytes], bytes] | None
try:
    from ringback._fastsip import derived_tag as COMPILED_TAG
except ImportError:  # pragma: no cover - built by `pip install`
    COMPILED_TAG = None


def _rotl(x: int, b: int) -> int:
    return ((x << b) | (x >> (64 - b))) & _MASK


def siphash24(key: bytes, data: bytes) -> int:
    """SipHash-2-4 of ``data`` under the 16-byte ``key``, as the reference defines it (the
    digest read as a little-endian 64-bit integer)."""
    if len(key) != 16:
        raise ValueError("the tag key is 16 bytes")
    k0 = int.from_bytes(key[:8], "little")
    k1 = int.from_bytes(key[8:], "little")
    v = [
        0x736F6D6570736575 ^ k0,
        0x646F72616E646F6D ^ k1,
        0x6C7967656E657261 ^ k0,
        0x7465646279746573 ^ k1,
    ]

    def rounds(n: int) -> None:
        for _ in range(n):
            v[0] = (v[0] + v[1]) & _MASK
            v[1] = _rotl(v[1], 13) ^ v[0]
            v[0] = _rotl(v[0], 32)
            v[2] = (v[2] + v[3]) & _MASK
            v[3] = _rotl(v[3], 16) ^ v[2]
            v[0] = (v[0] + v[3]) & _MASK
            v[3] = _rotl(v[3], 21) ^ v[0]
            v[2] = (v[2] + v[1]) & _MASK
            v[1] = _rotl(v[1], 17) ^ v[2]
            v[2] = _rotl(v[2], 32)

    whole = len(data) - len(data) % 8
    blocks = [int.from_bytes(data[i : i + 8], "little") for i in range(0, whole, 8)]
    blocks.append(int.from_bytes(data[whole:], "little") | (len(data) & 0xFF) << 56)
    for m in blocks:
        v[3] ^= m
        rounds(2)
        v[0] ^= m
    v[2] ^= 0xFF
    rounds(4)
    return v[0] ^ v[1] ^ v[2] ^ v[3]


def reference_tag_bytes(key: bytes, call_id: bytes, from_tag: bytes) -> bytes:
    """12 lower-case hex digits (48 bits, as many as :func:`~ringback.sip.responses.new_tag`):
    the first 6 bytes of SipHash-2-4 over Call-ID, a zero byte and From tag."""
    digest = siphash24(key, call_id + b"\x00" + from_tag)
    return digest.to_bytes(8, "little")[:6].hex().encode()


# The To tag as bytes: the C function itself where it built (the lean path calls it with
# no wrapper in between), the reference elsewhere.
derived_tag_bytes: Callable[[bytes, bytes, bytes], bytes] = (
    COMPILED_TAG if COMPILED_TAG is not None else reference_tag_bytes
)


def derived_tag(key: bytes, call_id: bytes, from_tag: bytes) -> str:
    """:data:`derived_tag_bytes` as text."""
    return derived_tag_bytes(key, call_id, from_tag).decode()
