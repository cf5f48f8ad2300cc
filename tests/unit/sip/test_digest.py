"""Digest authentication for REGISTER: what softphones send, checked without server state."""

from __future__ import annotations

import hashlib

from ringback.sip.digest import DigestChallenger, parse_digest, response_for

USERS = {"+8613900139000": "s3cret"}


def credentials(
    challenge: str,
    *,
    user: str = "+8613900139000",
    password: str = "s3cret",
    uri: str = "sip:127.0.0.1",
    qop: bool = True,
) -> str:
    params = parse_digest(challenge)
    assert params is not None
    answer = {"nc": "00000001", "cnonce": "0a4f113b", **params}
    if not qop:
        answer.pop("qop")
    response = response_for(answer, username=user, password=password, method="REGISTER", uri=uri)
    extra = ', qop=auth, nc=00000001, cnonce="0a4f113b"' if qop else ""
    return (
        f'Digest username="{user}", realm="{params["realm"]}", nonce="{params["nonce"]}", '
        f'uri="{uri}", response="{response}", algorithm=MD5{extra}'
    )


def test_rfc2617_worked_example() -> None:
    # RFC 2617 §3.5 (HTTP GET); the digest rule is the same for SIP methods.
    params = {
        "realm": "testrealm@host.com",
        "nonce": "dcd98b7102dd2f0e8b11d0f600bfb0c093",
        "qop": "auth",
        "nc": "00000001",
        "cnonce": "0a4f113b",
    }
    got = response_for(
        params, username="Mufasa", password="Circle Of Life", method="GET", uri="/dir/index.html"
    )
    assert got == "6629fae49393a05397450978507c4ef1"


def test_a_softphone_that_answers_the_challenge_is_accepted() -> None:
    d = DigestChallenger("ringback-lab")
    challenge = d.challenge(1000.0)
    for qop in (True, False):  # RFC 2617 qop=auth, and the RFC 2069 form
        verdict = d.verify(
            credentials(challenge, qop=qop), method="REGISTER", users=USERS, now=1001.0
        )
        assert verdict.ok and verdict.username == "+8613900139000"


def test_wrong_password_user_nonce_or_realm_is_refused() -> None:
    d = DigestChallenger("ringback-lab")
    challenge = d.challenge(1000.0)
    bad = [
        credentials(challenge, password="guess"),
        credentials(challenge, user="+8613700137000"),
        credentials(challenge).replace("ringback-lab", "other"),
        credentials(DigestChallenger("ringback-lab").challenge(1000.0)),  # another key's nonce
        credentials(challenge).replace("Digest", "Basic"),
        None,
    ]
    for value in bad:
        assert not d.verify(value, method="REGISTER", users=USERS, now=1001.0).ok


def test_an_old_nonce_is_stale_not_wrong() -> None:
    d = DigestChallenger("ringback-lab", nonce_ttl_s=300)
    verdict = d.verify(credentials(d.challenge(1000.0)), method="REGISTER", users=USERS, now=1400.0)
    assert not verdict.ok and verdict.stale


def test_sha256_credentials_are_accepted() -> None:
    d = DigestChallenger("ringback-lab")
    params = parse_digest(d.challenge(0.0))
    assert params is not None
    params.update(algorithm="SHA-256", nc="00000001", cnonce="abc")
    response = response_for(
        params, username="+8613900139000", password="s3cret", method="REGISTER", uri="sip:h"
    )
    ha1 = hashlib.sha256(b"+8613900139000:ringback-lab:s3cret").hexdigest()
    assert len(response) == 64 and ha1 != response
    value = (
        f'Digest username="+8613900139000", realm="ringback-lab", nonce="{params["nonce"]}", '
        f'uri="sip:h", response="{response}", algorithm=SHA-256, qop=auth, nc=00000001, '
        'cnonce="abc"'
    )
    assert d.verify(value, method="REGISTER", users=USERS, now=1.0).ok
