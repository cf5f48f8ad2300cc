"""Lab mode's registrar (RFC 3261 §10), sans-I/O: softphones register a test number.

Only for test beds without a switch: users and passwords come from the config
(``lab.users``), every REGISTER is challenged with Digest, and bindings live in memory.
The address of record is the number in the To URI, normalised to E.164 like a callee.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ringback.sip.digest import DigestChallenger, parse_digest
from ringback.sip.errors import SipParseError
from ringback.sip.model import Request
from ringback.sip.uri import parse_name_addr

Address = tuple[str, int]
MIN_EXPIRES = 60
MAX_EXPIRES = 3600


@dataclass(slots=True)
class Binding:
    contact: str  # the registered Contact URI
    source: Address  # where the REGISTER came from
    transport: str
    expires_at: float


@dataclass(frozen=True, slots=True)
class Answer:
    """What to answer a REGISTER with."""

    status: int
    headers: tuple[tuple[str, str], ...] = ()
    reason: str | None = None


class Registrar:
    def __init__(
        self,
        users: dict[int, str],
        number_of: Callable[[str], int | None],
        *,
        realm: str = "ringback-lab",
    ) -> None:
        self.users = users  # E.164 number -> password
        self.number_of = number_of  # a URI's user part -> E.164, or None
        self.digest = DigestChallenger(realm)
        self.bindings: dict[int, Binding] = {}

    def register(self, request: Request, source: Address, transport: str, now: float) -> Answer:
        try:
            to_uri = parse_name_addr(request.headers.get("To") or "").uri
        except SipParseError:
            return Answer(400, reason="Bad To header")
        number = self.number_of(to_uri)
        if number is None or number not in self.users:
            return Answer(404, reason="Not a lab user")
        verdict = self.digest.verify(
            request.headers.get("Authorization"),
            method="REGISTER",
            users={_username(request): self.users[number]},
            now=now,
        )
        if not verdict.ok:
            challenge = self.digest.challenge(now, stale=verdict.stale)
            return Answer(401, (("WWW-Authenticate", challenge),))
        contacts = request.headers.get_all("Contact")
        expires_header = request.headers.get("Expires")
        if contacts == ["*"]:
            if expires_header is None or expires_header.strip() != "0":
                return Answer(400, reason="Contact * needs Expires: 0")
            self.bindings.pop(number, None)
            return Answer(200)
        if contacts:
            try:
                contact = parse_name_addr(contacts[0])
            except SipParseError:
                return Answer(400, reason="Bad Contact header")
            value = contact.get_param("expires") or expires_header or str(MAX_EXPIRES)
            try:
                expires = int(value)
            except ValueError:
                return Answer(400, reason="Bad expires value")
            if expires == 0:
                self.bindings.pop(number, None)
                return Answer(200)
            if expires < MIN_EXPIRES:
                return Answer(423, (("Min-Expires", str(MIN_EXPIRES)),), "Interval Too Brief")
            expires = min(expires, MAX_EXPIRES)
            self.bindings[number] = Binding(contact.uri, source, transport, now + expires)
        binding = self.lookup(number, now)
        if binding is None:
            return Answer(200)
        left = max(0, int(binding.expires_at - now))
        return Answer(200, (("Contact", f"<{binding.contact}>;expires={left}"),))

    def lookup(self, number: int, now: float) -> Binding | None:
        binding = self.bindings.get(number)
        if binding is not None and binding.expires_at <= now:
            del self.bindings[number]
            return None
        return binding


def _username(request: Request) -> str:
    """The username the client authenticates as (softphones use the number as written)."""
    params = parse_digest(request.headers.get("Authorization") or "") or {}
    return params.get("username", "")
