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

import sys

from aiservice_functions.models.head_training import Recipe, Task, main
from aiservice_functions.models.minilm import MiniLMEncoder
from aiservice_functions.topic import data
from aiservice_functions.topic.head import TopicHead
from aiservice_functions.topic.model import MODELS_DIR

TASK = Task(
    head=TopicHead,
    recipes=(
        Recipe("v1", train_size=5, steps=30, lr=0.05, weight_decay=0.0),
        Recipe("v2", train_size=1500, steps=60, lr=0.05, weight_decay=1e-3),
    ),
    train_set=data.train_set,
    held_out_set=data.held_out_set,
    held_out_size=500,
    hand_written_set=data.hand_written_set,
    class_of=lambda e: e.topic,
    file_name="topic-{version}.pt",
    models_dir=MODELS_DIR,
    encoder=MiniLMEncoder,
)

if __name__ == "__main__":
    sys.exit(main(TASK, description=__doc__.splitlines()[0]))
