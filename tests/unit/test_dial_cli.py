"""`ringback dial`'s arguments and its text verdict (no network)."""

from __future__ import annotations

import pytest

from ringback.dial import UsageError, _parse_via, _target, format_text


def test_numbers_and_uris_become_request_uris_and_first_hops() -> None:
    assert _target("+86 138-0013-8000", None) == (
        "sip:+8613800138000@127.0.0.1:5060",
        ("127.0.0.1", 5060),
    )
    assert _target("+8613800138000", ("::1", 5070)) == (
        "sip:+8613800138000@[::1]:5070",
        ("::1", 5070),
    )
    uri = "sip:+8613800138000@192.0.2.7:5080;user=phone"
    assert _target(uri, None) == (uri, ("192.0.2.7", 5080))
    assert _target(uri, ("192.0.2.1", 5060))[1] == ("192.0.2.1", 5060)  # --via wins
    for bad in ("13800138000", "+0123", "sips:+86138@192.0.2.7", "tel:+8613800138000"):
        with pytest.raises(UsageError):
            _target(bad, None)


def test_via_forms() -> None:
    assert _parse_via("10.0.0.1") == ("10.0.0.1", 5060)
    assert _parse_via("switch.example:5070") == ("switch.example", 5070)
    assert _parse_via("[2001:db8::1]:5062") == ("2001:db8::1", 5062)
    for bad in ("10.0.0.1:99999", "a:b:c"):
        with pytest.raises(UsageError):
            _parse_via(bad)


def test_the_text_verdict_names_each_fact() -> None:
    result = {
        "target": "sip:+8613800138000@127.0.0.1:5060",
        "transport": "udp",
        "warning": {
            "heard": True,
            "duration_s": 1.5,
            "codec": "PCMU",
            "rms_dbfs": -11.2,
            "packets": 75,
        },
        "expect": {"file": "w.wav", "matches": True, "correlation": 0.99, "offset_s": 0.0},
        "warning_header": "played",
        "redirects": ["sip:+8613800138000@127.0.0.1:5060;rbk"],
        "post_dial_delay_ms": 3.0,
        "final": {"status": 200, "reason": "OK"},
        "answered": {
            "status": 200,
            "reason": "OK",
            "after_redirect": True,
            "audio_s": 2.0,
            "codec": "PCMU",
            "rms_dbfs": -16.0,
            "dominant_hz": 1000.0,
            "frequencies_hz": [1000.0, 1400.0],
            "ended_by": "far end",
        },
        "attempts": [
            {"uri": "sip:+8613800138000@127.0.0.1:5060", "responses": [183, 302], "pracks": 1},
            {"uri": "sip:+8613800138000@127.0.0.1:5060;rbk", "responses": [200], "pracks": 0},
        ],
        "error": None,
        "no_final_response": False,
    }
    text = format_text(result)
    assert "HEARD: 1.50 s of early media, PCMU, -11.2 dBFS (75 packets)" in text
    assert "MATCH: correlation 0.99 at offset 0.00 s (w.wav)" in text
    assert "302 to sip:+8613800138000@127.0.0.1:5060;rbk" in text
    assert "200 OK after the redirect: 2.00 s of audio, dominant 1000 Hz" in text
    assert "PRACK" in text and "X-Ringback-Warning  played" in text
