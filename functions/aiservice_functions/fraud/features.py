"""Transactions in, feature vectors out: validation and encoding, shared by training and serving.

Each model file names the features it was trained on (in its ``aisvc.json`` extra
file), so model versions may use different features with one serving code path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from aiservice_functions.runtime.function import Rejected

CATEGORIES = (
    "grocery",
    "restaurant",
    "fuel",
    "travel",
    "online_retail",
    "electronics",
    "gambling",
    "crypto",
    "other",
)
MAX_AMOUNT = 1e9


@dataclass(frozen=True)
class Transaction:
    amount: float
    merchant_category: str
    hour: int
    country_mismatch: bool
    card_present: bool = True
    transactions_last_24h: int = 1
    account_age_days: int = 365
    transaction_id: str | None = None


def _number(data: dict[str, Any], name: str, *, required: bool, default: float = 0) -> float:
    if name not in data or data[name] is None:
        if required:
            raise Rejected(f"field {name!r} is required", field=name)
        return default
    value = data[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Rejected(f"field {name!r} must be a number", field=name)
    try:
        number = float(value)  # an integer too big for a float overflows here
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise Rejected(f"field {name!r} must be a finite number", field=name)
    return number


def _bool(data: dict[str, Any], name: str, *, required: bool, default: bool = False) -> bool:
    if name not in data or data[name] is None:
        if required:
            raise Rejected(f"field {name!r} is required", field=name)
        return default
    value = data[name]
    if not isinstance(value, bool):
        raise Rejected(f"field {name!r} must be true or false", field=name)
    return value


def _count(data: dict[str, Any], name: str, default: int) -> int:
    value = _number(data, name, required=False, default=default)
    if value < 0 or value != int(value):
        raise Rejected(f"field {name!r} must be a whole number >= 0", field=name)
    return int(value)


def parse_transaction(data: Any) -> Transaction:
    """Validate one transaction; the reason of a refusal names the field."""
    if not isinstance(data, dict):
        raise Rejected("data must be a JSON object describing a transaction", 400)
    amount = _number(data, "amount", required=True)
    if not 0 <= amount <= MAX_AMOUNT:
        raise Rejected(f"field 'amount' must be between 0 and {MAX_AMOUNT:g}", field="amount")
    category = data.get("merchant_category")
    if not isinstance(category, str) or not category:
        raise Rejected(
            "field 'merchant_category' is required (a string)", field="merchant_category"
        )
    category = category.strip().lower()
    if category not in CATEGORIES:
        category = "other"
    hour = _number(data, "hour", required=True)
    if hour != int(hour) or not 0 <= hour <= 23:
        raise Rejected("field 'hour' must be a whole number from 0 to 23", field="hour")
    transaction_id = data.get("transaction_id")
    if transaction_id is not None and not isinstance(transaction_id, (str, int)):
        raise Rejected("field 'transaction_id' must be a string", field="transaction_id")
    return Transaction(
        amount=amount,
        merchant_category=category,
        hour=int(hour),
        country_mismatch=_bool(data, "country_mismatch", required=True),
        card_present=_bool(data, "card_present", required=False, default=True),
        transactions_last_24h=_count(data, "transactions_last_24h", 1),
        account_age_days=_count(data, "account_age_days", 365),
        transaction_id=None if transaction_id is None else str(transaction_id),
    )


def _feature(tx: Transaction, name: str) -> float:
    if name == "log_amount":
        return math.log1p(tx.amount) / 10.0
    if name == "hour_sin":
        return math.sin(2 * math.pi * tx.hour / 24)
    if name == "hour_cos":
        return math.cos(2 * math.pi * tx.hour / 24)
    if name == "country_mismatch":
        return float(tx.country_mismatch)
    if name == "card_not_present":
        return float(not tx.card_present)
    if name == "velocity":
        return min(tx.transactions_last_24h, 50) / 10.0
    if name == "log_account_age":
        return math.log1p(tx.account_age_days) / 7.0
    if name.startswith("category_"):
        return float(tx.merchant_category == name.removeprefix("category_"))
    raise KeyError(f"unknown feature {name!r}")


CATEGORY_FEATURES = tuple(f"category_{c}" for c in CATEGORIES)
FEATURES_V1 = ("log_amount", "hour_sin", "hour_cos", "country_mismatch", *CATEGORY_FEATURES)
FEATURES_V2 = (*FEATURES_V1, "card_not_present", "velocity", "log_account_age")


def encode(tx: Transaction, features: tuple[str, ...] | list[str]) -> list[float]:
    return [_feature(tx, name) for name in features]
