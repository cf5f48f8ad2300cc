"""The lean path for the common INVITE: bytes in, 302 bytes out, no message objects.

Most INVITEs call a number that is not listed and are answered at once with a 302. This
reads only what that answer needs from the raw bytes — the Request-URI, the Via lines,
From, To, Call-ID, CSeq, Max-Forwards and Content-Length — copies the Via/From/To/Call-ID/
CSeq lines into the 302 byte for byte (the top Via with ``received``/``rport`` as RFC 3261
§18.2.2 and RFC 3581 want), adds the To tag derived from Call-ID and From tag
(:mod:`ringback.sip.tags`) and the loop-marked Contact, and registers the transaction so
that retransmissions, the ACK and Timer G behave as on the full path.

Anything it does not recognise — a compact or unusual header spelling, folded lines, a To
tag, Max-Forwards 0, an odd Via or CSeq, a listed number to be warned, lab mode's loop-
marked call — returns None before anything is counted or sent, and the caller takes the
full parser instead. For a message it answers, the bytes are the ones the full path would
have sent (``tests/unit/calls/test_fast_path.py`` compares them, with hypothesis).
"""

from __future__ import annotations

from collections.abc import Callable

from ringback.calls.decision import LOOP_MARKED, Decider
from ringback.calls.metrics import SipMetrics
from ringback.calls.redirect import WARNING_HEADER
from ringback.sip.errors import SipParseError
from ringback.sip.grammar import token_match
from ringback.sip.headers import ENCODING, ENCODING_ERRORS, SINGLETONS, canonical
from ringback.sip.message import Limits
from ringback.sip.tags import derived_tag_bytes
from ringback.sip.transaction import MAGIC_COOKIE, ServerTransactionLayer

Address = tuple[str, int]
# What a 302 needs from an INVITE: (Request-URI, Call-ID, From tag, transaction key, where
# the 302 goes, the copied lines up to the To value, the rest of the copied lines), so that
# the 302 is STATUS_LINE + head_a + ";tag=" + tag + head_b + Contact ... (Via/From/To/
# Call-ID/CSeq in their order, the top Via rewritten, each line ending in CRLF).
Scan = tuple[bytes, bytes, bytes, tuple[str, ...], Address, bytes, bytes]

COMPILED_SCAN: Callable[..., Scan | bytes | None] | None
# An ACK's (branch, host, port): fast_via_branch(top_via_value(data)) in C, or None.
COMPILED_ACK_KEY: Callable[[bytes], tuple[str, str, str] | None] | None
try:  # the same scans in C (src/ringback/_fastsip.c); the Python ones are the reference
    from ringback._fastsip import ack_key as COMPILED_ACK_KEY
    from ringback._fastsip import scan_invite as COMPILED_SCAN
except ImportError:  # pragma: no cover - built by `pip install`; the Python scans then
    COMPILED_SCAN = COMPILED_ACK_KEY = None

# Header names spelled exactly as the full path writes them: (key, copied into the 302).
_EXACT: dict[bytes, str] = {
    b"Via": "via",
    b"From": "from",
    b"To": "to",
    b"Call-ID": "call-id",
    b"CSeq": "cseq",
    b"Max-Forwards": "max-forwards",
    b"Content-Length": "content-length",
    b"Content-Type": "content-type",
}
_COPIED = frozenset(("via", "from", "to", "call-id", "cseq"))
# Any other spelling of these is left to the full path (compact forms, other case).
_WATCHED = frozenset(_EXACT.values())
ABSORBED = ""  # the outcome of a retransmission answered again (no decision made)
_BLANK = b" \t"
_MAX_CSEQ = 2**32 - 1
_STATUS_LINE = b"SIP/2.0 302 Moved Temporarily\r\n"
_WARNING_PREFIX = WARNING_HEADER.encode() + b": skipped; reason="


