"""SDES-SRTP (RFC 4568 keys in SDP, RFC 3711 encryption) for warnings offered over RTP/SAVP.

An offer's ``a=crypto:<tag> <suite> inline:<key||salt>[|lifetime][|MKI:len]`` lines carry
the caller's keys for what *it* sends; we never decrypt anything (the warning is send-only),
so they are only read to choose a suite. Our answer names the same tag and suite with a
fresh random master key and salt of our own, and every packet we send is protected with it
by libsrtp (``pylibsrtp``). Suites: ``AES_CM_128_HMAC_SHA1_80`` and ``_32`` (RFC 4568
§6.2), the ones SIP phones and SBCs offer; an offer with session parameters (``KDR=``,
``UNENCRYPTED_SRTP``, ...) or an MKI is skipped for the next line.

Pure computation (libsrtp is a library call, no I/O).
"""

from __future__ import annotations

import base64
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from ringback.media.rtp import RtpStream

__all__ = [
    "SUITES",
    "Crypto",
    "SrtpStream",
    "available",
    "choose_crypto",
    "new_crypto",
    "protector",
]

# suite -> libsrtp profile name
SUITES: Final = {
    "AES_CM_128_HMAC_SHA1_80": "SRTP_PROFILE_AES128_CM_SHA1_80",
    "AES_CM_128_HMAC_SHA1_32": "SRTP_PROFILE_AES128_CM_SHA1_32",
}
KEY_SALT_BYTES: Final = 30  # 128-bit master key + 112-bit master salt
_LINE = re.compile(r"^(\d{1,9})\s+(\S+)\s+inline:([A-Za-z0-9+/=]+)(\|[^\s]*)?$")


@dataclass(frozen=True, slots=True)
class Crypto:
    """What our answer says and how we encrypt: the offer's tag and suite, our key."""

    tag: int
    suite: str
    key: bytes  # our master key || salt (30 bytes)

    def attribute_value(self) -> str:
        return f"{self.tag} {self.suite} inline:{base64.b64encode(self.key).decode()}"


def available() -> bool:
    """Whether libsrtp can be used here (the ``pylibsrtp`` wheel imports)."""
    try:
        import pylibsrtp  # noqa: F401
    except ImportError:
        return False
    return True


def choose_crypto(values: list[str]) -> tuple[int, str] | None:
    """(tag, suite) of the first ``a=crypto`` value we can answer, or None."""
    for value in values:
        m = _LINE.match(value.strip())
        if m is None or m.group(2) not in SUITES:
            continue
        params = m.group(4) or ""
        if "MKI" in params.upper() or ":" in params:
            continue  # an MKI: our packets would have to carry one
        try:
            key = base64.b64decode(m.group(3), validate=True)
        except ValueError:
            continue
        if len(key) != KEY_SALT_BYTES:
            continue
        return int(m.group(1)), m.group(2)
    return None


def new_crypto(tag: int, suite: str) -> Crypto:
    return Crypto(tag, suite, secrets.token_bytes(KEY_SALT_BYTES))


def protector(crypto: Crypto) -> Callable[[bytes], bytes]:
    """A function turning one RTP packet into its SRTP form, for one outbound stream."""
    import pylibsrtp

    policy = pylibsrtp.Policy(
        key=crypto.key,
        ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND,
        srtp_profile=getattr(pylibsrtp.Policy, SUITES[crypto.suite]),
    )
    session = pylibsrtp.Session(policy=policy)
    return session.protect


class SrtpStream(RtpStream):
    """An :class:`RtpStream` whose packets leave encrypted (one libsrtp session each)."""

    __slots__ = ("_protect",)

    def __init__(self, payloads: list[bytes], payload_type: int, crypto: Crypto, **kw: int) -> None:
        super().__init__(payloads, payload_type, **kw)
        self._protect = protector(crypto)

    def render(self, i: int) -> bytes:  # type: ignore[override]
        return self._protect(bytes(super().render(i)))
