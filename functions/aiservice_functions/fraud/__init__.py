"""Fraud scoring: a transaction (JSON) in, a risk score and a label out.

Input data (``application/json``)::

    {"amount": 912.5, "merchant_category": "electronics", "hour": 3,
     "country_mismatch": true, "card_present": false,
     "transactions_last_24h": 6, "account_age_days": 12, "transaction_id": "tx-1"}

``amount``, ``merchant_category``, ``hour`` and ``country_mismatch`` are required;
the others have defaults. Reply data: ``{"risk": 0.93, "label": "fraud",
"transaction_id": "tx-1"}``. Two TorchScript models ship inside the package
(``pkg://aiservice_functions.fraud/models/fraud-v1.pt`` and ``fraud-v2.pt``); v2
uses more features. The model is tiny, so batching is off by default.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiservice_functions.cloudevents_http import CloudEvent, data_json
from aiservice_functions.fraud.features import Transaction, encode, parse_transaction
from aiservice_functions.runtime.function import BatchDefaults, Function

MODEL_V1 = "pkg://aiservice_functions.fraud/models/fraud-v1.pt"
MODEL_V2 = "pkg://aiservice_functions.fraud/models/fraud-v2.pt"
EXTRA_FILE = "aisvc.json"


@dataclass(frozen=True)
class FraudModel:
    module: Any  # torch.jit.ScriptModule
    features: tuple[str, ...]
    threshold: float
    trained_version: str


def load(path: Path, version: str) -> FraudModel:
    import torch

    extra = {EXTRA_FILE: ""}
    with warnings.catch_warnings():
        # torch marks TorchScript deprecated in favour of torch.export; the shipped
        # models are TorchScript, which still loads without Python model code.
        warnings.simplefilter("ignore", DeprecationWarning)
        module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    module.eval()
    try:
        meta = json.loads(extra[EXTRA_FILE])
        features = tuple(str(name) for name in meta["features"])
        threshold = float(meta["threshold"])
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path} is not a fraud model: missing {EXTRA_FILE} metadata") from err
    return FraudModel(module, features, threshold, str(meta.get("version", version)))


def decode(event: CloudEvent) -> Transaction:
    return parse_transaction(data_json(event))


def infer(model: FraudModel, items: Sequence[Transaction]) -> list[dict[str, Any]]:
    import torch

    x = torch.tensor([encode(tx, model.features) for tx in items], dtype=torch.float32)
    scores = model.module(x).tolist()
    replies: list[dict[str, Any]] = []
    for tx, risk in zip(items, scores, strict=True):
        reply: dict[str, Any] = {
            "risk": round(float(risk), 6),
            "label": "fraud" if risk >= model.threshold else "legit",
        }
        if tx.transaction_id is not None:
            reply["transaction_id"] = tx.transaction_id
        replies.append(reply)
    return replies


function = Function(
    name="fraud",
    load=load,
    decode=decode,
    infer=infer,
    default_model_uri=MODEL_V1,
    batching=BatchDefaults(enabled=False, max_size=32, max_wait_ms=2.0),
)