class FastRedirect:
    """Answers the common INVITE with a 302 from its raw bytes, or returns None."""

    def __init__(
        self,
        decider: Decider,
        metrics: SipMetrics,
        limits: Limits,
        tag_key: bytes,
        *,
        lab: bool = False,
    ) -> None:
        self.decider = decider
        self.metrics = metrics
        self.limits = limits
        self.tag_key = tag_key
        self.lab = lab  # a loop-marked INVITE is the lab's to answer: full path
        # Other header names seen: None when the name is fine and not ours, else "" (give up).
        self._names: dict[bytes, str | None] = {}
        # The compiled scan (C, same answers as `scan`), or None: `scan` in Python.
        self.compiled = COMPILED_SCAN
        # Counter cells bumped per INVITE (see Counter.cell): requests, 302s, decisions.
        self._invites = metrics.requests.cell("INVITE")
        self._302s = metrics.responses.cell("302")
        self._outcomes: dict[str, list[int]] = {}

    def invite(
        self,
        data: bytes,
        source: Address,
        reliable: bool,
        layer: ServerTransactionLayer,
        now: float,
        wall_now: float,
    ) -> str | None:
        """Answer ``data`` (an INVITE) and return the decision outcome, or None to have
        the full path handle it (:data:`ABSORBED` for a retransmission answered again).
        Queues the 302 on ``layer``'s outgoing list."""
        compiled = self.compiled
        scan: Scan | bytes | None
        if compiled is None:
            scan = self.scan(data, source, reliable)
        else:
            limits = self.limits
            scan = compiled(
                data,
                source[0],
                source[1],
                reliable,
                limits.max_message_size,
                limits.max_header_count,
                limits.max_line_length,
                self._names,
            )
            if isinstance(scan, bytes):  # a header name it has not seen: classified here
                scan = self.scan(data, source, reliable)
        if scan is None:
            return None
        ruri_bytes, call_id, from_tag, tx_key, dest, head_a, head_b = scan
        if layer.resend_last(tx_key):
            self._invites[0] += 1
            return ABSORBED  # a retransmission: the last response again
        ruri = ruri_bytes.decode(ENCODING, ENCODING_ERRORS)
        if "<" in ruri or ">" in ruri:
            return None
        try:
            decision = self.decider.decide(ruri, wall_now)
        except SipParseError:
            return None
        except Exception:  # the full path has the fail-open answer for this
            return None
        if decision.entry is not None or (self.lab and decision.outcome == LOOP_MARKED):
            return None  # a warning to play, or the lab's call: the full path
        tag = derived_tag_bytes(self.tag_key, call_id, from_tag)
        contact = decision.contact.encode(ENCODING, ENCODING_ERRORS)
        warning = _WARNING_PREFIX + decision.outcome.encode() + b"\r\n" if decision.skipped else b""
        out = b"".join(
            (
                _STATUS_LINE,
                head_a,
                b";tag=",
                tag,
                head_b,
                b"Contact: <",
                contact,
                b">\r\n",
                warning,
                b"Content-Length: 0\r\n\r\n",
            )
        )
        layer.answer_invite(tx_key, dest, reliable, out, now)
        outcome = decision.outcome
        cell = self._outcomes.get(outcome)
        if cell is None:
            cell = self._outcomes[outcome] = self.metrics.decisions.cell(outcome)
        cell[0] += 1
        self._invites[0] += 1
        self._302s[0] += 1
        return outcome

    def scan(self, data: bytes, source: Address, reliable: bool) -> Scan | None:
        """What the 302 needs from ``data``, read in Python (the reference for
        ``_fastsip.scan_invite``): see :data:`Scan`; None for anything unusual."""
        limits = self.limits
        end = data.find(b"\r\n\r\n")
        if end <= 0 or len(data) > limits.max_message_size:
            return None
        head = data[:end]
        if b"\n " in head or b"\n\t" in head or b"\r\r" in head:
            return None  # folded lines (or stray CRs): the full parser's job
        lines = head.split(b"\r\n")
        if head.count(b"\n") != len(lines) - 1:
            return None  # a bare LF somewhere
        if len(lines) > limits.max_header_count + 1:
            return None
        if end > limits.max_line_length and max(map(len, lines)) > limits.max_line_length:
            return None
        request_line = lines[0].split(b" ")
        if len(request_line) != 3 or request_line[2] != b"SIP/2.0":
            return None
        copied: list[bytes] = []
        singles: dict[str, bytes] = {}
        top_via_at = -1
        to_at = -1
        names = self._names
        for line in lines[1:]:
            colon = line.find(b":")
            if colon <= 0:
                return None
            key = _EXACT.get(line[:colon])
            if key is None:
                name = line[:colon]
                verdict = names.get(name, "")
                if verdict is None:
                    continue
                if name in names or not self._other_name(name):
                    return None
                continue
            if key not in _COPIED:  # read, not copied: any spacing (sipp pads its length)
                if key in singles:
                    return None
                singles[key] = line[colon + 1 :].strip()
                continue
            value_at = colon + 2
            if (
                line[colon + 1 : value_at] != b" "
                or line[value_at : value_at + 1] in _BLANK
                or line[-1:] in _BLANK
            ):
                return None  # the full path would strip: not byte for byte
            if key == "via":
                if top_via_at < 0:
                    top_via_at = len(copied)
                copied.append(line)
                continue
            if key in singles:
                return None
            if key == "to":
                to_at = len(copied)
            singles[key] = line[value_at:]
            copied.append(line)
        if top_via_at < 0 or len(singles) < 4:
            return None
        call_id = singles.get("call-id")
        cseq = singles.get("cseq")
        to = singles.get("to")
        from_ = singles.get("from")
        if not call_id or cseq is None or to is None or from_ is None:
            return None
        number, _, method = cseq.partition(b" ")
        if method != b"INVITE" or not number.isdigit() or len(number) > 10:
            return None
        if int(number) > _MAX_CSEQ:
            return None
        max_forwards = singles.get("max-forwards")
        if max_forwards is not None and (
            not max_forwards.isdigit() or len(max_forwards) > 3 or not 0 < int(max_forwards) < 256
        ):
            return None  # 483 or 400: the full path answers those
        length = singles.get("content-length")
        if length is None or not length.isdigit() or int(length) > len(data) - end - 4:
            return None  # bytes past Content-Length are dropped, as the full parser does
        if b"tag" in to.lower():
            return None  # a To tag (re-INVITE for a dialog we lack: 481), or odd
        from_tag = _from_tag(from_)
        if from_tag is None:
            return None
        via = _top_via(copied[top_via_at], source, reliable)
        if via is None:
            return None
        tx_key, dest, via_line = via
        copied[top_via_at] = via_line
        joined = b"\r\n".join(copied) + b"\r\n"
        split = sum(map(len, copied[: to_at + 1])) + 2 * to_at
        return request_line[1], call_id, from_tag, tx_key, dest, joined[:split], joined[split:]

    def _other_name(self, name: bytes) -> bool:
        """Whether a header name we do not copy is fine to pass over (cached)."""
        text = name.decode(ENCODING, ENCODING_ERRORS)
        stripped = text.rstrip()
        entry = canonical(stripped.lower())
        key = entry[1] if entry is not None else stripped.lower()
        fine = (
            stripped == text
            and key not in _WATCHED
            and key not in SINGLETONS  # a repeated Content-Type is a 400: not tracked here
            and (entry is not None or bool(token_match(stripped)))
        )
        if len(self._names) < 1024:
            self._names[name] = None if fine else ""
        return fine


