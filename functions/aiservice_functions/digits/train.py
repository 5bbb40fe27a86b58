"""Training of the digits CNN on scikit-learn's bundled 8x8 digits (no download).

Deterministic: a fixed seed and split, one thread. The held-out fifth of the data set
is never trained on; its accuracy is what the README states.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SEED = 7
EPOCHS = 60
HELD_OUT = 0.2


def split() -> tuple[Any, Any, Any, Any]:
    """``(x_train, x_test, y_train, y_test)``: images as 0-16 floats, 8x8 each."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    result: tuple[Any, Any, Any, Any] = tuple(
        train_test_split(
            digits.images,
            digits.target,
            test_size=HELD_OUT,
            random_state=SEED,
            stratify=digits.target,
        )
    )
    return result


def build(out: Path, version: str = "v1") -> float:
    """Train, write ``out`` (TorchScript with metadata), return held-out accuracy."""
    import torch
    from torch import nn

    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    x_train, x_test, y_train, y_test = split()
    xt = torch.tensor(x_train, dtype=torch.float32).unsqueeze(1)
    yt = torch.tensor(y_train, dtype=torch.long)
    model = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, 64),
        nn.ReLU(),
        nn.Linear(64, 10),
    )
    optimiser = torch.optim.Adam(model.parameters(), lr=2e-3)
    loss_fn = nn.CrossEntropyLoss()
    for _ in range(EPOCHS):
        order = torch.randperm(len(xt))
        for start in range(0, len(xt), 64):
            batch = order[start : start + 64]
            optimiser.zero_grad()
            loss_fn(model(xt[batch]), yt[batch]).backward()
            optimiser.step()
    model.eval()
    with torch.inference_mode():
        predicted = model(torch.tensor(x_test, dtype=torch.float32).unsqueeze(1)).argmax(1)
    accuracy = float((predicted == torch.tensor(y_test)).float().mean())
    scripted = torch.jit.script(model)
    meta = {"version": version, "held_out_accuracy": round(accuracy, 4), "seed": SEED}
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.jit.save(scripted, str(out), _extra_files={"aisvc.json": json.dumps(meta)})
    return accuracy
