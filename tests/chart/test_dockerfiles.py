"""The project's images follow the image rules (tests.support.dockerfile_rules), checked on
their Dockerfiles because no container engine can build them here."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name

from tests.support.chart import ROOT
from tests.support.dockerfile_rules import pip_requirements, shell_commands, stages, violations

IMAGES = ["operator/Dockerfile", "functions/Dockerfile"]


@pytest.mark.parametrize("relpath", IMAGES)
def test_project_image_follows_the_rules(relpath: str) -> None:
    path = ROOT / relpath
    if not path.exists():
        pytest.skip(f"{relpath} does not exist in this tree")
    assert violations(path) == []


def test_operator_image_runs_the_chart_commands() -> None:
    """The chart starts `kopf` and `python -m aiservice_functions.event_store` from it."""
    final = stages(ROOT / "operator" / "Dockerfile")[-1]
    env = " ".join(text for op, text in final.instructions if op == "ENV")
    assert "/opt/venv/bin" in env
    copies = [text for op, text in final.instructions if op == "COPY"]
    assert any(text.startswith("/opt/venv") for text in copies)


GOOD = """\
ARG BASE=python:3.11.11-slim-bookworm
FROM ${BASE} AS build
RUN apt-get update && apt-get install -y gcc libpq-dev
RUN pip install "flask==3.1.3" && pip install --no-deps .
FROM ${BASE}
COPY --from=build /opt/venv /opt/venv
USER 10001:10001
"""

BAD = {
    "single stage": ("FROM python:3.11.11-slim\nUSER 1000\n", "not multi-stage"),
    "latest tag": (GOOD.replace("3.11.11-slim-bookworm", "latest"), "not pinned to a version"),
    "bare image": (GOOD.replace("python:3.11.11-slim-bookworm", "python"), "not pinned"),
    "unpinned pip": (GOOD.replace('"flask==3.1.3"', '"flask>=3"'), "'flask>=3' is not pinned"),
    "pip -r": (GOOD.replace('"flask==3.1.3"', "-r requirements.txt"), "pip install -r"),
    "unpinned pip in a branch": (
        GOOD.replace(
            'RUN pip install "flask==3.1.3"',
            'RUN if [ "$V" = a ]; then pip install "flask==1.0"; else pip install flask; fi\n'
            "RUN true",
        ),
        "'flask' is not pinned",
    ),
    "root user": (GOOD.replace("USER 10001:10001", "USER 0"), "root"),
    "named user": (GOOD.replace("USER 10001:10001", "USER app"), "not numeric"),
    "no user": (GOOD.replace("USER 10001:10001\n", ""), "no USER"),
    "build tools in final stage": (
        GOOD.replace(
            "COPY --from", "RUN apt-get install -y --no-install-recommends gcc make\nCOPY --from"
        ),
        "build tools: gcc, make",
    ),
}


def test_a_good_dockerfile_passes(tmp_path: Path) -> None:
    path = tmp_path / "Dockerfile"
    path.write_text(GOOD)
    assert violations(path) == []


@pytest.mark.parametrize("case", BAD)
def test_each_rule_catches_its_breach(tmp_path: Path, case: str) -> None:
    text, expected = BAD[case]
    path = tmp_path / "Dockerfile"
    path.write_text(text)
    found = violations(path)
    assert any(expected in v for v in found), found


def test_operator_image_pins_exactly_the_declared_dependencies() -> None:
    """The image installs the project with --no-deps, so its pins must be the runtime
    dependencies pyproject declares (base + operator + eventstore), each within range."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    runtime = [*project["dependencies"], *extras["operator"], *extras["eventstore"]]
    image_env = {"sys_platform": "linux", "platform_system": "Linux", "os_name": "posix"}
    declared = {
        canonicalize_name(r.name): r
        for r in map(Requirement, runtime)
        if r.marker is None or r.marker.evaluate(image_env)
    }
    pins: dict[NormalizedName, Requirement] = {}
    for stage in stages(ROOT / "operator" / "Dockerfile"):
        for op, text in stage.instructions:
            if op == "RUN":
                for command in shell_commands(text):
                    for req in pip_requirements(command) or []:
                        if "==" in req and not req.startswith("setuptools"):
                            parsed = Requirement(req)
                            pins[canonicalize_name(parsed.name)] = parsed
    assert set(pins) == set(declared), (
        f"missing: {sorted(set(declared) - set(pins))}, extra: {sorted(set(pins) - set(declared))}"
    )
    for name, pin in pins.items():
        version = next(iter(pin.specifier)).version
        assert declared[name].specifier.contains(version), f"{name}=={version} vs {declared[name]}"
        assert declared[name].extras <= pin.extras, f"{name}: extras {declared[name].extras}"


def _torch_installs() -> list[list[str]]:
    """The `pip install ... torch==...` commands of the functions image, in order."""
    found = []
    for stage in stages(ROOT / "functions" / "Dockerfile"):
        for op, text in stage.instructions:
            if op == "RUN":
                found += [
                    c
                    for c in shell_commands(text)
                    if any(r.startswith("torch==") for r in pip_requirements(c) or [])
                ]
    return found


def test_functions_image_builds_a_cpu_and_a_cuda_variant_of_one_torch() -> None:
    """VARIANT=cpu (default) takes torch's CPU build from its own index; VARIANT=cuda the
    CUDA build, which is what PyPI serves; both the same pinned version."""
    text = (ROOT / "functions" / "Dockerfile").read_text()
    assert "ARG VARIANT=cpu" in text
    assert '[ "$VARIANT" = cuda ]' in text and '[ "$VARIANT" = cpu ]' in text
    cuda, cpu = _torch_installs()
    assert "--index-url" not in cuda and "--extra-index-url" not in cuda
    assert cpu[cpu.index("--index-url") + 1] == "https://download.pytorch.org/whl/cpu"
    pins = {r for c in (cuda, cpu) for r in pip_requirements(c) or [] if r.startswith("torch")}
    assert len(pins) == 1, pins
