"""The test caller's core played through with no network: bytes and times in, bytes out."""

from __future__ import annotations

import numpy as np

from ringback.calls.uac import Connect, Uac, UacOptions
from ringback.calls.verdict import exit_status, verdict
from ringback.media.g711 import alaw_encode, ulaw_encode
from ringback.sip.message import parse_message
from ringback.sip.model import Request, Response
from ringback.sip.responses import make_response
from ringback.sip.sdp import parse_sdp

LOCAL = ("192.0.2.10", 5070)
RTP = ("192.0.2.10", 40000)
SERVER = ("192.0.2.1", 5060)
TARGET = "sip:+8613800138000@192.0.2.1:5060"
ANSWER = (
    b"v=0\r\no=rb 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
    b"m=audio 31000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\na=sendonly\r\n"
)


def make_uac(**kwargs: object) -> Uac:
    options = UacOptions(target=TARGET, proxy=SERVER, local=LOCAL, rtp=RTP, **kwargs)  # type: ignore[arg-type]
    return Uac(options)


def sent(uac: Uac) -> list[tuple[Request | Response, tuple[str, int]]]:
    return [(parse_message(data), dest) for data, dest in uac.take_outgoing()]


def only_request(uac: Uac) -> tuple[Request, tuple[str, int]]:
    out = sent(uac)
    assert len(out) == 1, out
    message, dest = out[0]
    assert isinstance(message, Request)
    return message, dest


def reply(
    request: Request,
    status: int,
    *,
    tag: str = "rb1",
    body: bytes = b"",
    contact: str = "<sip:192.0.2.1:5060>",
    extra: tuple[tuple[str, str], ...] = (),
) -> bytes:
    response = make_response(
        request,
        status,
        to_tag=tag if status > 100 else None,
        body=body,
        content_type="application/sdp" if body else None,
        extra_headers=(("Contact", contact), *extra) if status > 100 else extra,
    )
    return response.to_bytes()


def rtp(pcm: np.ndarray, seq: int, *, pt: int = 0, ssrc: int = 7, ts0: int = 1000) -> bytes:
    payload = ulaw_encode(pcm) if pt == 0 else alaw_encode(pcm)
    ts = ts0 + seq * 160
    return (
        bytes([0x80, pt])
        + seq.to_bytes(2, "big")
        + ts.to_bytes(4, "big")
        + (ssrc.to_bytes(4, "big") + payload)
    )


