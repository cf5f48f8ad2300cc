"""IMS callers against the real `ringback serve` (issue 15), from a scripted SIP peer.

- A VoLTE INVITE (`Require: precondition`, `Supported: 100rel`, RFC 3312 segmented qos
  lines, `P-Early-Media: supported`) gets a reliable 183 with `P-Early-Media: sendonly`
  and our side's resources met; the warning's RTP starts only after the caller's UPDATE
  says its own are met (our 200 to it shows both sides met), then the 302 follows.
- An AMR-WB offer without `octet-align` is answered bandwidth-efficient (RFC 4867's
  default); the RTP we send, re-framed into the RFC 4867 §5 storage format by the RFC's
  bit layout (written here, independently of ringback's packetiser) and decoded by ffmpeg's
  own AMR-WB decoder, is the court's recording.
"""

from __future__ import annotations

import itertools
import re
import secrets
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from harness import LOCALHOST, RtpPacket, RtpReceiver, SipTarget, free_port, g711_decode
from test_softphones import WARNING_S, assert_court_audio

pytestmark = pytest.mark.interop


@dataclass
class Reply:
    status: int
    headers: dict[str, list[str]]
    body: str
    raw: str
    at: float = field(default_factory=time.time)

    def header(self, name: str) -> str:
        values = self.headers.get(name.lower(), [])
        return ", ".join(values)


def parse_reply(data: bytes) -> Reply:
    text = data.decode()
    head, _, body = text.partition("\r\n\r\n")
    lines = head.split("\r\n")
    status = int(lines[0].split()[1])
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    return Reply(status, headers, body, text)


