#!/usr/bin/env python
"""Train the two shipped topic heads (v1, v2) deterministically and score them.

Both heads are a ``Linear(384, 5)`` on frozen all-MiniLM-L6-v2 embeddings (the encoder
the sentiment function uses) of generated reviews (``aiservice_functions.topic.data``);
they differ in how much data they get, so a canary rollout from v1 to v2 has a
measurable difference to show:

- v1: 5 training reviews (one per topic), 30 full-batch Adam steps, no weight decay;
- v2: 1500 training reviews, 60 full-batch Adam steps, weight decay 1e-3.

Each head is scored on 500 held-out reviews written with vocabulary the training set
never uses, and on 20 hand-written reviews; both scores are stored inside the head file
(``info``).

Usage: ``python scripts/train_topic.py [--out DIR]`` (default: the package's
``topic/models/``). Takes ~20-30 s on 2 cores, most of it embedding 2000 texts.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from aiservice_functions.sentiment.encoder import MiniLMEncoder
from aiservice_functions.topic import data
from aiservice_functions.topic.head import TopicHead
from aiservice_functions.topic.model import MODELS_DIR

SEED = 0
HELD_OUT_SIZE = 500
EMBED_BATCH = 64


@dataclass(frozen=True)
class Recipe:
    """How one version is trained."""

    version: str
    train_size: int
    steps: int
    lr: float
    weight_decay: float


RECIPES = (
    Recipe("v1", train_size=5, steps=30, lr=0.05, weight_decay=0.0),
    Recipe("v2", train_size=1500, steps=60, lr=0.05, weight_decay=1e-3),
)


def embed(encoder: MiniLMEncoder, examples: list[data.Example]) -> torch.Tensor:
    """Embeddings of ``examples`` in fixed-size batches (same result on every run)."""
    texts = [e.text for e in examples]
    parts = [encoder.encode(texts[i : i + EMBED_BATCH]) for i in range(0, len(texts), EMBED_BATCH)]
    return torch.cat(parts)


def labels(examples: list[data.Example]) -> torch.Tensor:
    """Class indices in ``data.TOPICS`` order."""
    return torch.tensor([data.TOPICS.index(e.topic) for e in examples])


def train(recipe: Recipe, x: torch.Tensor, y: torch.Tensor) -> TopicHead:
    """Full-batch multinomial logistic regression; seeded, so the weights are reproducible."""
    torch.manual_seed(SEED)
    head = TopicHead()
    opt = torch.optim.Adam(head.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    for _ in range(recipe.steps):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(head.linear(x), y)
        loss.backward()
        opt.step()
    return head.eval()


def accuracy(head: TopicHead, x: torch.Tensor, y: torch.Tensor) -> float:
    """Share of correct topics."""
    with torch.inference_mode():
        return float((head(x).argmax(dim=1) == y).float().mean())


def main(argv: list[str] | None = None) -> int:
    """Train, score and write ``topic-v1.pt`` and ``topic-v2.pt``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=MODELS_DIR, help="output directory")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    started = time.monotonic()
    encoder = MiniLMEncoder()
    train_examples = data.train_set(max(r.train_size for r in RECIPES), seed=SEED)
    held_out = data.held_out_set(HELD_OUT_SIZE, seed=SEED)
    x_train, y_train = embed(encoder, train_examples), labels(train_examples)
    x_held, y_held = embed(encoder, held_out), labels(held_out)
    hand = data.hand_written_set()
    x_hand, y_hand = embed(encoder, hand), labels(hand)

    print(
        f"{'version':8} {'train':>6} {'steps':>6} {'wd':>7} {'train acc':>10} "
        f"{'held-out acc':>13} {'hand-written acc':>17}"
    )
    for recipe in RECIPES:
        n = recipe.train_size
        head = train(recipe, x_train[:n], y_train[:n])
        train_acc = accuracy(head, x_train[:n], y_train[:n])
        held_acc = accuracy(head, x_held, y_held)
        hand_acc = accuracy(head, x_hand, y_hand)
        head.info = {
            "version": recipe.version,
            "train_size": n,
            "steps": recipe.steps,
            "lr": recipe.lr,
            "weight_decay": recipe.weight_decay,
            "seed": SEED,
            "train_accuracy": round(train_acc, 4),
            "held_out_size": HELD_OUT_SIZE,
            "held_out_accuracy": round(held_acc, 4),
            "hand_written_size": len(hand),
            "hand_written_accuracy": round(hand_acc, 4),
        }
        head.save(args.out / f"topic-{recipe.version}.pt")
        print(
            f"{recipe.version:8} {n:6d} {recipe.steps:6d} {recipe.weight_decay:7.0e} "
            f"{train_acc:10.3f} {held_acc:13.3f} {hand_acc:17.3f}"
        )
    print(f"wrote {args.out} in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
