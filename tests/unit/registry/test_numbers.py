"""E.164 normalisation: table-driven examples plus hypothesis properties."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from ringback.registry.numbers import (
    NumberError,
    NumberingPlan,
    format_e164,
    normalize,
    parse_e164,
    user_part,
)

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
    ],
)
def test_numbering_plan_validation(kwargs: dict[str, str]) -> None:
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
    if national.startswith("86") and len(national) > CN.national_max_digits:
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
