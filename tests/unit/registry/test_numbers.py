"""E.164 normalisation and the dialled number of a Request-URI: examples and properties."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from ringback.registry.numbers import (
    AmbiguousNumber,
    NumberError,
    NumberingPlan,
    dialled_number,
    format_e164,
    normalize,
    parse_e164,
    user_part,
)
from ringback.sip.uri import parse_uri

CN = NumberingPlan()
NANP = NumberingPlan(country_code="1", trunk_prefix="1", international_prefix="011")

# --- examples --------------------------------------------------------------------------------

NORMALIZE_CASES = [
    # Chinese mobile: dialled nationally with no trunk prefix
    ("13800138000", 8613800138000),
    ("138 0013 8000", 8613800138000),
    ("+86 138 0013 8000", 8613800138000),
    ("008613800138000", 8613800138000),
    # international without "+": longer than any Chinese national number
    ("8613800138000", 8613800138000),
    ("sip:8613800138000@10.0.0.1;user=phone", 8613800138000),
    # ...but an 11-digit national number that happens to start with 86 stays national
    ("86123456789", 8686123456789),
    ("+86-138-0013-8000", 8613800138000),
    # Beijing landline, area code 10
    ("010-6552-9988", 861065529988),
    ("(010) 6552 9988", 861065529988),
    ("+86 (0)10 6552 9988", 861065529988),
    ("0086 10 65529988", 861065529988),
    # Shenzhen landline, area code 755
    ("0755-8888-1234", 8675588881234),
    # URIs
    ("sip:+86-10-6552-9988@192.0.2.1:5060;user=phone", 861065529988),
    ("SIP:13800138000@switch.example.cn", 8613800138000),
    ("sips:01065529988@[2001:db8::1]:5061;transport=tls", 861065529988),
    ("sip:%2B8613800138000@host", 8613800138000),
    ("<sip:13800138000;npdi;rn=+8613900000000@host;user=phone>", 8613800138000),
    ("tel:+86-10-6552-9988;phone-context=+86", 861065529988),
    ("tel:+86-10-6552-9988;phone-context=example.cn", 861065529988),
    ("tel:6552-9988;phone-context=+86-10", 861065529988),
    ("tel:010-6552-9988;phone-context=bj.example.cn", 861065529988),
    ("TEL:13800138000", 8613800138000),
    # full-width input from a Chinese IME
    ("＋８６　１３８－００１３－８０００", 8613800138000),
    ("（０１０）６５５２９９８８", 861065529988),
    # foreign numbers pass through unchanged
    ("+44 20 7946 0958", 442079460958),
    ("001 212 555 0100", 12125550100),
    ("+852 2123 4567", 85221234567),
]


@pytest.mark.parametrize(("raw", "expected"), NORMALIZE_CASES)
def test_normalize_examples(raw: str, expected: int) -> None:
    assert normalize(raw, CN) == expected


def test_other_numbering_plan() -> None:
    assert normalize("1 (212) 555-0100", NANP) == 12125550100
    assert normalize("212.555.0100", NANP) == 12125550100
    assert normalize("011 86 138 0013 8000", NANP) == 8613800138000
    assert normalize("+1 212 555 0100", NANP) == 12125550100


REJECT_CASES = [
    ("", "empty number"),
    ("   ", "empty number"),
    ("+", "empty number"),
    ("sip:-.-@host", "empty number"),
    ("abc", "contains letters: 'abc'"),
    ("1380013800O", "contains letters"),
    ("*21#", "service code"),
    ("#31#13800138000", "service code"),
    ("+86+138", "'+' is only allowed at the start"),
    ("138_0013_8000", "invalid character '_'"),
    ("+86138001380001234", "too long: 17 digits (E.164 allows at most 15)"),
    ("10086", "too short: 5 digits after country code 86"),
    ("+86 95588", "too short"),
    ("+1234567", "too short: 7 digits"),
    ("+0861380013800", "country code cannot start with 0"),
    ("00", "international prefix with no number"),
    ("sip:switch.example.cn", "no user part"),
    ("mailto:court@example.cn", "unsupported URI scheme"),
    ("١٣٨٠٠١٣٨٠٠٠", "invalid character"),
]


@pytest.mark.parametrize(("raw", "reason"), REJECT_CASES)
def test_normalize_rejects_with_reason(raw: str, reason: str) -> None:
    with pytest.raises(NumberError) as info:
        normalize(raw, CN)
    assert str(info.value).startswith(reason)


USER_PART_CASES = [
    ("sip:+86-10-1234@host:5060;user=phone", "+86-10-1234"),
    ("sips:alice:secret@host", "alice"),
    ("Sip:13800138000@host?Subject=x@y", "13800138000"),
    ("sip:13800138000;isub=12@host", "13800138000"),
    ("tel:+86-10-6552-9988;phone-context=+86", "+86-10-6552-9988"),
    ("tel:6552-9988;phone-context=+86-10", "+86-106552-9988"),
    ("tel:13800138000?x=y", "13800138000"),
    ("  13800138000 ", "13800138000"),
    ("+86 138 0013 8000", "+86 138 0013 8000"),
    ("sip:%2B86%20138@host", "+86 138"),
]


@pytest.mark.parametrize(("uri", "expected"), USER_PART_CASES)
def test_user_part(uri: str, expected: str) -> None:
    assert user_part(uri) == expected


def test_format_and_parse_e164() -> None:
    assert format_e164(8613800138000) == "+8613800138000"
    assert parse_e164("+8613800138000") == 8613800138000
    for bad in ["8613800138000", "+86 138 0013 8000", "+0861380013800", "+1234567", "+" + "1" * 16]:
        with pytest.raises(NumberError):
            parse_e164(bad)
    for bad_int in [0, -8613800138000, 1234567, 10**15]:
        with pytest.raises(NumberError):
            format_e164(bad_int)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"country_code": "086"},
        {"country_code": ""},
        {"country_code": "8612"},
        {"country_code": "8a"},
        {"trunk_prefix": "o"},
        {"international_prefix": ""},
        {"international_prefix": "+"},
        {"local_max_digits": -1},
        {"local_max_digits": 11},
    ],
)
def test_numbering_plan_validation(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        NumberingPlan(**kwargs)


def test_numbering_plan_allows_no_trunk_prefix() -> None:
    plan = NumberingPlan(country_code="39", trunk_prefix="")
    assert normalize("06 6988 3712", plan) == 390669883712


# --- properties ------------------------------------------------------------------------------

# Chinese national significant numbers: first digit 1-9, 7 to 13 digits (86 + 13 = 15).
nsn = st.from_regex(r"[1-9][0-9]{6,12}", fullmatch=True)
separator = st.sampled_from(["", "", "", " ", "-", ".", "(", ")", "  ", "\t"])


def _is_valid_for_cn(number: int) -> bool:
    digits = str(number)
    if not 8 <= len(digits) <= 15:
        return False
    if digits.startswith("86"):
        return len(digits) - 2 >= 7 and not digits.startswith("860")
    return True


@st.composite
def with_separators(draw: st.DrawFn, text: str) -> str:
    """Scatter visual separators between (and around) the characters of text."""
    out = [draw(separator)]
    for ch in text:
        out += [ch, draw(separator)]
    return "".join(out)


@given(st.integers(min_value=10**7, max_value=10**15 - 1))
def test_normalize_is_idempotent(number: int) -> None:
    assume(_is_valid_for_cn(number))
    assert normalize(format_e164(number), CN) == number
    assert parse_e164(format_e164(number)) == number


@given(nsn)
def test_national_and_international_forms_agree(national: str) -> None:
    expected = int("86" + national)
    assert normalize("0" + national, CN) == expected
    assert normalize("+86" + national, CN) == expected
    assert normalize("0086" + national, CN) == expected
    if national.startswith("860") and len(national) > CN.national_max_digits:
        # international without "+", with the trunk prefix written after the country code
        assert normalize(national, CN) == int("86" + national[3:])
    elif national.startswith("86") and len(national) > CN.national_max_digits:
        # too long to be national: read as international without "+"
        assert normalize(national, CN) == int(national)
    else:
        assert normalize(national, CN) == expected
    assert normalize("+860" + national, CN) == expected  # "+86 (0)…"


@given(nsn, st.sampled_from(["0{}", "+86{}", "0086{}", "{}"]), st.data())
def test_separators_never_change_the_result(national: str, form: str, data: st.DataObject) -> None:
    plain = form.format(national)
    decorated = data.draw(with_separators(plain))
    assert normalize(decorated, CN) == normalize(plain, CN)


uri_param = st.sampled_from(["", ";user=phone", ";transport=tcp", ";lr;user=phone"])
host = st.sampled_from(["192.0.2.7", "switch.example.cn", "[2001:db8::7]"])
port = st.sampled_from(["", ":5060", ":5080"])


@given(nsn, st.sampled_from(["0{}", "+86{}", "0086{}", "{}"]), uri_param, host, port, st.data())
def test_uri_wrappers_agree_with_bare_number(
    national: str, form: str, param: str, hostname: str, portpart: str, data: st.DataObject
) -> None:
    bare = data.draw(with_separators(form.format(national)))
    user = bare.replace(" ", "%20").replace("\t", "%09")  # whitespace is escaped in a URI
    expected = normalize(bare, CN)
    scheme = data.draw(st.sampled_from(["sip", "SIP", "sips"]))
    assert normalize(f"{scheme}:{user}@{hostname}{portpart}{param}", CN) == expected
    assert normalize(f"<sip:{user};npdi@{hostname}>", CN) == expected
    assert normalize(f"tel:{user}", CN) == expected
    assert normalize(f"Tel:{user};phone-context=example.cn", CN) == expected


def _valid_or_number_error(raw: str) -> None:
    try:
        number = normalize(raw, CN)
    except NumberError:
        return
    assert _is_valid_for_cn(number)
    assert parse_e164(format_e164(number)) == number


@given(st.text())
def test_garbage_raises_only_number_error(raw: str) -> None:
    _valid_or_number_error(raw)


@given(st.text(alphabet="0123456789+-.() *#%:;@<>=sipteSIPTE86０８＋", max_size=40))
def test_number_like_garbage_raises_only_number_error(raw: str) -> None:
    _valid_or_number_error(raw)


# --- the dialled number of a Request-URI ----------------------------------------------------


def dialled(uri: str, plan: NumberingPlan = CN) -> int:
    """What the call path hands over: the Request-URI parsed by the SIP parser, then its
    unescaped user part (a tel: URI's number) and its URI parameters."""
    parsed = parse_uri(uri)
    user = parsed.user_unescaped
    assert user is not None
    return dialled_number(user, dict(parsed.params), plan)


DIALLED_CASES = [
    # number portability (RFC 4694): the dialled number, never the routing number
    ("sip:+8613800138000;npdi;rn=+8613900000000@switch;user=phone", 8613800138000),
    ("sip:13800138000;npdi;rn=+8613900000000@192.0.2.1:5060;user=phone", 8613800138000),
    ("sip:+8613800138000;rn=+8613900000000;npdi@switch;user=phone", 8613800138000),
    ("sip:+8613800138000;npdi;rn=+8613900000000;rn-context=+86@switch", 8613800138000),
    ("sip:+86-138-0013-8000;npdi@switch;user=phone", 8613800138000),
    ("tel:+8613800138000;npdi;rn=+8613900000000", 8613800138000),
    # phone-context (RFC 3966)
    ("sip:13800138000;phone-context=+86@host;user=phone", 8613800138000),
    ("sip:010-65529988;phone-context=+86@host;user=phone", 861065529988),
    ("sip:6552-9988;phone-context=+86-10@host;user=phone", 861065529988),
    ("sip:65529988;phone-context=+86(0)10@host;user=phone", 861065529988),
    ("tel:6552-9988;phone-context=+86-10", 861065529988),
    ("tel:8888-1234;phone-context=+86-755", 8675588881234),
    ("tel:9988;phone-context=+86-10-6552", 861065529988),
    # in an area's context, mobiles and prefixed numbers are read as they stand
    ("tel:13800138000;phone-context=+86-10", 8613800138000),
    ("tel:0755-8888-1234;phone-context=+86-10", 8675588881234),
    ("tel:00-44-20-7946-0958;phone-context=+86-10", 442079460958),
    # a domain context is not a number prefix
    ("tel:010-6552-9988;phone-context=bj.example.cn", 861065529988),
    ("sip:13800138000;phone-context=switch.example.cn@host;user=phone", 8613800138000),
    # a global number ignores a phone-context
    ("tel:+86-10-6552-9988;phone-context=+44", 861065529988),
    # subaddress and extension are not part of the number
    ("tel:+86-10-6552-9988;isub=1234", 861065529988),
    ("tel:+86-10-6552-9988;ext=22", 861065529988),
    ("sip:+861065529988;isub=1234;isub-encoding=nsap-ia5@host;user=phone", 861065529988),
    ("tel:6552-9988;ext=7;phone-context=+86-10", 861065529988),
    # visual separators; a trunk prefix written after the country code
    ("sip:010-65529988@host", 861065529988),
    ("sip:(010)6552.9988@host", 861065529988),
    ("sip:+86(0)1065529988@host", 861065529988),
    ("sip:+8601065529988@host", 861065529988),
    ("sip:+861065529988@host", 861065529988),
    ("sip:%2B86%2010%206552%209988@host", 861065529988),
    ("tel:+86-10-6552-9988", 861065529988),
    # what normalize() accepts for national, international and mobile numbers
    ("sip:0755-8888-1234@host", 8675588881234),
    ("sip:0086-10-6552-9988@host", 861065529988),
    ("sip:13800138000@host", 8613800138000),
    ("sips:13800138000@[2001:db8::1]:5061;transport=tls", 8613800138000),
    ("sip:8613800138000@10.0.0.1;user=phone", 8613800138000),
    ("sip:+44-20-7946-0958@host;user=phone", 442079460958),
    ("sip:00-1-212-555-0100@host", 12125550100),
]


@pytest.mark.parametrize(("uri", "expected"), DIALLED_CASES)
def test_dialled_number_examples(uri: str, expected: int) -> None:
    assert dialled(uri) == expected


def test_dialled_number_takes_tel_uri_text() -> None:
    assert dialled_number("tel:+86-10-6552-9988;isub=1234", None, CN) == 861065529988
    assert dialled_number("TEL:6552-9988;phone-context=+86-10", None, CN) == 861065529988
    assert dialled_number("6552-9988", {"phone-context": "+86-10"}, CN) == 861065529988
    assert dialled_number("13800138000", {"user": "phone"}, CN) == 8613800138000


AMBIGUOUS_CASES = [
    # a local number with no area code: which Chinese city?
    "sip:65529988@host",
    "sip:6552-9988@host;user=phone",
    "sip:6552998@host",
    "tel:6552-9988",
    # a country context alone does not say which city
    "sip:65529988;phone-context=+86@host;user=phone",
    # nor does a domain context
    "tel:6552-9988;phone-context=bj.example.cn",
    # nor a routing number: the dialled number is what is looked up, or nothing
    "sip:65529988;npdi;rn=+861065529988@switch;user=phone",
    # a trunk or country prefix in front of the local number does not supply the area
    "sip:+86-6552-9988@host;user=phone",
    "sip:0-6552-9988@host",
    "sip:+86(0)65529988@host",
    # the dialling plan of another country is unknown here
    "tel:7946-0958;phone-context=+44-20",
]


@pytest.mark.parametrize("uri", AMBIGUOUS_CASES)
def test_dialled_number_refuses_local_numbers(uri: str) -> None:
    with pytest.raises(AmbiguousNumber):
        dialled(uri)


def test_normalize_would_have_guessed_a_wrong_number() -> None:
    # Why the call path needs dialled_number: normalize() reads the local Beijing number
    # 6552 9988 as 86 6552 9988, a number nobody dialled.
    assert normalize("65529988", CN) == 8665529988
    with pytest.raises(AmbiguousNumber, match="local number with no area code: 8 digits"):
        dialled_number("65529988", None, CN)


DIALLED_REJECT_CASES = [
    ("sip:alice@host", "contains letters: 'alice'"),
    ("sip:*21%23@host", "service code"),
    ("sip:10086@host", "too short: 5 digits after country code 86"),
    ("sip:-.-@host", "empty number"),
    ("sip:;phone-context=+86@host", "empty number"),
    ("sip:+86138001380001234@host", "too long: 17 digits"),
    ("sip:+0861065529988@host", "country code cannot start with 0"),
    ("sip:+86-00-10-6552-9988@host", "trunk prefix '0' twice after country code 86"),
    ("tel:6552-9988;phone-context=86-10", "phone-context '86-10' is neither a global number"),
    ("tel:6552-9988;phone-context=+86-1a", "phone-context '+86-1a' is not a valid global"),
    ("tel:6552-9988;phone-context=", "phone-context with no value"),
    ("sip:6552-9988;phone-context=+86-10@host;phone-context=+86-21", "conflicting phone-context"),
]


@pytest.mark.parametrize(("uri", "reason"), DIALLED_REJECT_CASES)
def test_dialled_number_rejects_with_reason(uri: str, reason: str) -> None:
    with pytest.raises(NumberError) as info:
        dialled(uri)
    assert not isinstance(info.value, AmbiguousNumber)
    assert str(info.value).startswith(reason)


def test_dialled_number_same_context_twice_is_fine() -> None:
    uri = "sip:6552-9988;phone-context=+86-10@host;phone-context=+86-10"
    assert dialled(uri) == 861065529988


def test_dialled_number_other_numbering_plan() -> None:
    assert dialled("sip:1-212-555-0100@host", NANP) == 12125550100
    assert dialled("sip:212.555.0100@host", NANP) == 12125550100
    assert dialled("tel:555-0100;phone-context=+1-212", NANP) == 12125550100
    assert dialled("sip:011-86-138-0013-8000@host", NANP) == 8613800138000
    with pytest.raises(AmbiguousNumber):
        dialled("sip:555-0100@host", NANP)
    closed = NumberingPlan(country_code="39", trunk_prefix="", local_max_digits=0)
    assert dialled("sip:06-6988-3712@host", closed) == 390669883712


# Chinese national significant numbers too long to be a local number: 9 to 13 digits.
national_nsn = st.from_regex(r"[1-9][0-9]{8,12}", fullmatch=True)
local_number = st.from_regex(r"[2-9][0-9]{6,7}", fullmatch=True)
area_code = st.sampled_from(["10", "20", "21", "22", "23", "24", "25", "27", "28", "29", "755"])
ignored_params = st.lists(
    st.sampled_from(
        [";npdi", ";rn=+8613900000000", ";isub=1234", ";ext=22", ";rn-context=+86", ";cic=+86-1"]
    ),
    max_size=3,
).map("".join)


def _escaped(user: str) -> str:
    return user.replace("%", "%25").replace(" ", "%20").replace("\t", "%09")


def _outcome(uri: str) -> int | type[NumberError]:
    try:
        return dialled(uri)
    except NumberError as exc:
        return type(exc)


@given(national_nsn, st.sampled_from(["0{}", "+86{}", "+860{}", "0086{}", "{}"]), st.data())
def test_dialled_number_separators_never_change_the_result(
    national: str, form: str, data: st.DataObject
) -> None:
    plain = form.format(national)
    decorated = data.draw(with_separators(plain))
    params = data.draw(ignored_params)
    expected = dialled(f"sip:{plain}@host;user=phone")
    assert dialled(f"sip:{_escaped(decorated)}{params}@host;user=phone") == expected
    assert dialled_number(f"tel:{decorated}{params}", None, CN) == expected


@given(st.from_regex(r"\+?[0-9]{1,16}", fullmatch=True), st.data())
def test_dialled_number_separators_never_change_an_outcome(
    digits: str, data: st.DataObject
) -> None:
    decorated = data.draw(with_separators(digits))
    assert _outcome(f"sip:{_escaped(decorated)}@host") == _outcome(f"sip:{digits}@host")


@given(national_nsn, st.sampled_from(["0{}", "+86{}", "0086{}", "{}"]))
def test_dialled_number_agrees_with_normalize_for_national_numbers(
    national: str, form: str
) -> None:
    text = form.format(national)
    assert dialled(f"sip:{text}@host;user=phone") == normalize(text, CN)


@given(local_number, area_code, st.data())
def test_local_number_needs_the_area(local: str, area: str, data: st.DataObject) -> None:
    decorated = _escaped(data.draw(with_separators(local)))
    with pytest.raises(AmbiguousNumber):
        dialled(f"sip:{decorated}@host;user=phone")
    with pytest.raises(AmbiguousNumber):
        dialled(f"sip:{decorated};phone-context=+86@host;user=phone")
    expected = int("86" + area + local)
    assert dialled(f"sip:{decorated};phone-context=+86-{area}@host;user=phone") == expected
    assert dialled(f"tel:{decorated};phone-context=+86-{area}") == expected
    assert dialled(f"sip:0{area}{local}@host") == expected


@given(national_nsn, ignored_params, st.from_regex(r"\+86[1-9][0-9]{9}", fullmatch=True))
def test_routing_number_is_never_looked_up(national: str, params: str, rn: str) -> None:
    expected = int("86" + national)
    uri = f"sip:+86{national};npdi;rn={rn}{params}@switch;user=phone"
    assert dialled(uri) == expected


@given(st.text(alphabet="0123456789+-.() *#;=:tel+86phone-contextnpdirn.cn", max_size=40))
def test_dialled_number_raises_only_number_error(user: str) -> None:
    try:
        number = dialled_number(user, None, CN)
    except NumberError:
        return
    assert _is_valid_for_cn(number)
    assert len(str(number)) - 2 > CN.local_max_digits or not str(number).startswith("86")
