"""scripts/bootstrap.sh (what `make demo` runs first): which torch build it installs —
PyPI's, or the one of the index in $TORCH_INDEX_URL — checked with a stand-in python that
records what pip is asked (nothing is downloaded)."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def _pip_calls(tmp_path: Path, **env: str) -> list[list[str]]:
    """The argument lists bootstrap.sh hands to `python`, in a copy with a stand-in venv."""
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "bootstrap.sh", repo / "scripts")
    bin_dir = repo / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    log = tmp_path / "calls"
    python = bin_dir / "python"
    python.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> {shlex.quote(str(log))}\n')
    python.chmod(0o755)
    (bin_dir / "activate").write_text(f"PATH={shlex.quote(str(bin_dir))}:$PATH\n")
    subprocess.run(
        ["bash", str(repo / "scripts" / "bootstrap.sh")],
        env={"PATH": os.environ["PATH"], **env},
        check=True,
        capture_output=True,
        timeout=60,
    )
    return [line.split() for line in log.read_text().splitlines()]


def _torch_pin() -> str:
    found = re.search(r'"(torch==[^"]+)"', (ROOT / "pyproject.toml").read_text())
    assert found, "pyproject.toml pins torch"
    return found.group(1)


def _torch_install(calls: list[list[str]]) -> list[str]:
    (call,) = [c for c in calls if _torch_pin() in c]
    return call


@pytest.mark.parametrize("env", [{}, {"TORCH_INDEX_URL": ""}], ids=["unset", "empty"])
def test_torch_comes_from_pypi_by_default(tmp_path: Path, env: dict[str, str]) -> None:
    calls = _pip_calls(tmp_path, **env)
    assert not [c for c in calls if "--index-url" in c]


def test_torch_index_url_picks_the_torch_build(tmp_path: Path) -> None:
    calls = _pip_calls(tmp_path, TORCH_INDEX_URL=CPU_INDEX)
    torch = _torch_install(calls)
    assert torch[torch.index("--index-url") + 1] == CPU_INDEX
    # Everything else still comes from PyPI.
    assert [c for c in calls if "--index-url" in c] == [torch]
