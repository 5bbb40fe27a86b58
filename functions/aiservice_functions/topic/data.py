"""A deterministic, labelled set of short reviews, each about one topic.

No public corpus of topic-labelled reviews ships with the project, so the training data
is generated: a subject that belongs to a topic ("the parcel", "the refund policy" ...)
plus something said about it, praise or complaint in equal shares, so the topic can
never be guessed from the sentiment. As with the sentiment data, every word list is
split in two by position and the held-out split uses only the half the training split
never sees: the held-out score measures generalisation through the encoder, not memory
of templates. Pure Python, no I/O: the same seed gives the same sentences.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

from aiservice_functions.models.generated_text import cap, distinct, fix_articles, half, split_rng

Topic = Literal["shipping", "quality", "pricing", "service", "usability"]
TOPICS: tuple[Topic, ...] = ("shipping", "quality", "pricing", "service", "usability")
"""Class index order of every topic head."""


@dataclass(frozen=True)
class Example:
    """One review and its topic; ``positive`` says which way it leans (balanced per topic)."""

    text: str
    topic: Topic
    positive: bool


@dataclass(frozen=True)
class _Vocabulary:
    subjects: list[str]
    praise: list[str]
    complaints: list[str]


# Subjects are singular so every predicate ("was ...", "has ...") fits every subject.
_TOPIC_WORDS: dict[Topic, _Vocabulary] = {
    "shipping": _Vocabulary(
        subjects=[
            "the delivery",
            "the parcel",
            "the shipment",
            "the package",
            "the courier",
            "the tracking",
            "the dispatch",
            "the postage",
            "the delivery van",
            "the express shipping",
        ],
        praise=[
            "arrived two days early",
            "came well packed and on time",
            "was tracked the whole way to my door",
            "reached me the very next morning",
            "was handed over right at my door",
            "showed up exactly in the promised slot",
            "got here faster than I expected",
            "was left safely with a neighbour as I asked",
        ],
        complaints=[
            "arrived a week late",
            "got lost in transit for days",
            "was left out in the rain",
            "came crushed and soaking wet",
            "went to the wrong address twice",
            "was stuck at the depot for ten days",
            "never turned up at all",
            "was returned to the sender without a note",
        ],
    ),
    "quality": _Vocabulary(
        subjects=[
            "the stitching",
            "the material",
            "the build",
            "the finish",
            "the hinge",
            "the fabric",
            "the zip",
            "the handle",
            "the casing",
            "the sole",
        ],
        praise=[
            "feels solid and durable",
            "has held up perfectly for months",
            "is sturdy and beautifully made",
            "still looks brand new after a year",
            "survived being dropped without a scratch",
            "is thick and feels premium",
            "has not worn at all despite daily use",
            "is flawless, every seam is straight",
        ],
        complaints=[
            "fell apart after a week",
            "cracked on the first day",
            "feels cheap and flimsy",
            "started peeling almost at once",
            "snapped the second time I used it",
            "frayed and came loose within days",
            "rusted after one wash",
            "is already falling to pieces",
        ],
    ),
    "pricing": _Vocabulary(
        subjects=[
            "the price",
            "the cost",
            "the value for money",
            "the monthly fee",
            "the sale price",
            "the price tag",
            "the subscription price",
            "the total at checkout",
            "the bundle deal",
            "the discount",
        ],
        praise=[
            "is a real bargain",
            "is very fair for what you get",
            "was half what other shops charge",
            "is worth every penny",
            "is cheaper than anywhere else I looked",
            "made it an easy decision to buy",
            "saved me a lot of money",
            "is honest, with no hidden charges",
        ],
        complaints=[
            "is far too expensive",
            "doubled without any warning",
            "is a complete rip-off",
            "is not worth the money at all",
            "had hidden charges added at the end",
            "is twice what it costs elsewhere",
            "went up again this month",
            "is outrageous for something so basic",
        ],
    ),
    "service": _Vocabulary(
        subjects=[
            "the support team",
            "customer service",
            "the agent on the phone",
            "the shop assistant",
            "the help desk",
            "the store manager",
            "the live chat",
            "the call centre",
            "the service desk",
            "the sales rep",
        ],
        praise=[
            "answered within minutes",
            "was friendly and patient with me",
            "sorted out my problem at once",
            "went out of their way to help",
            "called me back the same day",
            "was polite and really knowledgeable",
            "apologised and fixed everything",
            "treated me like a valued customer",
        ],
        complaints=[
            "never replied to my emails",
            "was rude and dismissive",
            "kept me on hold for an hour",
            "hung up on me twice",
            "refused to listen to my complaint",
            "gave me three different answers",
            "ignored every message I sent",
            "blamed me and would not help",
        ],
    ),
    "usability": _Vocabulary(
        subjects=[
            "the setup",
            "the app",
            "the instruction manual",
            "the control panel",
            "the menu",
            "the assembly guide",
            "the remote",
            "the interface",
            "the pairing process",
            "the settings screen",
        ],
        praise=[
            "is simple and intuitive",
            "took two minutes from start to finish",
            "is easy to follow even for my grandmother",
            "makes every option easy to find",
            "is clear and well laid out",
            "just works without reading anything",
            "guides you step by step",
            "is the most straightforward I have used",
        ],
        complaints=[
            "is confusing and badly designed",
            "took me hours to figure out",
            "makes no sense at all",
            "hides every setting behind five menus",
            "is impossible to follow",
            "keeps crashing before I can finish",
            "is written in gibberish",
            "needs a degree in engineering to use",
        ],
    ),
}

# Topic-neutral: the products and framing say nothing about the topic.
_PRODUCTS = [
    "phone",
    "blender",
    "pair of headphones",
    "winter jacket",
    "coffee maker",
    "laptop bag",
    "desk lamp",
    "vacuum cleaner",
    "pair of running shoes",
    "tent",
    "keyboard",
    "toaster",
    "backpack",
    "office chair",
    "smartwatch",
    "frying pan",
]
_OPENERS = ["", "Honestly, ", "Well, ", "Overall, ", "To be fair, ", "Sadly, ", "Frankly, "]

_TEMPLATES = [
    "{Subject} {pred}.",
    "{opener}{subject} {pred}.",
    "I ordered a {product} and {subject} {pred}.",
    "I bought a {product} last month. {Subject} {pred}.",
    "About my new {product}: {subject} {pred}.",
    "{Subject} {pred}, and {subject2} {pred2}.",
    "{opener}{subject} {pred} when I got the {product}.",
]


def _sentence(rng: random.Random, topic: Topic, positive: bool, held_out: bool) -> str:
    words = _TOPIC_WORDS[topic]
    subjects = half(words.subjects, held_out)
    preds = half(words.praise if positive else words.complaints, held_out)
    subject, subject2 = rng.sample(subjects, 2)
    pred, pred2 = rng.sample(preds, 2)
    text = rng.choice(_TEMPLATES).format(
        opener=rng.choice(_OPENERS),
        product=rng.choice(half(_PRODUCTS, held_out)),
        subject=subject,
        Subject=cap(subject),
        pred=pred,
        subject2=subject2,
        pred2=pred2,
    )
    return cap(fix_articles(text))


def generate(n: int, *, held_out: bool, seed: int) -> list[Example]:
    """``n`` distinct reviews cycling through the topics, half of each praise."""
    rng = split_rng(seed, held_out, prefix="topic:")

    def draw(i: int) -> Example:
        topic = TOPICS[i % len(TOPICS)]
        positive = (i // len(TOPICS)) % 2 == 0
        return Example(_sentence(rng, topic, positive, held_out), topic, positive)

    return distinct(n, draw)


def vocabulary(held_out: bool) -> list[str]:
    """Subjects, predicates and products one split is written with (disjoint across splits)."""
    lists = [_PRODUCTS] + [
        words for v in _TOPIC_WORDS.values() for words in (v.subjects, v.praise, v.complaints)
    ]
    return [word for words in lists for word in half(words, held_out)]


def train_set(n: int, seed: int = 0) -> list[Example]:
    """Training reviews (training half of the vocabulary)."""
    return generate(n, held_out=False, seed=seed)


def held_out_set(n: int = 500, seed: int = 0) -> list[Example]:
    """Held-out reviews, written with vocabulary the training set never uses."""
    return generate(n, held_out=True, seed=seed)


# Written by hand, independently of the templates: natural sentences that check the
# head beyond the generated phrasing (the generated set alone would flatter it).
_HAND: list[tuple[str, Topic, bool]] = [
    ("The parcel arrived three days late and the box was crushed.", "shipping", False),
    ("Delivered the next morning, well ahead of schedule.", "shipping", True),
    ("Still waiting for my order, the tracking hasn't moved in a week.", "shipping", False),
    ("The courier left it in my recycling bin in the pouring rain.", "shipping", False),
    ("The seams split after the first wash.", "quality", False),
    ("Rock solid construction, it feels like it will last forever.", "quality", True),
    ("The plastic is thin and the lid cracked within days.", "quality", False),
    ("Beautifully crafted, the leather is thick and soft.", "quality", True),
    ("Way overpriced for what it is.", "pricing", False),
    ("Great value, I paid half of what the big brands ask.", "pricing", True),
    ("They charged me twice and added fees I never agreed to.", "pricing", False),
    ("For this price you cannot find anything better.", "pricing", True),
    ("Support never answered my emails and the agent was rude on the phone.", "service", False),
    ("The lady at the help desk was incredibly kind and patient.", "service", True),
    ("I spent an hour on hold before someone hung up on me.", "service", False),
    ("Customer care replaced it without a single question, brilliant.", "service", True),
    ("Setting it up was a nightmare, the instructions make no sense.", "usability", False),
    ("The app is so intuitive, I was up and running in minutes.", "usability", True),
    ("The buttons are tiny and the menus are a maze.", "usability", False),
    ("Pairing with my phone was effortless.", "usability", True),
]


def hand_written_set() -> list[Example]:
    """20 natural reviews, four per topic."""
    return [Example(text, topic, positive) for text, topic, positive in _HAND]
