"""`aisvc` reports errors as plain lines on stderr, never wrapped to the terminal's width,
so a script (or a person with a narrow terminal) reads a long message or path whole."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiservice_operator.cli.main import app
from typer.testing import CliRunner

NARROW = {"COLUMNS": "40", "TERMINAL_WIDTH": "40"}
LONG = "x" * 30 + "-" + "y" * 60  # far wider than the terminal


def one_error_line(stderr: str) -> str:
    """The `error: ...` line of stderr; fails unless there is exactly one."""
    lines = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, stderr
    return lines[0]


@pytest.mark.parametrize(
    "args",
    [
        ["dlq", "list", "-o", LONG],  # click's own parameter check
        ["status", "svc", "--timeout", LONG],  # a check in the command's body
    ],
)
def test_usage_errors_are_one_unwrapped_line(args: list[str]) -> None:
    result = CliRunner().invoke(app, args, env=NARROW)
    assert result.exit_code == 2, result.output
    line = one_error_line(result.stderr)
    assert LONG in line
    assert "─" not in result.stderr and "│" not in result.stderr  # no rich panel
    assert result.stdout == ""


def test_a_long_missing_path_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / ("deep-" * 12) / "manifest.yaml"
    result = CliRunner().invoke(app, ["up", "-f", str(path)], env=NARROW)
    assert result.exit_code != 0
    assert str(path) in one_error_line(result.stderr)


def test_unknown_option_names_the_command_help() -> None:
    result = CliRunner().invoke(app, ["status", "svc", "--no-such-flag"], env=NARROW)
    assert result.exit_code == 2
    assert "--no-such-flag" in one_error_line(result.stderr)
    assert "aisvc status --help" in result.stderr
