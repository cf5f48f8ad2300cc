"""Derived To tags: SipHash-2-4 against its published vectors, C against the Python reference."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ringback.sip import tags

# The first and the sixteenth of the 64 vectors of the SipHash reference implementation:
# key 00 01 .. 0f, message 00 01 .. (n-1) bytes long, digest read little-endian.
KEY = bytes(range(16))
VECTORS = {
    0: 0x726FDB47DD0E0E31,
    1: 0x74F839C593DC67FD,
    7: 0xAB0200F58B01D137,
    8: 0x93F5F5799A932462,
    15: 0xA129CA6149BE45E5,
    16: 0x3F2ACC7F57C29BDB,
    63: 0x958A324CEB064572,
}


@pytest.mark.parametrize(("length", "digest"), sorted(VECTORS.items()))
def test_the_reference_gives_siphash_24s_published_digests(length: int, digest: int) -> None:
    assert tags.siphash24(KEY, bytes(range(length))) == digest


def test_a_tag_is_the_first_six_bytes_of_the_digest_in_hex() -> None:
    # An empty Call-ID, the zero byte, From tag 01 .. 0e: the 15-byte vector's message.
    call_id, from_tag = b"", bytes(range(1, 15))
    expected = (0xA129CA6149BE45E5).to_bytes(8, "little")[:6].hex()
    assert tags.derived_tag(KEY, call_id, from_tag) == expected == "e545be4961ca"


def test_the_compiled_tag_is_built_here() -> None:
    assert tags.COMPILED_TAG is not None  # pip install builds it; the CI runs the C path
    assert tags.derived_tag_bytes is tags.COMPILED_TAG


@given(key=st.binary(min_size=16, max_size=16), call_id=st.binary(), from_tag=st.binary())
def test_the_compiled_tag_equals_the_reference(key: bytes, call_id: bytes, from_tag: bytes) -> None:
    assert tags.COMPILED_TAG is not None
    reference = tags.siphash24(key, call_id + b"\x00" + from_tag).to_bytes(8, "little")[:6]
    assert tags.reference_tag_bytes(key, call_id, from_tag) == reference.hex().encode()
    assert tags.COMPILED_TAG(key, call_id, from_tag) == reference.hex().encode()


def test_a_key_of_another_length_is_refused_by_both() -> None:
    assert tags.COMPILED_TAG is not None
    with pytest.raises(ValueError, match="16 bytes"):
        tags.COMPILED_TAG(b"short", b"call", b"tag")
    with pytest.raises(ValueError, match="16 bytes"):
        tags.siphash24(b"short", b"call")
