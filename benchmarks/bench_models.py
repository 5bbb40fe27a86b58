"""The models under benchmark, loaded the same way in every server and in the ceiling run.

Both are the shipped functions (``aiservice_functions.sentiment`` and
``aiservice_functions.fraud``) called through their ``decode``/``infer`` hooks, so the
baseline server runs exactly the model code the functions runtime runs. Works in the
KServe venv too, where ``cloudevents`` is 1.x: there, :func:`install_event_placeholder`
swaps the runtime's CloudEvents module for a placeholder whose ``data_json`` returns
its argument, so ``decode`` can be handed KServe's already-decoded JSON payload.
"""

from __future__ import annotations

import importlib
import os
import sys
import types
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

NAMES = {"sentiment": "aiservice_functions.sentiment", "fraud": "aiservice_functions.fraud"}

# ~20-word reviews (about 22-28 tokens), the size the serving notes were measured with.
SENTIMENT_PAYLOADS: list[dict[str, Any]] = [
    {
        "text": "I absolutely love this blender, it crushes ice in seconds and cleaning it takes "
        "less than a minute every time."
    },
    {
        "text": "The hotel room was dirty, the air conditioning rattled all night and the staff "
        "simply shrugged when we complained."
    },
    {
        "text": "Great value for the price: the headphones sound clear, fit comfortably and the "
        "battery easily lasts a whole week."
    },
    {
        "text": "It arrived two weeks late with a cracked screen, and the seller still refuses to "
        "answer any of my messages."
    },
    {
        "text": "Our waiter was friendly and attentive, the pasta was delicious and the dessert "
        "was worth the trip on its own."
    },
    {
        "text": "Cheap plastic that snapped within a week; the replacement part costs more "
        "than the whole thing did in the first place."
    },
    {
        "text": "Setup took two minutes, the app is easy to use and it has worked flawlessly every "
        "single day since we bought it."
    },
    {
        "text": "The course promised hands-on practice but was mostly slides read aloud, and "
        "nobody answered questions in the forum."
    },
]

FRAUD_PAYLOADS: list[dict[str, Any]] = [
    {
        "amount": 912.5,
        "merchant_category": "electronics",
        "hour": 3,
        "country_mismatch": True,
        "card_present": False,
        "transactions_last_24h": 6,
        "account_age_days": 12,
        "transaction_id": "tx-1",
    },
    {
        "amount": 23.4,
        "merchant_category": "grocery",
        "hour": 18,
        "country_mismatch": False,
        "transaction_id": "tx-2",
    },
    {
        "amount": 61.0,
        "merchant_category": "fuel",
        "hour": 7,
        "country_mismatch": False,
        "card_present": True,
        "transactions_last_24h": 2,
        "account_age_days": 900,
    },
    {
        "amount": 2400.0,
        "merchant_category": "crypto",
        "hour": 2,
        "country_mismatch": True,
        "card_present": False,
        "transactions_last_24h": 11,
        "account_age_days": 3,
    },
    {"amount": 48.9, "merchant_category": "restaurant", "hour": 20, "country_mismatch": False},
    {
        "amount": 310.0,
        "merchant_category": "travel",
        "hour": 11,
        "country_mismatch": True,
        "card_present": False,
        "account_age_days": 400,
    },
    {"amount": 15.0, "merchant_category": "online_retail", "hour": 13, "country_mismatch": False},
    {
        "amount": 780.0,
        "merchant_category": "gambling",
        "hour": 4,
        "country_mismatch": False,
        "card_present": False,
        "transactions_last_24h": 9,
        "account_age_days": 20,
    },
]

PAYLOADS = {"sentiment": SENTIMENT_PAYLOADS, "fraud": FRAUD_PAYLOADS}


def install_event_placeholder() -> None:
    """Let ``aiservice_functions`` import where ``cloudevents`` 2.x is missing (KServe venv).

    The placeholder is never asked to parse HTTP: KServe does that. Its ``data_json`` is
    the identity, so ``function.decode(payload_dict)`` validates a decoded payload.
    """
    name = "aiservice_functions.cloudevents_http"
    if name in sys.modules:
        return
    try:
        import cloudevents.core  # noqa: F401
    except ImportError:
        placeholder = types.ModuleType(name)
        placeholder.CloudEvent = object  # type: ignore[attr-defined]
        placeholder.InvalidEvent = ValueError  # type: ignore[attr-defined]
        placeholder.data_json = lambda event: event  # type: ignore[attr-defined]
        placeholder.PLACEHOLDER = True  # type: ignore[attr-defined]
        sys.modules[name] = placeholder


@dataclass
class Predictor:
    """A loaded function model with a one-item and a batch entry point."""

    name: str
    function: Any
    model: Any

    def predict_one(self, payload: Any) -> Any:
        """Validate one decoded JSON payload and score it; ``ValueError`` if refused."""
        item = self.decode(payload)
        return self.infer([item])[0]

    def decode(self, payload: Any) -> Any:
        from aiservice_functions import cloudevents_http
        from aiservice_functions.runtime.function import Rejected

        event = payload
        if not getattr(cloudevents_http, "PLACEHOLDER", False):
            attributes = {"id": "1", "source": "/bench", "type": "bench", "specversion": "1.0"}
            event = cloudevents_http.make_event(attributes, payload)
        try:
            return self.function.decode(event)
        except Rejected as err:
            raise ValueError(err.reason) from None

    def infer(self, items: Sequence[Any]) -> list[Any]:
        import torch

        with torch.inference_mode():
            return list(self.function.infer(self.model, items))


def load(name: str, model_uri: str | None = None) -> Predictor:
    """Load ``name``'s default (or given) model exactly as the runtime would, on the device
    and in the precision ``AISVC_DEVICE``/``AISVC_PRECISION`` name (as the runtime does)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    install_event_placeholder()
    from aiservice_functions.models import uri as model_uris
    from aiservice_functions.models.accelerator import cuda_facts
    from aiservice_functions.models.device import (
        parse_device,
        parse_precision,
        resolve_placement,
    )

    function = importlib.import_module(NAMES[name]).function
    resolved = model_uris.resolve(model_uri or function.default_model_uri)
    placement = resolve_placement(
        parse_device(os.environ.get("AISVC_DEVICE")),
        parse_precision(os.environ.get("AISVC_PRECISION")),
        cuda_facts(),
        on_device=function.load_on_device is not None,
        function=name,
    )
    if function.load_on_device is not None:
        return Predictor(name, function, function.load_on_device(resolved.path, "bench", placement))
    return Predictor(name, function, function.load(resolved.path, "bench"))
