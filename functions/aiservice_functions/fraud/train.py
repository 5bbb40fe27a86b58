"""Train the fraud models on generated transactions, deterministically, in seconds.

The data comes from a known risk rule plus noise (amount, risky categories, night
hours, country mismatch, card-not-present, velocity, young accounts), so the models
have something real to learn. v1 sees only the basic features and a small hidden
layer; v2 sees all of them and scores measurably better on held-out data.
Run ``python scripts/train_fraud.py`` to rewrite the shipped models.
"""

from __future__ import annotations

import io
import json
import math
import random
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from aiservice_functions.fraud.features import (
    CATEGORIES,
    FEATURES_V1,
    FEATURES_V2,
    Transaction,
    encode,
)

SEED = 20240601
THRESHOLD = 0.5
EXTRA_FILE = "aisvc.json"
_CATEGORY_RISK = {
    "grocery": -1.0,
    "restaurant": -0.8,
    "fuel": -0.5,
    "travel": 0.3,
    "online_retail": 0.4,
    "electronics": 0.8,
    "gambling": 1.4,
    "crypto": 1.8,
    "other": 0.0,
}


@dataclass(frozen=True)
class Spec:
    version: str
    features: tuple[str, ...]
    hidden: int


SPECS = {
    "v1": Spec("v1", FEATURES_V1, 8),
    "v2": Spec("v2", FEATURES_V2, 16),
}


def true_risk(tx: Transaction) -> float:
    logit = (
        -3.2
        + 0.9 * (math.log1p(tx.amount) - 4.5)
        + _CATEGORY_RISK[tx.merchant_category]
        + 1.6 * tx.country_mismatch
        + (1.1 if tx.hour < 6 else 0.0)
        + 1.5 * (not tx.card_present)
        + 0.25 * min(tx.transactions_last_24h, 12)
        - (1.2 if tx.account_age_days > 180 else 0.0)
    )
    return 1.0 / (1.0 + math.exp(-logit))


def generate(n: int, seed: int) -> tuple[list[Transaction], list[int]]:
    rng = random.Random(seed)
    txs: list[Transaction] = []
    labels: list[int] = []
    for _ in range(n):
        tx = Transaction(
            amount=round(math.exp(rng.gauss(3.8, 1.4)), 2),
            merchant_category=rng.choice(CATEGORIES),
            hour=rng.randrange(24),
            country_mismatch=rng.random() < 0.15,
            card_present=rng.random() < 0.6,
            transactions_last_24h=min(int(rng.expovariate(0.4)), 40),
            account_age_days=int(rng.expovariate(1 / 400)),
        )
        txs.append(tx)
        labels.append(int(rng.random() < true_risk(tx)))
    return txs, labels


class FraudMLP(nn.Module):
    def __init__(self, inputs: int, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(inputs, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(x)).squeeze(-1)


def _tensor(txs: list[Transaction], features: tuple[str, ...]) -> torch.Tensor:
    return torch.tensor([encode(tx, features) for tx in txs], dtype=torch.float32)


def train(spec: Spec, *, samples: int = 6000, epochs: int = 400) -> FraudMLP:
    # One thread: the same sums in the same order on every machine, and no collapse
    # when other processes hold the cores.
    torch.set_num_threads(1)
    torch.manual_seed(SEED)
    txs, labels = generate(samples, SEED)
    x = _tensor(txs, spec.features)
    y = torch.tensor(labels, dtype=torch.float32)
    model = FraudMLP(len(spec.features), spec.hidden)
    optimiser = torch.optim.Adam(model.parameters(), lr=0.03)
    loss_fn = nn.BCELoss()
    for _ in range(epochs):
        optimiser.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        optimiser.step()
    return model.eval()


def auc(scores: list[float], labels: list[int]) -> float:
    """Area under the ROC curve (rank statistic; ties count half)."""
    pairs = sorted(zip(scores, labels, strict=True))
    pos = sum(labels)
    neg = len(labels) - pos
    rank_sum = 0.0
    i = 0
    while i < len(pairs):
        j = i
        while j < len(pairs) and pairs[j][0] == pairs[i][0]:
            j += 1
        avg_rank = (i + j + 1) / 2
        rank_sum += avg_rank * sum(label for _, label in pairs[i:j])
        i = j
    return (rank_sum - pos * (pos + 1) / 2) / (pos * neg)


def evaluate(model: nn.Module, spec: Spec, *, samples: int = 3000) -> float:
    txs, labels = generate(samples, SEED + 1)
    with torch.inference_mode():
        scores = model(_tensor(txs, spec.features)).tolist()
    return auc(scores, labels)


def to_torchscript(model: FraudMLP, spec: Spec) -> bytes:
    meta = {"version": spec.version, "features": list(spec.features), "threshold": THRESHOLD}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is still the format
        scripted = torch.jit.script(model)
    buffer = io.BytesIO()
    torch.jit.save(scripted, buffer, _extra_files={EXTRA_FILE: json.dumps(meta, sort_keys=True)})
    return buffer.getvalue()


def build_all(out_dir: Path) -> dict[str, float]:
    """Train every version, write ``fraud-<version>.pt`` and return held-out AUCs."""
    out_dir.mkdir(parents=True, exist_ok=True)
    scores: dict[str, float] = {}
    for spec in SPECS.values():
        model = train(spec)
        scores[spec.version] = evaluate(model, spec)
        (out_dir / f"fraud-{spec.version}.pt").write_bytes(to_torchscript(model, spec))
    return scores
