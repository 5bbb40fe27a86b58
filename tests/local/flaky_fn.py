"""A tiny function for the local executor's tests: echoes events, fails on a marker.

Its "model" is a JSON file: ``{"fixed_file": "/path"}`` (``"fail_all": true``: a broken
model version that fails every event). An event whose data has
``"fail": true`` is answered 500 (retried, then dead-lettered) until ``fixed_file``
exists, which is how a test "fixes" the function before replaying the dead letters.
``"reject": true`` is refused with 422 (not retried). No torch, so it starts fast.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aiservice_functions.cloudevents_http import CloudEvent, data_json
from aiservice_functions.runtime.function import Function, Rejected


def load(path: Path, version: str) -> dict[str, Any]:
    config: dict[str, Any] = json.loads(path.read_text())
    config["version"] = version
    return config


def decode(event: CloudEvent) -> dict[str, Any]:
    data = data_json(event)
    if not isinstance(data, dict):
        raise Rejected("data must be a JSON object")
    if data.get("reject"):
        raise Rejected("this event is rejected on purpose", field="reject")
    return {"id": event.get_id(), "origin": data.get("origin", event.get_id()), "data": data}


def infer(model: dict[str, Any], items: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for item in items:
        failing = item["data"].get("fail") and not os.path.exists(model["fixed_file"])
        if model.get("fail_all") or failing:
            raise RuntimeError("failing on purpose until fixed")
        out.append(
            {
                "origin": item["origin"],
                "version": model["version"],
                "stages": [*item["data"].get("stages", []), model["version"]],
                "fail": item["data"].get("fail", False),
            }
        )
    return out


function = Function(name="flaky", load=load, infer=infer, decode=decode, uses_torch=False)
