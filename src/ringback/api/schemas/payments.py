"""The payment hook: a payment system says a debt is paid."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    PlainValidator,
    StringConstraints,
    WithJsonSchema,
)

from ringback.api.schemas.fields import (
    E164,
    CourtBody,
    ReplyModel,
    Text,
    Timestamp,
    Uuid,
    invalid,
    printable,
    strip_or_none,
)


def _amount(value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise invalid("must be a number or a decimal string")
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise invalid(f"not a decimal number: {value!r}") from None
    if not amount.is_finite() or amount < 0 or abs(amount.adjusted()) > 15:
        raise invalid(f"must be a finite number >= 0: {value!r}")
    return amount


def _currency(value: str | None) -> str | None:
    if value is not None and not (value.isascii() and value.isalpha() and len(value) == 3):
        raise invalid(f"an ISO 4217 code such as CNY, got {value!r}")
    return value and value.upper()


Amount = Annotated[
    Decimal,
    PlainValidator(_amount),
    WithJsonSchema({"anyOf": [{"type": "number", "minimum": 0}, {"type": "string"}]}),
]
Currency = Annotated[
    Annotated[str, StringConstraints(max_length=3), AfterValidator(printable)] | None,
    BeforeValidator(strip_or_none),
    AfterValidator(_currency),
    WithJsonSchema({"type": ["string", "null"], "pattern": "^[A-Za-z]{3}$"}),
]


class PaymentConfirmed(CourtBody):
    court_id: Uuid
    case_ref: Text
    payment_id: Text
    paid_at: Timestamp
    amount: Amount | None = None
    currency: Currency = None


class PaymentResult(ReplyModel):
    court_id: Uuid
    payment_id: str
    case_ref: str
    paid_at: datetime
    received_at: datetime
    cleared: list[E164] = Field(description="the numbers whose listings were cleared")
    cleared_listing_ids: list[int]
