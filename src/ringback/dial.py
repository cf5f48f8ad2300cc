"""`ringback dial`: place one test call and say what was heard.

The carriers' scriptable test caller. Arguments and output live here; the protocol is in
:mod:`ringback.calls.uac`, the sockets in :mod:`ringback.net.dialer`, the verdict in
:mod:`ringback.calls.verdict`.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import re
import sys
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ringback.calls.uac import Codec, UacOptions
from ringback.calls.verdict import (
    HEARD_MIN_DBFS,
    HEARD_MIN_S,
    MATCH_MIN,
    exit_status,
    heard_pcm,
    verdict,
)
from ringback.media.analysis import RATE
from ringback.media.codec_decode import decode_to_8k
from ringback.media.ingest import IngestError, IngestLimits, decode
from ringback.net.dialer import Dialer, local_ip_towards, resolve
from ringback.runtime import run_loop
from ringback.sip.errors import SipParseError
from ringback.sip.uri import SipUri, parse_uri

__all__ = ["add_parser", "main"]

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
DEFAULT_VIA = "127.0.0.1:5060"
# --codec value -> the codec offered
CODECS: dict[str, Codec] = {
    "pcmu": "PCMU",
    "pcma": "PCMA",
    "g722": "G722",
    "opus": "opus",
    "amr": "AMR",
    "amr-wb": "AMR-WB",
}
_E164 = re.compile(r"\+[1-9][0-9]{1,14}")
_SEPARATORS = re.compile(r"[\s\-.()]")


class UsageError(Exception):
    pass


def add_parser(sub: Any) -> None:
    """The `dial` subcommand on the `ringback` parser."""
    p: argparse.ArgumentParser = sub.add_parser(
        "dial",
        help="place a test call and report whether the warning was heard",
        description="Place a test call: INVITE with an offer, early media recorded, 100rel "
        "PRACKed, redirects followed, the answered call listened to; then a verdict. "
        "Exit status: 0 normally (with --expect-warning/--expect-no-warning/--expect: only "
        "when that holds, else 1), 2 usage error, 3 no final response within --timeout.",
    )
    p.add_argument("number", help="E.164 number (+8613800138000) or a full sip: URI")
    p.add_argument(
        "--via",
        metavar="HOST:PORT",
        help=f"where the INVITE goes (default {DEFAULT_VIA}; for a sip: URI, its host)",
    )
    p.add_argument("--transport", choices=("udp", "tcp"), default="udp")
    p.add_argument(
        "--codec",
        choices=tuple(CODECS),
        default="pcmu",
        help="the one offered (amr, amr-wb: bandwidth-efficient; decoded with ffmpeg)",
    )
    p.add_argument("--local-ip", metavar="IP", help="our SIP and RTP address (default: the "
                   "address that routes to --via)")  # fmt: skip
    p.add_argument("--record", metavar="FILE.wav", help="write what was heard (8 kHz mono)")
    p.add_argument(
        "--listen",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="how long to listen once answered before hanging up (default 5)",
    )
    p.add_argument(
        "--expect",
        metavar="FILE",
        help="the recording the early media should match (any audio file ffmpeg reads)",
    )
    expectation = p.add_mutually_exclusive_group()
    expectation.add_argument(
        "--expect-warning", action="store_true", help="exit 1 unless the warning is heard"
    )
    expectation.add_argument(
        "--expect-no-warning", action="store_true", help="exit 1 if the warning is heard"
    )
    p.add_argument("--json", action="store_true", help="print the verdict as one JSON object")
    p.add_argument("--no-follow", action="store_true", help="report a 3xx, do not follow it")
    p.add_argument("--100rel", dest="require_100rel", action="store_true",
                   help="send Require: 100rel (reliable 18x, PRACKed)")  # fmt: skip
    p.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        metavar="S",
        help="give up on an INVITE with no final response after S seconds (default 60)",
    )


def main(args: argparse.Namespace) -> int:
    try:
        return run_loop(_dial(args))
    except UsageError as exc:
        print(f"ringback dial: {exc}", file=sys.stderr)
        return EXIT_USAGE


def _parse_via(text: str) -> tuple[str, int]:
    match = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\](?::(\d+))?|([^:\[\]]+)(?::(\d+))?", text.strip())
    if match is None:
        raise UsageError(f"--via {text!r}: expected HOST:PORT")
    host = match.group(1) or match.group(3)
    port = int(match.group(2) or match.group(4) or 5060)
    if not 0 < port < 65536:
        raise UsageError(f"--via {text!r}: port out of range")
    return host, port


def _target(number: str, via: tuple[str, int] | None) -> tuple[str, tuple[str, int]]:
    """The Request-URI to dial, and the host and port of the first hop."""
    if number.lower().startswith(("sip:", "sips:", "tel:")):
        try:
            uri = parse_uri(number)
        except SipParseError as exc:
            raise UsageError(f"{number!r}: {exc.reason}") from None
        if not isinstance(uri, SipUri) or uri.scheme.lower() != "sip":
            raise UsageError(f"{number!r}: only sip: URIs can be dialled (no TLS, no tel:)")
        return number, via or (uri.host.strip("[]"), uri.port or 5060)
    compact = _SEPARATORS.sub("", number)
    if not _E164.fullmatch(compact):
        raise UsageError(
            f"{number!r} is not an E.164 number (+ and up to 15 digits); "
            "give a sip: URI for anything else"
        )
    hop = via or _parse_via(DEFAULT_VIA)
    host = f"[{hop[0]}]" if ":" in hop[0] else hop[0]
    return f"sip:{compact}@{host}:{hop[1]}", hop


async def _expected(path: str) -> npt.NDArray[np.int16]:
    if not Path(path).is_file():
        raise UsageError(f"--expect {path}: no such file")
    try:
        pcm = await decode(Path(path), IngestLimits(max_duration_s=600.0), time.monotonic() + 60.0)
    except IngestError as exc:
        raise UsageError(f"--expect {path}: {exc}") from None
    if len(pcm) == 0:
        raise UsageError(f"--expect {path}: no audio in it")
    return pcm


async def _dial(args: argparse.Namespace) -> int:
    if args.listen < 0 or args.timeout <= 0:
        raise UsageError("--listen must be >= 0 and --timeout > 0")
    via = _parse_via(args.via) if args.via else None
    target, (hop_host, hop_port) = _target(args.number, via)
    expected = await _expected(args.expect) if args.expect else None
    try:
        hop = await resolve(hop_host, hop_port)
    except OSError as exc:
        raise UsageError(f"cannot resolve {hop_host}: {exc}") from None
    if args.local_ip:
        try:
            local_ip = str(ipaddress.ip_address(args.local_ip))
        except ValueError:
            raise UsageError(f"--local-ip {args.local_ip!r} is not an IP address") from None
    else:
        local_ip = local_ip_towards(hop)
    options = UacOptions(
        target=target,
        proxy=hop,
        local=(local_ip, 0),
        rtp=(local_ip, 0),
        transport=args.transport,
        codec=CODECS[args.codec],
        decoder=decode_to_8k,
        require_100rel=args.require_100rel,
        follow=not args.no_follow,
        listen_s=args.listen,
        timeout_s=args.timeout,
    )
    dialer = Dialer(options)
    try:
        uac = await dialer.run()
    except OSError as exc:
        raise UsageError(f"cannot open sockets on {local_ip}: {exc}") from None
    # decoding G.722/Opus/AMR runs ffmpeg: off the event loop
    result = await asyncio.to_thread(verdict, uac, expected=expected, expected_name=args.expect)
    if args.record:
        _write_wav(Path(args.record), heard_pcm(uac))
        result["recorded"] = args.record
    if args.json:
        print(json.dumps(result))
    else:
        print(format_text(result))
    if dialer.interrupted:
        return EXIT_INTERRUPTED
    expect_warning = True if args.expect_warning else False if args.expect_no_warning else None
    return exit_status(result, expect_warning=expect_warning, expect_file=expected is not None)


def _write_wav(path: Path, pcm: npt.NDArray[np.int16]) -> None:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(pcm.astype("<i2").tobytes())


def format_text(result: dict[str, Any]) -> str:
    """The verdict for a person: one fact a line."""
    lines = [f"ringback dial {result['target']} ({result['transport']})"]

    def row(label: str, text: str) -> None:
        lines.append(f"  {label:<20}{text}")

    warning = result["warning"]
    if warning["packets"]:
        facts = (
            f"{warning['duration_s']:.2f} s of early media, {warning['codec']}, "
            f"{warning['rms_dbfs']:.1f} dBFS ({warning['packets']} packets)"
        )
    else:
        facts = "no early media"
    verdict_word = "HEARD" if warning["heard"] else "not heard"
    row("warning", f"{verdict_word}: {facts}")
    expect = result["expect"]
    if expect is not None:
        if expect["correlation"] is None:
            row("expected audio", f"NO MATCH: nothing to compare ({expect['file']})")
        else:
            word = "MATCH" if expect["matches"] else "NO MATCH"
            row(
                "expected audio",
                f"{word}: correlation {expect['correlation']:.2f} at offset "
                f"{expect['offset_s']:.2f} s ({expect['file']})",
            )
    row("X-Ringback-Warning", result["warning_header"] or "(none)")
    delay = result["post_dial_delay_ms"]
    row("post-dial delay", "(no response)" if delay is None else f"{delay:.1f} ms")
    for attempt, contact in zip(
        (a for a in result["attempts"] if a["responses"] and 300 <= a["responses"][-1] < 400),
        result["redirects"],
        strict=False,
    ):
        row("redirected", f"{attempt['responses'][-1]} to {contact}")
    for attempt in result["attempts"]:
        if attempt["pracks"]:
            row("PRACK", f"{attempt['pracks']} sent (reliable provisional responses)")
    answered = result["answered"]
    if answered is not None:
        label = "answered" if answered["status"] < 300 else "final response"
        text = f"{answered['status']} {answered['reason']}"
        if answered["after_redirect"]:
            text += " after the redirect"
        if "audio_s" in answered:
            text += f": {answered['audio_s']:.2f} s of audio"
            if answered["frequencies_hz"]:
                tones = ", ".join(f"{f:g}" for f in answered["frequencies_hz"])
                text += f", dominant {answered['dominant_hz']:g} Hz (peaks {tones} Hz)"
            if answered["ended_by"]:
                text += f"; hung up by {answered['ended_by']}"
        row(label, text)
    elif result["final"] is not None:
        row("final response", f"{result['final']['status']} {result['final']['reason']}")
    error = result["error"]
    if error is not None:
        status = "" if error["status"] is None else f"{error['status']} "
        row("error", f"{status}{error['reason']}")
    if result.get("recorded"):
        row("recorded", result["recorded"])
    lines.append(
        f"  (heard: early media >= {HEARD_MIN_S:g} s above {HEARD_MIN_DBFS:g} dBFS; "
        f"match: correlation >= {MATCH_MIN:g})"
    )
    return "\n".join(lines)
