"""Fixtures of the chart tests: a real helm binary and `render(values)`.

Without a helm binary the chart tests skip and say so.
"""

from __future__ import annotations

import subprocess
from typing import Any

import pytest
import yaml

from tests.support.chart import CHART, NAMESPACE, RELEASE, Rendered, RenderFn, find_helm


@pytest.fixture(scope="session")
def helm() -> str:
    path = find_helm()
    if path is None:
        pytest.skip("no helm binary: not on PATH and .tools/bin/helm missing (run scripts/helm.sh)")
    return path


@pytest.fixture(scope="session")
def render(helm: str, tmp_path_factory: pytest.TempPathFactory) -> RenderFn:
    """`render(values_dict, *extra_args)` runs `helm template` and parses what it printed."""
    cache: dict[str, Rendered] = {}
    folder = tmp_path_factory.mktemp("values")

    def _render(values: dict[str, Any] | None = None, *extra: str) -> Rendered:
        key = yaml.safe_dump(values or {}, sort_keys=True) + "\0".join(extra)
        if key in cache:
            return cache[key]
        args = [helm, "template", RELEASE, str(CHART), "--namespace", NAMESPACE, *extra]
        if values:
            values_file = folder / f"values-{len(cache)}.yaml"
            values_file.write_text(yaml.safe_dump(values))
            args += ["--values", str(values_file)]
        proc = subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)
        objects = []
        if proc.returncode == 0:
            objects = [d for d in yaml.safe_load_all(proc.stdout) if d]
        cache[key] = Rendered(proc.returncode, proc.stderr, objects)
        return cache[key]

    return _render
