"""Where the chart is, which helm binary renders it, and the shape of a rendering.

helm comes from PATH, else from .tools/bin (put there by scripts/helm.sh, which the CI set-up
runs).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "aiservice-operator"
RELEASE = "aisvc"
NAMESPACE = "aiservice-system"


def find_helm() -> str | None:
    """The helm binary to use, or None: PATH first, then the project's .tools/bin."""
    on_path = shutil.which("helm")
    if on_path:
        return on_path
    local = ROOT / ".tools" / "bin" / "helm"
    return str(local) if os.access(local, os.X_OK) else None


@dataclass(frozen=True)
class Rendered:
    """The outcome of one `helm template` run."""

    returncode: int
    stderr: str
    objects: list[dict[str, Any]]

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def deployment(self, component: str) -> dict[str, Any]:
        """The Deployment of one component of the chart: `operator` or `event-store`."""
        found = [
            o
            for o in self.of_kind("Deployment")
            if o["metadata"]["labels"]["app.kubernetes.io/component"] == component
        ]
        assert len(found) == 1, f"expected one {component} Deployment, got {len(found)}"
        return found[0]

    def one(self, kind: str, name: str | None = None) -> dict[str, Any]:
        found = [o for o in self.of_kind(kind) if name is None or o["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind} {name or ''}, got {len(found)}"
        return found[0]


RenderFn = Callable[..., Rendered]
