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

:func:`dialled_number` is the stricter reading for the call path: it takes the parts of a
Request-URI as the SIP parser gives them, understands the telephone-subscriber parameters
(``npdi``/``rn`` number portability, ``phone-context``, ``isub``, ``ext``) and refuses a local
number whose area is unknown (:class:`AmbiguousNumber`) instead of turning it into a wrong one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import unquote

__all__ = [
    "AmbiguousNumber",
    "NumberError",
    "NumberingPlan",
    "dialled_number",
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


class AmbiguousNumber(NumberError):
    """A number that could be more than one E.164 number: a local number with no area code.

    It is refused, never guessed: prefixing it with some area code could list the call of an
    innocent subscriber.
    """


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
    # Longest subscriber number dialled without an area code (8 in China, 7 in North
    # America). A national significant number this short is a local number: which area it
    # belongs to is unknown, so dialled_number() refuses it as ambiguous unless a
    # phone-context names the area. 0 turns the rule off (closed numbering plans).
    local_max_digits: int = 8

    def __post_init__(self) -> None:
        cc = self.country_code
        if not (_is_digits(cc) and 1 <= len(cc) <= 3 and not cc.startswith("0")):
            raise ValueError(f"country code must be 1-3 digits not starting with 0: {cc!r}")
        if self.trunk_prefix and not _is_digits(self.trunk_prefix):
            raise ValueError(f"trunk prefix must be digits: {self.trunk_prefix!r}")
        if not _is_digits(self.international_prefix):
            raise ValueError(f"international prefix must be digits: {self.international_prefix!r}")
        if self.local_max_digits < 0 or (
            self.national_max_digits and self.local_max_digits >= self.national_max_digits
        ):
            raise ValueError(
                "local_max_digits must be 0 or more and shorter than national_max_digits:"
                f" {self.local_max_digits}"
            )


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


# --- the called number of a Request-URI ------------------------------------------------------

# RFC 3966 domainname: dot-separated labels of letters, digits and hyphens, the last (top)
# label starting with a letter.
_DOMAIN = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?\.)*[A-Za-z](?:[A-Za-z0-9\-]*[A-Za-z0-9])?\.?"
)
_GLOBAL_DIGITS = re.compile(r"\+([1-9][0-9]*)")


def _context_param(
    params: list[str], uri_params: Mapping[str, str | None] | None, raw: str
) -> str | None:
    """The one ``phone-context`` among the user part's and the URI's parameters, or None."""
    found: list[str] = []
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "phone-context":
            found.append(value.strip())
    for key, given in (uri_params or {}).items():
        if key.strip().lower() == "phone-context":
            found.append((given or "").strip())
    if not found:
        return None
    if not all(found):
        raise NumberError(f"phone-context with no value: {raw!r}")
    if len(set(found)) > 1:
        raise NumberError(f"conflicting phone-context values {sorted(set(found))!r}: {raw!r}")
    return found[0]


def _national_digits(compact: str, plan: NumberingPlan, area: str, raw: str) -> str:
    """Country code and number for digits dialled inside the home country (no ``+``).

    ``area`` is the area code the number was dialled from (from a ``phone-context``), or "".
    """
    cc = plan.country_code
    if compact.startswith(plan.international_prefix):
        digits = compact[len(plan.international_prefix) :]
        if not digits:
            raise NumberError(f"international prefix with no number: {raw!r}")
        return digits
    if plan.trunk_prefix and compact.startswith(plan.trunk_prefix):
        return cc + compact[len(plan.trunk_prefix) :]
    if (
        plan.national_max_digits
        and compact.startswith(cc)
        and len(compact) > plan.national_max_digits
    ):
        return compact  # longer than any national number: international without "+"
    if area and len(compact) <= plan.local_max_digits:
        return cc + area + compact  # a local number, dialled inside the context's area
    return cc + compact


def _checked_e164(digits: str, plan: NumberingPlan, raw: str) -> int:
    cc = plan.country_code
    trunk = plan.trunk_prefix
    if digits.startswith("0"):
        raise NumberError(f"country code cannot start with 0: {raw!r}")
    home = digits.startswith(cc)
    if home and trunk and digits.startswith(trunk, len(cc)):
        digits = cc + digits[len(cc) + len(trunk) :]  # "+86 (0)10 ..."
        if digits.startswith(trunk, len(cc)):
            raise NumberError(f"trunk prefix {trunk!r} twice after country code {cc}: {raw!r}")
    if len(digits) > E164_MAX_DIGITS:
        raise NumberError(
            f"too long: {len(digits)} digits (E.164 allows at most {E164_MAX_DIGITS}): {raw!r}"
        )
    national = len(digits) - len(cc)
    if home and national < MIN_NATIONAL_DIGITS:
        raise NumberError(
            f"too short: {national} digits after country code {cc}"
            f" (at least {MIN_NATIONAL_DIGITS}): {raw!r}"
        )
    if home and national <= plan.local_max_digits:
        raise AmbiguousNumber(
            f"local number with no area code: {national} digits after country code {cc}"
            f" (a national number has more than {plan.local_max_digits}); a phone-context"
            f" with the area code, e.g. phone-context=+{cc}-<area>, makes it national: {raw!r}"
        )
    if len(digits) < E164_MIN_DIGITS:
        raise NumberError(f"too short: {len(digits)} digits (at least {E164_MIN_DIGITS}): {raw!r}")
    return int(digits)


