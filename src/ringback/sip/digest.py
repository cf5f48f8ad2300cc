"""HTTP Digest authentication for SIP REGISTER (RFC 3261 §22, RFC 2617, RFC 7616), sans-I/O.

The registrar challenges with ``401`` and a ``WWW-Authenticate: Digest`` carrying a nonce
it can check without keeping state: ``timestamp:HMAC(key, timestamp)``, so a nonce is
valid for ``nonce_ttl_s`` and cannot be forged. MD5 is what every softphone speaks
(Linphone, Zoiper, MicroSIP, baresip, pyVoIP); SHA-256 (RFC 8760) is accepted too.
``qop=auth`` and the RFC 2069 form without qop are both checked.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

__all__ = ["DigestChallenger", "parse_digest"]

_ALGORITHMS = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}


def parse_digest(value: str) -> dict[str, str] | None:
    """The parameters of a ``Digest`` credentials or challenge value (names lower-cased),
    or None when it is not a Digest value."""
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "digest":
        return None
    params: dict[str, str] = {}
    i, n = 0, len(rest)
    while i < n:
        while i < n and rest[i] in " ,\t":
            i += 1
        eq = rest.find("=", i)
        if eq < 0:
            break
        name = rest[i:eq].strip().lower()
        i = eq + 1
        if i < n and rest[i] == '"':
            j = i + 1
            chars: list[str] = []
            while j < n and rest[j] != '"':
                if rest[j] == "\\" and j + 1 < n:
                    j += 1
                chars.append(rest[j])
                j += 1
            params[name] = "".join(chars)
            i = j + 1
        else:
            j = rest.find(",", i)
            j = n if j < 0 else j
            params[name] = rest[i:j].strip()
            i = j
    return params


def _h(algorithm: str, text: str) -> str:
    return _ALGORITHMS[algorithm](text.encode("utf-8")).hexdigest()


def response_for(
    params: dict[str, str], *, username: str, password: str, method: str, uri: str
) -> str:
    """The ``response`` value a client computes for a challenge (for tests and tools)."""
    algorithm = params.get("algorithm", "MD5").upper()
    ha1 = _h(algorithm, f"{username}:{params['realm']}:{password}")
    ha2 = _h(algorithm, f"{method}:{uri}")
    if params.get("qop"):
        return _h(
            algorithm,
            f"{ha1}:{params['nonce']}:{params['nc']}:{params['cnonce']}:{params['qop']}:{ha2}",
        )
    return _h(algorithm, f"{ha1}:{params['nonce']}:{ha2}")


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    username: str = ""
    stale: bool = False  # the nonce was ours but expired: challenge again with stale=true


class DigestChallenger:
    def __init__(self, realm: str, *, nonce_ttl_s: float = 300.0, key: bytes | None = None):
        self.realm = realm
        self.nonce_ttl_s = nonce_ttl_s
        self._key = key or secrets.token_bytes(32)

    def _sign(self, stamp: str) -> str:
        return hmac.new(self._key, stamp.encode(), hashlib.sha256).hexdigest()[:32]

    def challenge(self, now: float, *, stale: bool = False) -> str:
        """A ``WWW-Authenticate`` value with a fresh nonce."""
        stamp = f"{int(now):x}"
        nonce = f"{stamp}:{self._sign(stamp)}"
        extra = ", stale=true" if stale else ""
        return f'Digest realm="{self.realm}", nonce="{nonce}", algorithm=MD5, qop="auth"{extra}'

    def verify(
        self, authorization: str | None, *, method: str, users: dict[str, str], now: float
    ) -> Verdict:
        """Check an ``Authorization`` header against ``users`` (name → password)."""
        if authorization is None:
            return Verdict(False)
        params = parse_digest(authorization)
        if params is None:
            return Verdict(False)
        username = params.get("username", "")
        password = users.get(username)
        nonce = params.get("nonce", "")
        stamp, _, mac = nonce.partition(":")
        if password is None or params.get("realm") != self.realm:
            return Verdict(False)
        if not hmac.compare_digest(mac, self._sign(stamp)):
            return Verdict(False)  # not our nonce
        algorithm = params.get("algorithm", "MD5").upper()
        if algorithm not in _ALGORITHMS or "uri" not in params or "response" not in params:
            return Verdict(False)
        if params.get("qop") and (
            params["qop"] != "auth" or "nc" not in params or "cnonce" not in params
        ):
            return Verdict(False)
        expected = response_for(
            params, username=username, password=password, method=method, uri=params["uri"]
        )
        if not hmac.compare_digest(expected, params["response"].lower()):
            return Verdict(False)
        try:
            issued = int(stamp, 16)
        except ValueError:
            return Verdict(False)
        if now - issued > self.nonce_ttl_s:
            return Verdict(False, username, stale=True)
        return Verdict(True, username)
