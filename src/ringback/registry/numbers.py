"""E.164 normalisation of the called numbers that switches (and people) send.

The in-memory index keys listings by the E.164 number as an int without the ``+``: country
codes never start with 0, so the int is lossless and fits an int64 (at most 15 digits).

Rules of :func:`normalize`, in order:

1. A ``sip:``/``sips:``/``tel:`` URI is reduced to its user part (:func:`user_part`); a local
   ``tel:`` number with a global ``phone-context`` (``tel:6552-9988;phone-context=+86-10``) is
   prefixed with that context, as RFC 3966 §5.1.5 says.
2. Full-width forms typed by Chinese input methods (``＋８６　１３８…``) become ASCII, and
   visual separators are removed: space and other whitespace, ``-`` ``.`` ``(`` ``)`` (RFC 3966
   visual separators) and Unicode dashes.
3. What is left must be ASCII digits with an optional leading ``+``; letters, ``*``/``#``
   service codes and anything else raise :class:`NumberError`.
4. ``+CC…`` is international. A number starting with the plan's international prefix
   (``00``) is international: the prefix is dropped. Otherwise a number starting with the trunk
   prefix (``0``) is national: the trunk prefix is replaced by the country code.
5. Any other run of digits is taken as a national significant number (NSN) and gets the
   country code: in China mobile numbers are dialled with no trunk prefix (``13800138000``),
   and that is how national-format called numbers arrive from domestic switches. Except:
   digits that start with the country code and are longer than the longest national number
   (``national_max_digits``, 11 in China) are international without ``+``
   (``8613800138000``), as many switches send them.
6. For the plan's own country, a trunk prefix right after the country code is dropped: the
   written form ``+86 (0)10 6552 9988`` means ``+86 10 6552 9988``.
7. The result must have 8 to 15 digits (E.164 allows at most 15; 8 is the smallest
   subscriber number worth listing) and, for the plan's own country, an NSN of at least 7
   digits, so short service numbers (``10086``, ``95588``) are rejected.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final
from urllib.parse import unquote

__all__ = [
    "NumberError",
    "NumberingPlan",
    "format_e164",
    "normalize",
    "parse_e164",
    "user_part",
]

E164_MAX_DIGITS: Final = 15
E164_MIN_DIGITS: Final = 8
MIN_NATIONAL_DIGITS: Final = 7


class NumberError(ValueError):
    """A called number that cannot be normalised to E.164; the message says why."""


def _is_digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


@dataclass(frozen=True)
class NumberingPlan:
    """The home numbering plan: how national and international numbers are dialled.

    ``trunk_prefix`` may be empty for plans with no trunk prefix.
    """

    country_code: str = "86"
    trunk_prefix: str = "0"
    international_prefix: str = "00"
    # Longest national significant number (11 in China). Bare digits that start with the
    # country code and are longer than this are international numbers sent without "+"
    # (many switches send 8613800138000); 0 turns the rule off.
    national_max_digits: int = 11

    def __post_init__(self) -> None:
        cc = self.country_code
        if not (_is_digits(cc) and 1 <= len(cc) <= 3 and not cc.startswith("0")):
            raise ValueError(f"country code must be 1-3 digits not starting with 0: {cc!r}")
        if self.trunk_prefix and not _is_digits(self.trunk_prefix):
            raise ValueError(f"trunk prefix must be digits: {self.trunk_prefix!r}")
        if not _is_digits(self.international_prefix):
            raise ValueError(f"international prefix must be digits: {self.international_prefix!r}")


# --- URIs ------------------------------------------------------------------------------------

_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*):")
_GLOBAL_CONTEXT = re.compile(r"\+[0-9\-.()]*[0-9][0-9\-.()]*")


def _phone_context(params: list[str]) -> str | None:
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "phone-context":
            return unquote(value.strip())
    return None


def _telephone_subscriber(text: str) -> str:
    """The number of an RFC 3966 telephone-subscriber: params dropped, %-escapes decoded.

    A local number whose ``phone-context`` is a global number gets that context prepended; a
    domain-name context carries no digits and is ignored (the plan decides).
    """
    number, *params = text.split(";")
    number = unquote(number)
    context = _phone_context(params)
    if context and not number.startswith("+") and _GLOBAL_CONTEXT.fullmatch(context):
        return context + number
    return number


def user_part(uri: str) -> str:
    """The called number inside a ``sip:``, ``sips:`` or ``tel:`` URI.

    ``sip:+86-10-1234@host:5060;user=phone`` → ``+86-10-1234``; ``tel:+86-10-6552-9988;...``
    → ``+86-10-6552-9988``. Scheme case is ignored, surrounding ``<>`` are tolerated,
    parameters and headers are removed and %-escapes decoded. Text with no scheme (a bare
    number) is returned unchanged apart from surrounding whitespace.
    """
    text = uri.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1].strip()
    match = _SCHEME.match(text)
    if match is None:
        return text
    scheme = match.group(1).lower()
    rest = text[match.end() :]
    if scheme == "tel":
        return _telephone_subscriber(rest.split("?", 1)[0])
    if scheme not in ("sip", "sips"):
        raise NumberError(f"unsupported URI scheme: {scheme!r}")
    userinfo, at, _hostport = rest.partition("@")
    if not at:
        raise NumberError(f"no user part in URI: {uri.strip()!r}")
    user = userinfo.split(":", 1)[0]  # drop a password
    return _telephone_subscriber(user.split("?", 1)[0])


# --- normalisation ---------------------------------------------------------------------------

# Full-width forms from CJK input methods, and dashes that word processors substitute.
_FOLD = str.maketrans(
    {
        **{chr(0xFF10 + i): str(i) for i in range(10)},
        "\uff0b": "+",
        "\uff0d": "-",
        "\uff0e": ".",
        "\uff08": "(",
        "\uff09": ")",
        **dict.fromkeys("\u2010\u2011\u2012\u2013\u2014\u2015\u2212", "-"),
    }
)
_SEPARATORS: Final = frozenset("-.()")


def _strip_separators(text: str) -> str:
    return "".join(ch for ch in text.translate(_FOLD) if ch not in _SEPARATORS and not ch.isspace())


def _check_characters(compact: str, raw: str) -> None:
    body = compact[1:] if compact.startswith("+") else compact
    if _is_digits(body):
        return
    if any(ch.isalpha() for ch in body):
        raise NumberError(f"contains letters: {raw!r}")
    if any(ch in "*#" for ch in body):
        raise NumberError(f"service code, not a subscriber number: {raw!r}")
    if "+" in body:
        raise NumberError(f"'+' is only allowed at the start: {raw!r}")
    bad = next(ch for ch in body if not _is_digits(ch))
    raise NumberError(f"invalid character {bad!r} in {raw!r}")


def normalize(raw: str, plan: NumberingPlan) -> int:
    """Normalise a called number (bare or in a SIP/tel URI) to E.164, as an int without ``+``.

    See the module docstring for the rules. Raises :class:`NumberError` with the reason.
    """
    compact = _strip_separators(user_part(raw))
    if not compact or compact == "+":
        raise NumberError("empty number")
    _check_characters(compact, raw)

    cc = plan.country_code
    if compact.startswith("+"):
        digits = compact[1:]
    elif compact.startswith(plan.international_prefix):
        digits = compact[len(plan.international_prefix) :]
        if not digits:
            raise NumberError(f"international prefix with no number: {raw!r}")
    elif plan.trunk_prefix and compact.startswith(plan.trunk_prefix):
        digits = cc + compact[len(plan.trunk_prefix) :]
    elif (
        plan.national_max_digits
        and compact.startswith(cc)
        and len(compact) > plan.national_max_digits
    ):
        digits = compact  # longer than any national number: international without "+"
    else:
        digits = cc + compact
    if digits.startswith("0"):
        raise NumberError(f"country code cannot start with 0: {raw!r}")

    home = digits.startswith(cc)
    if home and plan.trunk_prefix and digits.startswith(plan.trunk_prefix, len(cc)):
        digits = cc + digits[len(cc) + len(plan.trunk_prefix) :]  # "+86 (0)10 ..."

    if len(digits) > E164_MAX_DIGITS:
        raise NumberError(
            f"too long: {len(digits)} digits (E.164 allows at most {E164_MAX_DIGITS})"
        )
    if home and len(digits) - len(cc) < MIN_NATIONAL_DIGITS:
        raise NumberError(
            f"too short: {len(digits) - len(cc)} digits after country code {cc}"
            f" (at least {MIN_NATIONAL_DIGITS})"
        )
    if len(digits) < E164_MIN_DIGITS:
        raise NumberError(f"too short: {len(digits)} digits (at least {E164_MIN_DIGITS})")
    return int(digits)


# --- strict E.164 text -----------------------------------------------------------------------

_E164 = re.compile(r"\+[1-9][0-9]{7,14}")


def format_e164(number: int) -> str:
    """``8613800138000`` → ``"+8613800138000"``."""
    if not 10 ** (E164_MIN_DIGITS - 1) <= number < 10**E164_MAX_DIGITS:
        raise NumberError(f"not an E.164 number: {number}")
    return f"+{number}"


def parse_e164(text: str) -> int:
    """Strict E.164 for API input: ``+`` then 8 to 15 digits, nothing else (no separators)."""
    if _E164.fullmatch(text) is None:
        raise NumberError(f"not in E.164 form '+' and 8-15 digits: {text!r}")
    return int(text[1:])