def _from_tag(value: bytes) -> bytes | None:
    """The tag of ``From: ["name"] <uri>;tag=x``; None for any other spelling."""
    gt = value.rfind(b">")
    if gt < 0 or b'"' in value[gt:]:
        return None
    tail = value[gt + 1 :]
    if b" " in tail or b"\t" in tail:
        return None
    found = None
    for param in tail.split(b";")[1:]:
        name, eq, tag = param.partition(b"=")
        if name.lower() == b"tag":
            if found is not None or not eq or not tag:
                return None
            found = tag
    return found


def _top_via(
    line: bytes, source: Address, reliable: bool
) -> tuple[tuple[str, ...], Address, bytes] | None:
    """(transaction key, where the 302 goes, the top Via line as the 302 carries it) for
    ``Via: SIP/2.0/<T> host[:port];params`` with an RFC 3261 branch; None otherwise."""
    value = line[5:]
    if not value.startswith(b"SIP/2.0/") or b"," in value or b'"' in value:
        return None
    space = value.find(b" ", 8)
    semi = value.find(b";", space)
    if space < 0 or semi < 0 or b" " in value[space + 1 :] or b"\t" in value:
        return None
    transport = value[8:space]
    if not transport.isalpha():
        return None
    sent_by = value[space + 1 : semi].decode(ENCODING, ENCODING_ERRORS)
    host, colon, port = sent_by.partition(":")
    if not host or host[0] == "[" or not host.replace(".", "").replace("-", "").isalnum():
        return None
    if colon:
        if not port.isdigit() or port[0] == "0" or len(port) > 5 or int(port) > 65535:
            return None
        via_port = int(port)
    else:
        port = "5061" if transport.upper() in (b"TLS", b"WSS") else "5060"
        via_port = 0
    src_host, src_port = source
    branch = None
    rport = False
    params: list[bytes] = []
    for param in value[semi + 1 :].split(b";"):
        name, eq, param_value = param.partition(b"=")
        low = name.lower()
        if not name or (eq and not param_value):
            return None
        if low == b"branch":
            if branch is not None or not eq:
                return None
            branch = param_value.decode(ENCODING, ENCODING_ERRORS)
        elif low == b"maddr":
            return None  # obeyed only inside the trusted networks: the full path decides
        elif low == b"rport":
            rport = True
            params.append(name + b"=" + str(src_port).encode())
            continue
        elif low == b"received":
            continue
        params.append(param)
    if branch is None or not branch.startswith(MAGIC_COOKIE) or len(branch) <= 7:
        return None
    if rport or host.lower() != src_host.lower():
        params.append(b"received=" + src_host.encode())
        rewritten = line[:5] + value[:semi] + b";" + b";".join(params)
    else:
        rewritten = line  # the full path leaves it as it came
    dest = source if reliable or rport else (src_host, via_port or 5060)
    return (branch, host.lower(), port, "INVITE"), dest, rewritten
