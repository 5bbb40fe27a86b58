"""A tiny torch-free function for runtime tests: behaviour is driven by the event data.

- ``{"text": "..."}`` → ``{"echo": text, "length": n, "batch": size, "model": model}``
- ``{"fail": true}``: the model raises (500); ``{"none": true}``: no reply (202)
- ``{"wait": "name"}``: blocks until ``GATES[name]`` is set (timeouts, batching)
- no ``text`` → rejected 422 naming the field
The "model" is the text content of the model file.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aiservice_functions.cloudevents_http import CloudEvent, data_json
from aiservice_functions.runtime.function import BatchDefaults, Function, Rejected

GATES: dict[str, threading.Event] = {}
ENTERED: dict[str, threading.Event] = {}
"""Set when an item waiting on the gate of the same name has entered ``infer``."""
BATCHES: list[int] = []


def _load(path: Path, version: str) -> str:
    return f"{path.read_text().strip()}@{version}"


def _decode(event: CloudEvent) -> dict[str, Any]:
    data = data_json(event)
    if not isinstance(data, dict):
        raise Rejected("data must be a JSON object", 400)
    if "fail" in data or "none" in data or "wait" in data:
        return data
    if not isinstance(data.get("text"), str):
        raise Rejected("field 'text' is required and must be a string", field="text")
    return data


def _infer(model: str, items: Sequence[dict[str, Any]]) -> list[Any]:
    BATCHES.append(len(items))
    out: list[Any] = []
    for item in items:
        if "wait" in item:
            ENTERED.setdefault(item["wait"], threading.Event()).set()
            GATES.setdefault(item["wait"], threading.Event()).wait(30)
        if item.get("fail"):
            raise RuntimeError("the model failed on purpose")
        if item.get("none"):
            out.append(None)
            continue
        text = item.get("text", "")
        out.append({"echo": text, "length": len(text), "batch": len(items), "model": model})
    return out


function = Function(name="echo", load=_load, infer=_infer, decode=_decode, uses_torch=False)
batched = Function(
    name="echo-batched",
    load=_load,
    infer=_infer,
    decode=_decode,
    uses_torch=False,
    batching=BatchDefaults(enabled=True, max_size=8, max_wait_ms=0),
)
