"""Received RTP placed on the sender's timeline: order, loss, duplicates, strangers."""

from __future__ import annotations

import numpy as np

from ringback.media.g711 import alaw_encode, ulaw_decode, ulaw_encode
from ringback.media.recorder import RtpRecorder


def packet(payload: bytes, seq: int, ts: int, *, pt: int = 0, ssrc: int = 1, pad: int = 0) -> bytes:
    first = 0x80 | (0x20 if pad else 0)
    padding = bytes(pad - 1) + bytes([pad]) if pad else b""
    return (
        bytes([first, pt])
        + seq.to_bytes(2, "big")
        + (ts % 2**32).to_bytes(4, "big")
        + ssrc.to_bytes(4, "big")
        + payload
        + padding
    )


def frames(n: int) -> list[np.ndarray]:
    return [np.full(160, 1000 * (i + 1), np.int16) for i in range(n)]


def test_packets_land_by_timestamp_whatever_their_order() -> None:
    pcm = frames(4)
    recorder = RtpRecorder()
    ts0 = 2**32 - 320  # the timestamp wraps in the middle
    for i in (0, 2, 1, 3, 2):  # reordered, and one duplicate
        assert recorder.add(packet(ulaw_encode(pcm[i]), i, ts0 + 160 * i), float(i))
    out = recorder.pcm()
    assert len(out) == 640
    expected = ulaw_decode(ulaw_encode(np.concatenate(pcm)))
    assert np.array_equal(out, expected)
    assert recorder.codec == "PCMU" and recorder.packets == 5


def test_a_lost_packet_leaves_silence_of_its_length() -> None:
    pcm = frames(3)
    recorder = RtpRecorder()
    for i in (0, 2):
        recorder.add(packet(ulaw_encode(pcm[i]), i, 160 * i), 0.0)
    out = recorder.pcm()
    assert len(out) == 480
    assert not out[160:320].any()


def test_payload_types_follow_the_answer_and_strangers_are_ignored() -> None:
    pcm = frames(1)[0]
    recorder = RtpRecorder()
    assert recorder.add(packet(alaw_encode(pcm), 0, 0, pt=96), 0.0, {96: "PCMA"})
    assert recorder.codec == "PCMA"
    assert not recorder.add(packet(b"\x00" * 20, 1, 160, pt=101), 0.0)  # telephone-event
    assert not recorder.add(bytes([0x80, 200, 0, 1]) + bytes(24), 0.0)  # RTCP
    assert not recorder.add(b"\x00\x01", 0.0)
    assert recorder.ignored == 3


def test_padding_is_not_audio_and_streams_follow_one_another() -> None:
    a, b = frames(2)
    recorder = RtpRecorder()
    recorder.add(packet(ulaw_encode(a), 0, 0, pad=4), 0.0)
    recorder.add(packet(ulaw_encode(b), 0, 999, ssrc=2), 0.1)
    out = recorder.pcm()
    assert len(out) == 320
    assert 2 in recorder and 3 not in recorder