class ScriptedCaller:
    """A UDP SIP caller on loopback that writes its requests by hand."""

    def __init__(self, target: SipTarget) -> None:
        self.target = (target.host, target.port)
        self.number = target.held
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((LOCALHOST, free_port("udp")))
        self.port = self.sock.getsockname()[1]
        self.call_id = f"{secrets.token_hex(8)}@ims-test"
        self.from_tag = secrets.token_hex(4)
        self.cseq = 0
        self.to_tag = ""

    def close(self) -> None:
        self.sock.close()

    def send(self, method: str, extra: str = "", body: str = "", cseq: int | None = None) -> None:
        if cseq is None:
            self.cseq += 1
            cseq = self.cseq
        to = f"<sip:{self.number}@{self.target[0]}>" + (
            f";tag={self.to_tag}" if self.to_tag else ""
        )
        msg = (
            f"{method} sip:{self.number}@{self.target[0]}:{self.target[1]} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {LOCALHOST}:{self.port};rport"
            f";branch=z9hG4bK{secrets.token_hex(6)}\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:+8613911112222@{LOCALHOST}>;tag={self.from_tag}\r\n"
            f"To: {to}\r\n"
            f"Call-ID: {self.call_id}\r\n"
            f"CSeq: {cseq} {method}\r\n"
            f"Contact: <sip:caller@{LOCALHOST}:{self.port}>\r\n"
            + extra
            + ("Content-Type: application/sdp\r\n" if body else "")
            + f"Content-Length: {len(body.encode())}\r\n\r\n"
            + body
        )
        self.sock.sendto(msg.encode(), self.target)
        self.last_sent_at = time.time()

    def expect(
        self, status: int | None = None, *, cseq_method: str = "", timeout: float = 5
    ) -> Reply:
        """The next response (of ``status`` and CSeq method if given; others skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            self.sock.settimeout(max(deadline - time.monotonic(), 0.01))
            try:
                data, _ = self.sock.recvfrom(65535)
            except TimeoutError:
                pytest.fail(f"no {status or 'response'} within {timeout} s", pytrace=False)
            if not data.startswith(b"SIP/2.0"):
                continue
            reply = parse_reply(data)
            if status is not None and reply.status != status:
                continue
            if cseq_method and not reply.header("CSeq").endswith(cseq_method):
                continue
            return reply

    def ack(self, invite_cseq: int, reply: Reply) -> None:
        to_tag = re.search(r";tag=([^;>\s]+)", reply.header("To"))
        self.to_tag = to_tag.group(1) if to_tag else ""
        self.send("ACK", cseq=invite_cseq)


def sdp(rtp_port: int, media: str, extra: str = "", version: int = 1) -> str:
    return (
        "v=0\r\n"
        f"o=ue 1 {version} IN IP4 {LOCALHOST}\r\n"
        "s=-\r\n"
        f"c=IN IP4 {LOCALHOST}\r\n"
        "t=0 0\r\n"
        f"{media}\r\n".replace("PORT", str(rtp_port))
        + extra
    )


QOS_NONE = (
    "a=curr:qos local none\r\n"
    "a=curr:qos remote none\r\n"
    "a=des:qos mandatory local sendrecv\r\n"
    "a=des:qos mandatory remote sendrecv\r\n"
)
QOS_MET = QOS_NONE.replace("curr:qos local none", "curr:qos local sendrecv")
PCMU = "m=audio PORT RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000"


def rtp_audio_after(packets: list[RtpPacket]) -> np.ndarray:
    return np.concatenate([g711_decode(p.payload, p.payload_type) for p in packets])


def test_volte_precondition_exchange_then_the_warning(
    redirect_target: SipTarget, court_reference: np.ndarray
) -> None:
    caller = ScriptedCaller(redirect_target)
    with RtpReceiver() as rtp:
        try:
            caller.send(
                "INVITE",
                "Require: precondition\r\nSupported: 100rel, timer\r\nP-Early-Media: supported\r\n",
                sdp(rtp.port, PCMU, QOS_NONE + "a=sendrecv\r\n"),
            )
            invite_cseq = caller.cseq
            progress = caller.expect(183, timeout=10)
            # a reliable 183 that keeps the precondition and gates early media (RFC 5009)
            assert "100rel" in progress.header("Require"), progress.raw
            assert "precondition" in progress.header("Require"), progress.raw
            assert progress.header("P-Early-Media") == "sendonly", progress.raw
            rseq = int(progress.header("RSeq"))
            answer = progress.body
            assert "a=curr:qos local sendrecv" in answer, answer  # our side is met
            assert "a=curr:qos remote none" in answer, answer  # theirs, as they said
            assert "a=des:qos mandatory local sendrecv" in answer, answer
            assert "a=conf:qos remote sendrecv" in answer, answer  # tell us when yours is
            assert "a=sendonly" in answer and "a=rtpmap:0 PCMU/8000" in answer, answer
            to_tag = re.search(r";tag=([^;>\s]+)", progress.header("To"))
            assert to_tag is not None
            caller.to_tag = to_tag.group(1)

            caller.send("PRACK", f"RAck: {rseq} {invite_cseq} INVITE\r\n")
            caller.expect(200, cseq_method="PRACK")
            assert not rtp.datagrams, "RTP before the caller's preconditions were met"

            caller.send("UPDATE", "", sdp(rtp.port, PCMU, QOS_MET + "a=sendrecv\r\n", version=2))
            update_sent = caller.last_sent_at
            ok = caller.expect(200, cseq_method="UPDATE")
            assert "a=curr:qos local sendrecv" in ok.body, ok.body
            assert "a=curr:qos remote sendrecv" in ok.body, ok.body  # both sides met now
            assert "a=conf:" not in ok.body, ok.body
            assert re.search(r"o=ringback (\d+) (\d+)", ok.body), ok.body

            caller.to_tag = ""  # the final response's To tag is read again for the ACK
            final = caller.expect(302, timeout=WARNING_S + 8)
            assert final.header("X-Ringback-Warning") == "played", final.raw
            caller.ack(invite_cseq, final)
        finally:
            caller.close()
    packets = rtp.packets
    assert packets, "no RTP at all"
    assert packets[0].arrival >= update_sent, "the warning started before the UPDATE"
    assert_court_audio(rtp_audio_after(packets), 8000, court_reference, "after preconditions")


def test_precondition_never_met_fails_open_with_the_302(redirect_target: SipTarget) -> None:
    """A caller that never sends its UPDATE gets its 302 after the bound (fail open)."""
    caller = ScriptedCaller(redirect_target)
    with RtpReceiver() as rtp:
        try:
            caller.send(
                "INVITE",
                "Require: precondition, 100rel\r\n",
                sdp(rtp.port, PCMU, QOS_NONE + "a=sendrecv\r\n"),
            )
            invite_cseq = caller.cseq
            progress = caller.expect(183, timeout=10)
            assert "precondition" in progress.header("Require")
            assert "P-Early-Media" not in progress.raw  # the caller did not offer it
            caller.send(
                "PRACK", f"RAck: {progress.header('RSeq')} {invite_cseq} INVITE\r\n", cseq=None
            )
            final = caller.expect(302, timeout=15)
            assert final.header("X-Ringback-Warning") == "skipped; reason=preconditions_unmet"
            caller.ack(invite_cseq, final)
        finally:
            caller.close()
    assert not rtp.packets, "RTP although the caller's preconditions never were met"


# ---------------------------------------------------------------- AMR-WB, bandwidth-efficient

AMR_WB_BITS = {0: 132, 1: 177, 2: 253, 3: 285, 4: 317, 5: 365, 6: 397, 7: 461, 8: 477, 9: 40, 15: 0}


def be_payload_to_storage_frame(payload: bytes) -> bytes:
    """RFC 4867 §4.3 (CMR 4 bits, ToC 6 bits: F FT Q, speech bits) → §5.3 storage frame
    (header octet 0 FT Q 0 0, speech bits padded to octets), one frame per payload."""
    bits = "".join(f"{b:08b}" for b in payload)
    toc = bits[4:10]
    assert toc[0] == "0", "more than one frame in a packet"
    ft = int(toc[1:5], 2)
    quality = toc[5]
    speech = bits[10 : 10 + AMR_WB_BITS[ft]]
    speech += "0" * (-len(speech) % 8)
    header = int(f"0{toc[1:5]}{quality}00", 2)
    return bytes([header]) + int(speech or "0", 2).to_bytes(len(speech) // 8, "big")


def test_amr_wb_bandwidth_efficient_rtp_decodes_to_the_warning(
    redirect_target: SipTarget, court_reference: np.ndarray, interop_dir: Path
) -> None:
    caller = ScriptedCaller(redirect_target)
    media = "m=audio PORT RTP/AVP 97\r\na=rtpmap:97 AMR-WB/16000\r\na=fmtp:97 mode-set=0,1,2"
    with RtpReceiver() as rtp:
        try:
            caller.send("INVITE", "", sdp(rtp.port, media, "a=sendrecv\r\n"))
            invite_cseq = caller.cseq
            progress = caller.expect(183, timeout=10)
            assert "a=rtpmap:97 AMR-WB/16000" in progress.body, progress.body
            assert "octet-align" not in progress.body, progress.body  # bandwidth-efficient
            assert "mode-set=0,1,2" in progress.body, progress.body
            final = caller.expect(302, timeout=WARNING_S + 8)
            caller.ack(invite_cseq, final)
        finally:
            caller.close()
    packets = rtp.packets
    assert len(packets) >= WARNING_S * 50 - 1, len(packets)
    assert {p.payload_type for p in packets} == {97}
    steps = {b.timestamp - a.timestamp for a, b in itertools.pairwise(packets)}
    assert steps == {320}, steps  # 20 ms at AMR-WB's 16 kHz RTP clock
    frames = [be_payload_to_storage_frame(p.payload) for p in packets]
    assert {f[0] >> 3 & 0x0F for f in frames} == {2}, "not mode 2 (12.65 kbit/s) of mode-set 0,1,2"
    awb = interop_dir / "heard.awb"
    awb.write_bytes(b"#!AMR-WB\n" + b"".join(frames))
    decoded = subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "amr", "-i", str(awb), "-ar", "8000", "-ac", "1",
         "-f", "s16le", "-"],
        capture_output=True,
        check=True,
    ).stdout  # fmt: skip
    samples = np.frombuffer(decoded, dtype="<i2").astype(np.float64) / 32768.0
    assert_court_audio(samples, 8000, court_reference, "AMR-WB bandwidth-efficient, ffmpeg")


# ---------------------------------------------------------------- SDES-SRTP


def test_srtp_offer_gets_an_srtp_answer_and_encrypted_audio(
    redirect_target: SipTarget, court_reference: np.ndarray
) -> None:
    """An RTP/SAVP offer with SDES a=crypto is answered RTP/SAVP with ringback's own key;
    every packet on the wire is SRTP (not readable as G.711), and libsrtp decrypts it with
    the answer's key into the court's recording."""
    import base64

    import pylibsrtp

    caller = ScriptedCaller(redirect_target)
    offered_key = base64.b64encode(bytes(range(30))).decode()
    media = (
        "m=audio PORT RTP/SAVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
        "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" + offered_key
    )
    with RtpReceiver() as rtp:
        try:
            caller.send("INVITE", "", sdp(rtp.port, media, "a=sendrecv\r\n"))
            invite_cseq = caller.cseq
            progress = caller.expect(183, timeout=10)
            final = caller.expect(302, timeout=WARNING_S + 8)
            caller.ack(invite_cseq, final)
        finally:
            caller.close()
    assert re.search(r"m=audio \d+ RTP/SAVP 0", progress.body), progress.body
    crypto = re.search(r"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:(\S+)", progress.body)
    assert crypto is not None, progress.body
    key = base64.b64decode(crypto.group(1))
    assert len(key) == 30 and crypto.group(1) != offered_key  # a key of its own
    packets = rtp.packets
    assert len(packets) >= WARNING_S * 50 - 1
    assert {len(p.payload) for p in packets} == {160 + 10}  # 80-bit auth tag on each
    session = pylibsrtp.Session(
        policy=pylibsrtp.Policy(
            key=key,
            ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND,
            srtp_profile=pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
        )
    )
    raw = [d for _, d, _ in rtp.datagrams]
    plain = [session.unprotect(d) for d in raw]
    audio = np.concatenate([g711_decode(p[12:], 0) for p in plain])
    assert_court_audio(audio, 8000, court_reference, "SRTP decrypted with the answer's key")
    ciphertext = np.concatenate([g711_decode(d[12:-10], 0) for d in raw])
    assert _correlation_with(ciphertext, court_reference) < 0.3  # not sent in the clear


def _correlation_with(samples: np.ndarray, reference: np.ndarray) -> float:
    n = min(len(samples), len(reference))
    a, b = samples[:n], reference[:n]
    return float(abs(np.dot(a, b)) / np.sqrt(np.dot(a, a) * np.dot(b, b) + 1e-12))
