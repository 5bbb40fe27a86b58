"""A deterministic, labelled set of short product reviews for training the head.

No public sentiment corpus ships with the project, so the training data is generated
from templates and word lists. To make the held-out score mean something, the held-out
split uses vocabulary (products, adjectives, phrases) the training split never sees:
it measures how well the head generalises through the encoder, not how well it
memorises templates. Pure Python, no I/O: the same seed gives the same sentences.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

from aiservice_functions.models.generated_text import cap, distinct, fix_articles, half, split_rng

Label = Literal["negative", "positive"]
LABELS: tuple[Label, Label] = ("negative", "positive")
"""Class index order of every head: index 0 is negative, index 1 positive."""


@dataclass(frozen=True)
class Example:
    """One labelled review."""

    text: str
    label: Label


# Each list is split in two by position: even indices feed training, odd ones held-out.
_PRODUCTS = [
    "phone",
    "blender",
    "pair of headphones",
    "winter jacket",
    "novel",
    "coffee maker",
    "laptop bag",
    "hotel room",
    "desk lamp",
    "vacuum cleaner",
    "running shoes",
    "tent",
    "keyboard",
    "toaster",
    "backpack",
    "office chair",
    "smartwatch",
    "frying pan",
    "mattress",
    "e-reader",
    "printer",
    "water bottle",
    "board game",
    "suitcase",
]
_POS_ADJ = [
    "excellent",
    "fantastic",
    "wonderful",
    "great",
    "superb",
    "reliable",
    "comfortable",
    "delightful",
    "impressive",
    "sturdy",
    "brilliant",
    "lovely",
    "outstanding",
    "solid",
    "amazing",
    "perfect",
    "pleasant",
    "well made",
    "terrific",
    "charming",
]
_NEG_ADJ = [
    "terrible",
    "awful",
    "disappointing",
    "flimsy",
    "useless",
    "horrible",
    "poor",
    "unreliable",
    "cheap and nasty",
    "dreadful",
    "defective",
    "shoddy",
    "annoying",
    "badly made",
    "frustrating",
    "pathetic",
    "mediocre",
    "worthless",
    "noisy",
    "faulty",
]
_POS_PHRASES = [
    "I would buy it again",
    "I highly recommend it",
    "it exceeded my expectations",
    "it works perfectly",
    "it is worth every penny",
    "my whole family loves it",
    "I am very happy with it",
    "it arrived early and works great",
    "five stars from me",
    "best purchase I made this year",
    "it does exactly what it promises",
    "I use it every day with a smile",
    "customer service was kind and helpful",
    "it feels premium and lasts",
    "I have already ordered a second one",
    "it made my life so much easier",
]
_NEG_PHRASES = [
    "I want a refund",
    "it stopped working after a week",
    "it was a waste of money",
    "I would not recommend it",
    "I returned it immediately",
    "it broke on the first day",
    "customer service never answered",
    "it arrived damaged and late",
    "one star is too generous",
    "avoid it at all costs",
    "it smells of cheap plastic",
    "the battery dies within an hour",
    "nothing works as advertised",
    "I regret buying it",
    "it fell apart in my hands",
    "it made everything worse",
]
# Service reviews: people and places, with adjectives of their own.
_PEOPLE = [
    "staff",
    "waiter",
    "receptionist",
    "driver",
    "support agent",
    "teacher",
    "doctor",
    "landlord",
    "hairdresser",
    "tour guide",
    "mechanic",
    "cashier",
]
_PLACES = [
    "lobby",
    "restaurant",
    "flat",
    "train",
    "gym",
    "cafe",
    "clinic",
    "beach",
    "bathroom",
    "office",
    "campsite",
    "cinema",
]
_POS_PERSON = [
    "friendly",
    "polite",
    "helpful",
    "attentive",
    "kind",
    "welcoming",
    "patient",
    "professional",
    "cheerful",
    "knowledgeable",
]
_NEG_PERSON = [
    "rude",
    "unhelpful",
    "careless",
    "dismissive",
    "lazy",
    "arrogant",
    "incompetent",
    "impatient",
    "grumpy",
    "clueless",
]
_POS_PLACE = [
    "clean",
    "spotless",
    "cosy",
    "quiet",
    "bright",
    "tidy",
    "spacious",
    "calm",
    "airy",
    "peaceful",
]
_NEG_PLACE = [
    "dirty",
    "filthy",
    "cramped",
    "smelly",
    "noisy",
    "freezing",
    "dark",
    "crowded",
    "damp",
    "run-down",
]
_INTENSIFIERS = ["", "really ", "truly ", "very ", "absolutely ", "quite ", "extremely "]
_OPENERS = ["", "Honestly, ", "Well, ", "Overall, ", "In short, ", "To be fair, "]

_TEMPLATES_SIMPLE = [
    "{opener}the {product} is {intens}{adj}.",
    "{opener}this {product} is {intens}{adj} and {phrase}.",
    "What a {adj} {product}! {Phrase}.",
    "{Phrase}. The {product} is {intens}{adj}.",
    "I bought the {product} last month: {phrase}.",
    "{opener}{phrase}; a {intens}{adj} {product}.",
    "My new {product} is {adj}, {phrase}.",
    "The {product} turned out {intens}{adj}.",
]
# The clause after "but" decides the label.
_TEMPLATES_CONTRAST = [
    "The {product} looked {other_adj} at first, but {phrase}.",
    "I expected a {other_adj} {product}, but it is {intens}{adj}.",
]
# Negated opposite adjective: "not terrible" reads positive, "not great" negative.
_TEMPLATES_NEGATED = [
    "The {product} is not {other_adj} at all; {phrase}.",
]


_TEMPLATES_SERVICE = [
    "The {person} was {intens}{person_adj} and the {place} was {place_adj}.",
    "{opener}the {place} was {intens}{place_adj}; {phrase}.",
    "Our {person} was {person_adj}. {Phrase}.",
    "A {place_adj} {place} and a {intens}{person_adj} {person}.",
]


def _sentence(rng: random.Random, label: Label, held_out: bool) -> str:
    positive = label == "positive"
    adj = rng.choice(half(_POS_ADJ if positive else _NEG_ADJ, held_out))
    other_adj = rng.choice(half(_NEG_ADJ if positive else _POS_ADJ, held_out))
    phrase = rng.choice(half(_POS_PHRASES if positive else _NEG_PHRASES, held_out))
    roll = rng.random()
    if roll < 0.25:
        template = rng.choice(_TEMPLATES_SERVICE)
    elif roll < 0.37:
        template = rng.choice(_TEMPLATES_CONTRAST)
    elif roll < 0.43:
        template = rng.choice(_TEMPLATES_NEGATED)
    else:
        template = rng.choice(_TEMPLATES_SIMPLE)
    text = template.format(
        opener=rng.choice(_OPENERS),
        product=rng.choice(half(_PRODUCTS, held_out)),
        intens=rng.choice(_INTENSIFIERS),
        adj=adj,
        other_adj=other_adj,
        phrase=phrase,
        Phrase=cap(phrase),
        person=rng.choice(half(_PEOPLE, held_out)),
        place=rng.choice(half(_PLACES, held_out)),
        person_adj=rng.choice(half(_POS_PERSON if positive else _NEG_PERSON, held_out)),
        place_adj=rng.choice(half(_POS_PLACE if positive else _NEG_PLACE, held_out)),
    )
    return cap(fix_articles(text))


def generate(n: int, *, held_out: bool, seed: int) -> list[Example]:
    """``n`` distinct reviews, half positive, from the training or held-out vocabulary."""
    rng = split_rng(seed, held_out)

    def draw(i: int) -> Example:
        label = LABELS[i % 2]
        return Example(_sentence(rng, label, held_out), label)

    return distinct(n, draw)


def vocabulary(held_out: bool) -> list[str]:
    """Products, adjectives and phrases one split is written with (disjoint across splits)."""
    lists = (
        _PRODUCTS,
        _POS_ADJ,
        _NEG_ADJ,
        _POS_PHRASES,
        _NEG_PHRASES,
        _PEOPLE,
        _PLACES,
        _POS_PERSON,
        _NEG_PERSON,
        _POS_PLACE,
        _NEG_PLACE,
    )
    return [word for words in lists for word in half(words, held_out)]


def train_set(n: int, seed: int = 0) -> list[Example]:
    """Training reviews (training half of the vocabulary)."""
    return generate(n, held_out=False, seed=seed)


def held_out_set(n: int = 400, seed: int = 0) -> list[Example]:
    """Held-out reviews, written with vocabulary the training set never uses."""
    return generate(n, held_out=True, seed=seed)


# Written by hand, independently of the templates: a second, small held-out set that
# checks the head on natural sentences (the generated set alone would flatter it).
_HAND_POS = [
    "I absolutely love this, best thing I ever bought!",
    "Great value for the price, my kids adore it.",
    "The hotel staff were friendly and the room was spotless.",
    "Fantastic sound quality and the battery lasts for days.",
    "Setup took two minutes and it has worked flawlessly since.",
    "The pasta was delicious and the waiter was lovely.",
    "Exactly what I needed, and it arrived a day early.",
    "My back pain is gone since I started using this chair.",
    "Beautiful design, feels solid, and the app is easy to use.",
    "We had a wonderful stay and will definitely come back.",
    "Five stars, would happily recommend to my friends.",
    "The course was clear, well paced and genuinely fun.",
]
_HAND_NEG = [
    "Terrible quality, it broke after two days and support ignored me.",
    "Do not buy this. Complete waste of money.",
    "The hotel was dirty and the staff were rude.",
    "It arrived broken and the refund took months.",
    "The screen cracked the first time I dropped it on the sofa.",
    "Cold food, a two hour wait and a bill full of mistakes.",
    "The instructions are useless and half the screws were missing.",
    "It overheats after ten minutes and then shuts down.",
    "Worst customer service I have ever dealt with.",
    "The room smelled of smoke and the shower never got hot.",
    "Cheap plastic that snapped within a week.",
    "I am very disappointed, it looks nothing like the photos.",
]


def hand_written_set() -> list[Example]:
    """24 natural reviews, 12 positive and 12 negative."""
    return [Example(t, "positive") for t in _HAND_POS] + [Example(t, "negative") for t in _HAND_NEG]