def tone(freq: float, seconds: float, level: float = 0.3) -> np.ndarray:
    t = np.arange(int(8000 * seconds)) / 8000
    return (level * 32767 * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def chirp(seconds: float, level: float = 0.3) -> np.ndarray:
    t = np.arange(int(8000 * seconds)) / 8000
    return (level * 32767 * np.sin(2 * np.pi * (440 + 300 * t) * t)).astype(np.int16)


def feed_audio(uac: Uac, pcm: np.ndarray, now: float, **kwargs: int) -> float:
    for i in range(len(pcm) // 160):
        uac.receive_rtp(rtp(pcm[i * 160 : (i + 1) * 160], i, **kwargs), now)
        now += 0.02
    return now


def test_the_invite_carries_an_offer_of_the_chosen_codec() -> None:
    uac = make_uac(codec="PCMA", require_100rel=True)
    uac.start(0.0)
    invite, dest = only_request(uac)
    assert dest == SERVER
    assert (invite.method, invite.uri, invite.cseq) == ("INVITE", TARGET, (1, "INVITE"))
    assert invite.headers.get("Require") == "100rel"
    assert invite.headers.get("Supported") == "100rel"
    assert invite.headers.get("To") == f"<{TARGET}>"
    assert invite.headers.get("Contact") == "<sip:dial@192.0.2.10:5070>"
    assert invite.top_via.branch and invite.top_via.branch.startswith("z9hG4bK")
    offer = parse_sdp(invite.body)
    media = offer.media[0]
    assert (media.port, media.formats, offer.direction_of(media)) == (40000, ["8"], "sendrecv")
    assert offer.connection_of(media).host == "192.0.2.10"


def test_a_reliable_183_is_pracked_once_in_its_early_dialog() -> None:
    uac = make_uac(require_100rel=True)
    uac.start(0.0)
    invite, _ = only_request(uac)
    uac.receive(reply(invite, 100), SERVER, 0.001)
    assert sent(uac) == []
    reliable = reply(invite, 183, body=ANSWER, extra=(("Require", "100rel"), ("RSeq", "4711")))
    uac.receive(reliable, SERVER, 0.01)
    prack, dest = only_request(uac)
    assert prack.method == "PRACK"
    assert prack.uri == "sip:192.0.2.1:5060"  # the 183's Contact: the early dialog's target
    assert dest == SERVER
    assert prack.headers.get("RAck") == "4711 1 INVITE"
    assert prack.cseq == (2, "PRACK")
    assert prack.call_id == invite.call_id
    assert prack.to_tag == "rb1" and prack.from_tag == invite.from_tag
    assert prack.top_via.branch != invite.top_via.branch

    uac.receive(reliable, SERVER, 0.5)  # the 183 again (our PRACK crossed it): no new PRACK
    assert sent(uac) == []
    uac.receive(reply(prack, 200), SERVER, 0.02)
    assert sent(uac) == []
    assert uac.attempts[0].pracks == 1
    assert uac.attempts[0].statuses == [100, 183, 183]


def test_an_unreliable_183_is_not_pracked() -> None:
    uac = make_uac()
    uac.start(0.0)
    invite, _ = only_request(uac)
    uac.receive(reply(invite, 183, body=ANSWER, extra=(("RSeq", "1"),)), SERVER, 0.01)
    assert sent(uac) == []


def test_a_302_is_acked_and_followed_with_the_next_cseq_and_the_same_call() -> None:
    uac = make_uac()
    uac.start(0.0)
    invite, _ = only_request(uac)
    contact = "sip:+8613800138000@192.0.2.1:5060;rbk"
    played = (("X-Ringback-Warning", "played"),)
    uac.receive(reply(invite, 302, contact=f"<{contact}>", extra=played), SERVER, 0.01)
    out = sent(uac)
    assert [m.method for m, _ in out] == ["ACK", "INVITE"]  # type: ignore[union-attr]
    ack, follow = out[0][0], out[1][0]
    assert isinstance(ack, Request) and isinstance(follow, Request)
    assert ack.top_via.branch == invite.top_via.branch  # the 302's ACK: same transaction
    assert ack.cseq == (1, "ACK")
    assert follow.uri == contact
    assert out[1][1] == ("192.0.2.1", 5060)
    assert follow.cseq == (invite.cseq[0] + 1, "INVITE")
    assert follow.call_id == invite.call_id
    assert follow.from_tag == invite.from_tag
    assert follow.headers.get("To") == invite.headers.get("To")  # no tag: a new dialog
    assert follow.top_via.branch != invite.top_via.branch
    assert follow.body == invite.body

    result = verdict(uac)
    assert result["redirects"] == [contact]
    assert result["warning_header"] == "played"
    assert result["post_dial_delay_ms"] == 10.0


def test_no_follow_reports_the_302_and_ends() -> None:
    uac = make_uac(follow=False)
    uac.start(0.0)
    invite, _ = only_request(uac)
    uac.receive(reply(invite, 302), SERVER, 0.002)
    assert [m.method for m, _ in sent(uac)] == ["ACK"]  # type: ignore[union-attr]
    assert uac.done
    result = verdict(uac)
    assert result["final"] == {"status": 302, "reason": "Moved Temporarily"}
    assert result["answered"] is None
    assert result["redirects"] == ["sip:192.0.2.1:5060"]


def test_a_486_is_acked_and_reported_as_the_error() -> None:
    uac = make_uac()
    uac.start(0.0)
    invite, _ = only_request(uac)
    uac.receive(reply(invite, 486), SERVER, 0.004)
    ack, _ = only_request(uac)
    assert ack.method == "ACK"
    assert uac.done
    result = verdict(uac)
    assert result["error"] == {"status": 486, "reason": "Busy Here"}
    assert result["answered"] == {"status": 486, "reason": "Busy Here", "after_redirect": False}
    assert result["post_dial_delay_ms"] == 4.0
    assert exit_status(result) == 0
    assert exit_status(result, expect_warning=True) == 1
    assert exit_status(result, expect_warning=False) == 0


def test_early_media_then_an_answer_then_bye_after_listening() -> None:
    uac = make_uac(listen_s=2.0)
    uac.start(0.0)
    invite, _ = only_request(uac)
    uac.receive(reply(invite, 183, body=ANSWER), SERVER, 0.01)
    warning = chirp(1.5)
    now = feed_audio(uac, warning, 0.02)
    uac.receive(reply(invite, 200, body=ANSWER, tag="rb2"), SERVER, now)
    ack, dest = only_request(uac)
    assert ack.method == "ACK" and ack.uri == "sip:192.0.2.1:5060" and dest == SERVER
    assert ack.cseq == (1, "ACK") and ack.to_tag == "rb2"
    assert ack.top_via.branch != invite.top_via.branch  # a 2xx's ACK is its own transaction
    uac.receive(reply(invite, 200, body=ANSWER, tag="rb2"), SERVER, now + 0.5)  # retransmitted
    again, _ = only_request(uac)
    assert again.method == "ACK"
    beeps = np.concatenate([tone(1000, 0.2), tone(1400, 0.2), np.zeros(1600, np.int16)] * 3)
    feed_audio(uac, beeps, now + 0.05, ssrc=99, ts0=5)
    assert uac.next_deadline() == now + 2.0
    uac.poll(now + 2.0)
    bye, _ = only_request(uac)
    assert bye.method == "BYE" and bye.cseq == (2, "BYE") and bye.to_tag == "rb2"
    assert not uac.done
    uac.receive(reply(bye, 200, tag="rb2"), SERVER, now + 2.01)
    assert uac.done

    result = verdict(uac, expected=warning[800:8000], expected_name="w.wav")
    assert result["warning"]["heard"] is True
    assert result["warning"]["duration_s"] == 1.5
    assert result["warning"]["codec"] == "PCMU"
    assert -15 < result["warning"]["rms_dbfs"] < -12  # a sweep at 0.3 of full scale
    assert result["expect"]["matches"] is True
    assert result["expect"]["correlation"] > 0.99
    assert result["expect"]["offset_s"] == 0.1
    answered = result["answered"]
    assert answered["status"] == 200 and answered["after_redirect"] is False
    assert answered["audio_s"] == 1.8
    assert answered["dominant_hz"] in (1000.0, 1400.0)
    assert {round(f, -1) for f in answered["frequencies_hz"][:2]} == {1000.0, 1400.0}
    assert answered["ended_by"] == "us"


def test_a_bye_from_the_far_end_is_answered_and_ends_the_call() -> None:
    uac = make_uac(listen_s=30.0)
    uac.start(0.0)
    invite, _ = only_request(uac)
    uac.receive(reply(invite, 200, body=ANSWER), SERVER, 0.01)
    sent(uac)
    bye = (
        "BYE sip:dial@192.0.2.10:5070 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-bye1;rport\r\nMax-Forwards: 70\r\n"
        f"From: <{TARGET}>;tag=rb1\r\nTo: {invite.headers.get('From')}\r\n"
        f"Call-ID: {invite.call_id}\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    uac.receive(bye, SERVER, 1.0)
    ok, dest = sent(uac)[0]
    assert isinstance(ok, Response) and ok.status == 200 and dest == SERVER
    assert uac.done
    assert verdict(uac)["answered"]["ended_by"] == "far end"


def test_quiet_or_short_early_media_is_not_a_warning_heard() -> None:
    for pcm in (tone(440, 2.0, level=0.004), tone(440, 0.8)):  # about -51 dBFS; 0.8 s
        uac = make_uac()
        uac.start(0.0)
        invite, _ = only_request(uac)
        uac.receive(reply(invite, 183, body=ANSWER), SERVER, 0.01)
        feed_audio(uac, pcm, 0.02)
        uac.receive(reply(invite, 302), SERVER, 3.0)
        result = verdict(uac, expected=tone(700, 0.5))
        assert result["warning"]["heard"] is False
        assert exit_status(result, expect_warning=True) == 1
        assert exit_status(result, expect_warning=False) == 0
        assert exit_status(result, expect_warning=False, expect_file=True) == 1


def test_a_different_recording_does_not_match() -> None:
    uac = make_uac()
    uac.start(0.0)
    invite, _ = only_request(uac)
    uac.receive(reply(invite, 183, body=ANSWER), SERVER, 0.01)
    feed_audio(uac, chirp(1.5), 0.02)
    uac.receive(reply(invite, 302), SERVER, 2.0)
    noise = (np.random.default_rng(1).normal(0, 6000, 12000)).astype(np.int16)
    result = verdict(uac, expected=noise)
    assert result["warning"]["heard"] is True
    assert result["expect"]["matches"] is False
    assert result["expect"]["correlation"] < 0.2
    assert exit_status(result, expect_file=True) == 1
    assert exit_status(result) == 0


def test_rtp_trailing_a_302_stays_with_the_early_media_it_belongs_to() -> None:
    uac = make_uac()
    uac.start(0.0)
    invite, _ = only_request(uac)
    uac.receive(reply(invite, 183, body=ANSWER), SERVER, 0.01)
    pcm = tone(440, 1.0)
    for i in range(49):
        uac.receive_rtp(rtp(pcm[i * 160 : (i + 1) * 160], i), 0.02 * i)
    uac.receive(reply(invite, 302, contact=f"<{TARGET};rbk>"), SERVER, 1.0)
    uac.receive_rtp(rtp(pcm[49 * 160 :], 49), 1.001)  # the last frame, after the 302
    assert uac.attempts[0].early.packets == 50
    assert uac.attempts[1].early.packets == 0


def test_no_final_response_within_the_timeout_cancels_and_exits_3() -> None:
    uac = make_uac(timeout_s=5.0)
    uac.start(0.0)
    invite, _ = only_request(uac)
    uac.receive(reply(invite, 180), SERVER, 0.1)
    assert uac.next_deadline() == 5.0
    uac.poll(5.0)
    cancel, _ = only_request(uac)
    assert cancel.method == "CANCEL" and cancel.top_via.branch == invite.top_via.branch
    assert cancel.cseq == (1, "CANCEL")
    uac.receive(reply(cancel, 200), SERVER, 5.01)
    uac.receive(reply(invite, 487), SERVER, 5.02)
    assert [m.method for m, _ in sent(uac)] == ["ACK"]  # type: ignore[union-attr]
    assert uac.done
    result = verdict(uac)
    assert result["no_final_response"] is True
    assert exit_status(result, expect_warning=False) == 3


def test_silence_from_the_far_end_gives_up_without_a_cancel() -> None:
    uac = make_uac(timeout_s=60.0)
    uac.start(0.0)
    sent(uac)
    t = 0.0
    while not uac.done:  # Timer A retransmits, Timer B gives up after 64*T1
        deadline = uac.next_deadline()
        assert deadline is not None
        t = deadline
        uac.poll(t)
        assert all(m.method == "INVITE" for m, _ in sent(uac))  # type: ignore[union-attr]
    assert t == 32.0
    assert verdict(uac)["error"] == {"status": None, "reason": "no response (Timer B)"}


def test_over_tcp_the_invite_waits_for_its_connection() -> None:
    uac = make_uac(transport="tcp")
    uac.start(0.0)
    assert uac.take_events() == [Connect(SERVER)]
    assert sent(uac) == []
    uac.connected(SERVER, ("192.0.2.10", 45678), 0.01)
    invite, dest = only_request(uac)
    assert dest == SERVER
    assert (invite.headers.get("Via") or "").startswith("SIP/2.0/TCP 192.0.2.10:45678;")
    assert invite.headers.get("Contact") == "<sip:dial@192.0.2.10:45678;transport=tcp>"
    uac.poll(10.0)
    assert sent(uac) == []  # no retransmissions over a reliable transport


def test_a_refused_connection_is_no_final_response() -> None:
    uac = make_uac(transport="tcp")
    uac.start(0.0)
    uac.take_events()
    uac.connection_failed(SERVER, "Connection refused", 0.01)
    assert uac.done
    result = verdict(uac)
    assert result["no_final_response"] is True
    assert "Connection refused" in result["error"]["reason"]
    assert exit_status(result) == 3