def dialled_number(
    user: str, uri_params: Mapping[str, str | None] | None, plan: NumberingPlan
) -> int:
    """The E.164 number (an int without ``+``) a caller dialled, from a Request-URI's parts.

    ``user`` is the user part of a ``sip:``/``sips:`` Request-URI with %-escapes already
    decoded (``SipUri.user_unescaped``), telephone-subscriber parameters included:
    ``+8613800138000;npdi;rn=+8613900000000``. For a ``tel:`` URI it is the URI text
    (``tel:+86-10-6552-9988;isub=1234``, scheme optional) or just its number, with the
    parameters in ``uri_params``. ``uri_params`` are the URI's own parameters (for ``sip:``
    those after the host, such as ``user=phone``; may be None).

    Parameters, wherever they are written:

    - ``npdi``, ``rn``, ``rn-context``, ``cic`` (number portability, RFC 4694): ignored. The
      number looked up is always the dialled number, never the routing number ``rn``, which
      names the carrier's switch and not the subscriber.
    - ``isub``, ``isub-encoding``, ``ext`` (subaddress, extension), ``user=phone``,
      ``transport`` and any parameter not known here: ignored.
    - ``phone-context`` (RFC 3966 §5.1.5) says where a local number (one with no ``+``) was
      dialled; it is ignored on a global number. A global context in the home country, such as
      ``+86`` or ``+86-10``, means the number is read with the home plan's rules as if dialled
      in that country or area: with an area code in the context, a local number (at most
      ``plan.local_max_digits`` digits) gets that area code, so ``6552-9988`` in
      ``+86-10`` is ``+861065529988``; a mobile or a number with a trunk or international
      prefix is read as it stands. A context ``+86`` alone only makes the number national.
      A domain-name context (``bj.example.cn``) carries no digits and changes nothing. A
      foreign global context is refused (:class:`AmbiguousNumber`): the foreign dialling plan
      is unknown here and RFC 3966 warns that prefixing the context's digits need not give a
      valid number. The same ``phone-context`` may appear in ``user`` and in ``uri_params``;
      two different ones, an empty one or one that is neither ``+digits`` nor a domain name
      are refused.

    The number itself: visual separators ``-`` ``.`` ``(`` ``)`` and whitespace are removed
    (and full-width forms folded) as in :func:`normalize`; then ``+CC…`` is international,
    the international prefix (``00``) introduces one, the trunk prefix (``0``) a national
    number, and bare digits are a national significant number (``13800138000``) or, when
    they start with the country code and are longer than any national number, an
    international one sent without ``+``. For the home country a trunk prefix written after
    the country code is dropped (``+86(0)1065529988`` is ``+861065529988``).

    Unlike :func:`normalize`, a home-country number whose national part has at most
    ``plan.local_max_digits`` digits is a local number with no area code — ``65529988``,
    ``+86 6552 9988``, ``0 6552 9988`` — and raises :class:`AmbiguousNumber`: which number
    was meant is unknown, and guessing could match an innocent subscriber.

    Everything else that is not a number raises :class:`NumberError` with the reason (letters,
    ``*``/``#`` service codes, too short, too long, a bad ``phone-context``). The function is
    pure: no I/O and no state, so the call path may call it for every INVITE.
    """
    raw = user
    text = user.strip()
    if text[:4].lower() == "tel:":
        text = text[4:]
    number, *params = text.split(";")
    context = _context_param(params, uri_params, raw)
    compact = _strip_separators(number)
    if not compact or compact == "+":
        raise NumberError(f"empty number: {raw!r}")
    _check_characters(compact, raw)

    if compact.startswith("+"):
        return _checked_e164(compact[1:], plan, raw)  # a global number: context is moot
    if context is None:
        return _checked_e164(_national_digits(compact, plan, "", raw), plan, raw)
    if not context.startswith("+"):
        if _DOMAIN.fullmatch(context) is None:
            raise NumberError(
                f"phone-context {context!r} is neither a global number (+...) nor a domain"
                f" name: {raw!r}"
            )
        return _checked_e164(_national_digits(compact, plan, "", raw), plan, raw)
    match = _GLOBAL_DIGITS.fullmatch(_strip_separators(context))
    if match is None:
        raise NumberError(f"phone-context {context!r} is not a valid global number: {raw!r}")
    prefix = match.group(1)
    cc = plan.country_code
    if not prefix.startswith(cc):
        raise AmbiguousNumber(
            f"local number in a foreign phone-context {context!r}: that country's dialling"
            f" plan is unknown here: {raw!r}"
        )
    area = prefix[len(cc) :]
    if plan.trunk_prefix and area.startswith(plan.trunk_prefix):
        area = area[len(plan.trunk_prefix) :]  # "+86-(0)10"
    return _checked_e164(_national_digits(compact, plan, area, raw), plan, raw)


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
