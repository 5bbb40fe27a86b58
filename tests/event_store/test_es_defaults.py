"""Safe defaults of `python -m aiservice_functions.event_store serve`."""

from __future__ import annotations

import pytest
from aiservice_functions import contract
from aiservice_functions.event_store.__main__ import main, parser


def test_serve_binds_loopback_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(contract.ENV_HOST, raising=False)
    monkeypatch.delenv(contract.ENV_PORT, raising=False)
    args = parser().parse_args(["serve"])
    assert args.host == "127.0.0.1"
    assert args.port == contract.EVENT_STORE_DEFAULT_PORT != contract.DEFAULT_PORT
    monkeypatch.setenv(contract.ENV_HOST, "0.0.0.0")  # what the container image sets
    assert parser().parse_args(["serve"]).host == "0.0.0.0"


@pytest.mark.parametrize(
    ("flag", "value", "named"),
    [
        ("--replay-rate", "1e-9", "--replay-rate"),
        ("--replay-concurrency", "0", "--replay-concurrency"),
        ("--replay-allow-target", "10.0.0.0/33", "--replay-allow-target"),
    ],
)
def test_unsafe_replay_settings_are_refused_at_start(
    tmp_path: object, capsys: pytest.CaptureFixture[str], flag: str, value: str, named: str
) -> None:
    code = main(["serve", "--db", f"sqlite:///{tmp_path}/e.db", flag, value])
    assert code == 2
    assert named in capsys.readouterr().err


def test_loopback_only_needs_a_loopback_host(
    tmp_path: object, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["serve", "--db", f"sqlite:///{tmp_path}/e.db", "--loopback-only", "--host", "0.0.0.0"]
    assert main(args) == 2
    assert "--loopback-only needs a loopback --host" in capsys.readouterr().err
