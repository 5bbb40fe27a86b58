"""Scale decisions for local revisions, from Knative's autoscaling annotations.

Pure. A revision scales on concurrency like Knative's KPA, simplified for one machine:
up at once to ``ceil(in_flight / target)`` processes (bounded by min/max-scale), down to
``minScale`` only after no event has been in flight for ``idle_seconds`` (Knative's
scale-to-zero grace period). Each process takes at most ``containerConcurrency`` events.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

ANN = "autoscaling.knative.dev/"
LOCAL_MAX_SCALE = 4
"""A ``max-scale`` of 0 (unlimited) still needs a bound on a laptop."""


@dataclass(frozen=True)
class ScaleSettings:
    min_scale: int = 0
    max_scale: int = LOCAL_MAX_SCALE
    target: float = 100.0
    container_concurrency: int = 0
    idle_seconds: float = 30.0

    @classmethod
    def from_template(
        cls, template: Mapping[str, Any], idle_seconds: float = 30.0
    ) -> ScaleSettings:
        """Read a revision template's annotations and ``containerConcurrency``."""
        ann = (template.get("metadata") or {}).get("annotations") or {}
        spec = template.get("spec") or {}
        try:
            min_scale = int(ann.get(ANN + "min-scale", "0"))
            max_scale = int(ann.get(ANN + "max-scale", "0")) or LOCAL_MAX_SCALE
            target = float(ann.get(ANN + "target", "100"))
        except ValueError as err:
            raise ValueError(f"spec.template.metadata.annotations: {err}") from None
        return cls(
            min_scale=min_scale,
            max_scale=max(max_scale, min_scale, 1),
            target=target if target > 0 else 100.0,
            container_concurrency=int(spec.get("containerConcurrency", 0) or 0),
            idle_seconds=idle_seconds,
        )


def desired_processes(
    settings: ScaleSettings, in_flight: int, current: int, idle_for: float
) -> int:
    """How many processes a revision should run now."""
    want = math.ceil(in_flight / settings.target) if in_flight else 0
    if in_flight and settings.container_concurrency:
        want = max(want, math.ceil(in_flight / settings.container_concurrency))
    want = min(max(want, settings.min_scale), settings.max_scale)
    if want >= current:
        return want
    if in_flight == 0 and idle_for >= settings.idle_seconds:
        return settings.min_scale
    return current


def choose_process(loads: Sequence[int], container_concurrency: int) -> int | None:
    """Index of the least loaded process with room for one more event, or None if all are full."""
    best: int | None = None
    for index, load in enumerate(loads):
        if container_concurrency and load >= container_concurrency:
            continue
        if best is None or load < loads[best]:
            best = index
    return best
