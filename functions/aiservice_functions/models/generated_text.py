"""Building blocks of the generated, labelled text sets the shipped heads train on.

Every word list is split in two by position (:func:`half`): the training split uses the
even entries, the held-out split the odd ones, so a held-out score measures how well a
head generalises through the encoder rather than how well it memorises templates.
Pure Python, no I/O: the same seed gives the same sentences.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from typing import Protocol, TypeVar


class _Text(Protocol):
    @property
    def text(self) -> str: ...


E = TypeVar("E", bound=_Text)


def half(words: list[str], held_out: bool) -> list[str]:
    """The half of ``words`` one split is written with: even indices train, odd ones held-out."""
    return words[1::2] if held_out else words[0::2]


def cap(text: str) -> str:
    """``text`` with its first letter upper-case."""
    return text[:1].upper() + text[1:]


def fix_articles(text: str) -> str:
    """ "a excellent" → "an excellent" (the word lists avoid the "a useful" exceptions)."""
    return re.sub(r"\b([Aa]) (?=[aeio])", r"\1n ", text)


def split_rng(seed: int, held_out: bool, prefix: str = "") -> random.Random:
    """The random source of one split; ``prefix`` keeps different data sets apart."""
    return random.Random(f"{prefix}{seed}:{'held-out' if held_out else 'train'}")


def distinct(n: int, draw: Callable[[int], E]) -> list[E]:
    """``n`` examples with pairwise different texts; ``draw(i)`` proposes the ``i``-th.

    Raises :class:`ValueError` when the vocabulary cannot give ``n`` different sentences
    (gives up after ``50 * n`` proposals rather than looping for ever).
    """
    seen: set[str] = set()
    out: list[E] = []
    attempts = 0
    while len(out) < n:
        attempts += 1
        if attempts > 50 * n:
            raise ValueError(f"cannot generate {n} distinct sentences from the vocabulary")
        example = draw(len(out))
        if example.text not in seen:
            seen.add(example.text)
            out.append(example)
    return out
