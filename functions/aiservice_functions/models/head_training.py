"""Deterministic training and scoring of the shipped :class:`LinearHead` versions.

Every function with a linear head ships two versions trained the same way (full-batch
Adam on frozen embeddings, seeded) and differing only in their :class:`Recipe`, so a
canary rollout between them has a measurable difference to show. The data set, the
classes and the file names are the function's own (:class:`Task`); the procedure, the
scores stored in each head file (``info``) and the printed table are shared here.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, Protocol, TypeVar

import torch

from aiservice_functions.models.linear_head import LinearHead

SEED = 0
EMBED_BATCH = 64


class Encoder(Protocol):
    """Texts → one embedding row per text."""

    def encode(self, texts: Sequence[str]) -> torch.Tensor: ...


class Text(Protocol):
    """A labelled example; its class is read by :attr:`Task.class_of`."""

    @property
    def text(self) -> str: ...


E = TypeVar("E", bound=Text)
H = TypeVar("H", bound=LinearHead)


@dataclass(frozen=True)
class Recipe:
    """How one version is trained."""

    version: str
    train_size: int
    steps: int
    lr: float
    weight_decay: float


@dataclass(frozen=True)
class Task(Generic[E]):
    """What differs between functions: head type, data, recipes, file names."""

    head: type[LinearHead]
    recipes: tuple[Recipe, ...]
    train_set: Callable[[int, int], list[E]]
    """``(n, seed)`` → training examples."""
    held_out_set: Callable[[int, int], list[E]]
    """``(n, seed)`` → examples written with vocabulary the training set never uses."""
    held_out_size: int
    hand_written_set: Callable[[], list[E]]
    class_of: Callable[[E], str]
    file_name: str
    """Head file name with a ``{version}`` field, e.g. ``head-{version}.pt``."""
    models_dir: Path
    encoder: Callable[[], Encoder]


def embed(encoder: Encoder, examples: Sequence[Text]) -> torch.Tensor:
    """Embeddings of ``examples`` in fixed-size batches (same result on every run)."""
    texts = [e.text for e in examples]
    parts = [encoder.encode(texts[i : i + EMBED_BATCH]) for i in range(0, len(texts), EMBED_BATCH)]
    return torch.cat(parts)


def class_indices(task: Task[E], examples: Sequence[E]) -> torch.Tensor:
    """Class indices in the head's class order."""
    return torch.tensor([task.head.CLASSES.index(task.class_of(e)) for e in examples])


def train(head_type: type[H], recipe: Recipe, x: torch.Tensor, y: torch.Tensor) -> H:
    """Full-batch (multinomial) logistic regression; seeded, so the weights are reproducible."""
    torch.manual_seed(SEED)
    head = head_type()
    opt = torch.optim.Adam(head.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    for _ in range(recipe.steps):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(head.linear(x), y)
        loss.backward()
        opt.step()
    return head.eval()


def accuracy(head: LinearHead, x: torch.Tensor, y: torch.Tensor) -> float:
    """Share of correct classes."""
    with torch.inference_mode():
        return float((head(x).argmax(dim=1) == y).float().mean())


def main(task: Task[E], description: str, argv: list[str] | None = None) -> int:
    """Train, score and write one head file per recipe into ``--out``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--out", type=Path, default=task.models_dir, help="output directory")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    started = time.monotonic()
    encoder = task.encoder()
    train_examples = task.train_set(max(r.train_size for r in task.recipes), SEED)
    held_out = task.held_out_set(task.held_out_size, SEED)
    x_train, y_train = embed(encoder, train_examples), class_indices(task, train_examples)
    x_held, y_held = embed(encoder, held_out), class_indices(task, held_out)
    hand = task.hand_written_set()
    x_hand, y_hand = embed(encoder, hand), class_indices(task, hand)

    print(
        f"{'version':8} {'train':>6} {'steps':>6} {'wd':>7} {'train acc':>10} "
        f"{'held-out acc':>13} {'hand-written acc':>17}"
    )
    for recipe in task.recipes:
        n = recipe.train_size
        head = train(task.head, recipe, x_train[:n], y_train[:n])
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
            "held_out_size": task.held_out_size,
            "held_out_accuracy": round(held_acc, 4),
            "hand_written_size": len(hand),
            "hand_written_accuracy": round(hand_acc, 4),
        }
        head.save(args.out / task.file_name.format(version=recipe.version))
        print(
            f"{recipe.version:8} {n:6d} {recipe.steps:6d} {recipe.weight_decay:7.0e} "
            f"{train_acc:10.3f} {held_acc:13.3f} {hand_acc:17.3f}"
        )
    print(f"wrote {args.out} in {time.monotonic() - started:.1f} s")
    return 0
