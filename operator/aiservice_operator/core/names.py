"""Names of the Knative objects an AIService becomes, for AIService and model names of any
length (up to 63 characters each).

Knative's limits: a Service name and every revision name are DNS-1035 labels of at most 63
characters, a revision name starts with `<service>-`, and each traffic tag makes the route
host label `<tag>-<service>`, so `<tag>-<service>` must fit 63 too. A name that fits is
used as it is (short names keep the names they always had); a longer one keeps a readable
prefix and ends in a hash of the whole original, so it is deterministic and two long names
with the same prefix still differ.

Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import re

DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
MAX_LABEL = 63
HASH_LENGTH = 8
MAX_SERVICE = 40
"""A Knative Service name leaves room for `-<model>-<hash8>` and `<tag>-` in 63."""
MAX_TAG = MAX_LABEL - 1 - MAX_SERVICE
"""22: `<tag>-<service>` fits one DNS label for every service name."""


def name_hash(value: str) -> str:
    """Eight hex digits of sha256: the suffix of a shortened name."""
    return hashlib.sha256(value.encode()).hexdigest()[:HASH_LENGTH]


def shorten(value: str, limit: int, *, key: str | None = None) -> str:
    """`value` when it fits `limit`, else its prefix, `-`, and the hash of `key` (default
    `value`), `limit` characters at most. The prefix never ends in `-`."""
    if len(value) <= limit:
        return value
    prefix = value[: limit - HASH_LENGTH - 1].rstrip("-")
    return f"{prefix}-{name_hash(value if key is None else key)}"


def service_name(aiservice: str) -> str:
    """The Knative Service of an AIService: its own name up to 40 characters."""
    return shorten(aiservice, MAX_SERVICE)


def revision_name(service: str, model: str, digest: str) -> str:
    """`<service>-<model>-<digest>`; a model name too long for 63 is cut (the digest covers
    the whole pod template, the full model name included, so the name stays unique)."""
    room = MAX_LABEL - len(service) - len(digest) - 2
    part = model if len(model) <= room else model[:room].rstrip("-")
    return f"{service}-{part}-{digest}"


def model_tag(model: str) -> str:
    """The traffic tag of a model: its name when it is a DNS-1035 label of at most 22
    characters; else (too long, or starting with a digit) a shortened form with a hash."""
    if len(model) <= MAX_TAG and DNS_1035.match(model):
        return model
    readable = model if model[:1].isalpha() else f"m{model}"
    prefix = readable[: MAX_TAG - HASH_LENGTH - 1].rstrip("-")
    return f"{prefix}-{name_hash(model)}"


def trigger_name(service: str, digest: str, role: str = "") -> str:
    """`<service>-<digest>` or `<service>-<role>-<digest>`: at most 40+1+6+1+8 characters."""
    return f"{service}-{role}-{digest}" if role else f"{service}-{digest}"
