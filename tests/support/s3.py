"""A real S3 server (SeaweedFS, from scripts/s3.sh) on 127.0.0.1 for the object-storage
tests; skipped where it is not built, except in CI (``CI=true``), where that fails."""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.schemas import REPO_ROOT

SCRIPT = REPO_ROOT / "scripts" / "s3.sh"
BUCKETS = ("models", "photos", "other")


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    env: dict[str, str]
    """``AWS_*`` variables for a client of this server (endpoint, keys, region)."""

    def client(self) -> Any:
        import boto3

        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"],
            region_name="us-east-1",
        )


def _skip(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: the S3 tests must run; see scripts/ci-deps.sh)")
    pytest.skip(reason)


def _ports_free(base: int) -> bool:
    for port in (base, base + 1, base + 2, base + 3, base + 10000, base + 10001,
                 base + 10002, base + 10003):  # fmt: skip
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


@contextmanager
def s3_server() -> Iterator[S3Server]:
    """Start SeaweedFS with the test buckets in a temporary folder; stop and delete it."""
    if subprocess.run(["bash", str(SCRIPT), "built"], capture_output=True).returncode != 0:
        _skip("no SeaweedFS build: run scripts/s3.sh build (Go, ~10-30 min once)")
    try:
        import boto3  # noqa: F401
    except ImportError:
        _skip("boto3 is not installed (the 's3' extra)")
    state = Path(tempfile.mkdtemp(prefix="aisvc-s3-"))
    base = next(p for p in (random.randrange(20000, 30000) for _ in range(50)) if _ports_free(p))
    try:
        started = subprocess.run(
            ["bash", str(SCRIPT), "start", str(state), str(base), *BUCKETS],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert started.returncode == 0, started.stderr
        lines = subprocess.run(
            ["bash", str(SCRIPT), "env", str(state)], capture_output=True, text=True, check=True
        ).stdout.split()
        env = dict(line.split("=", 1) for line in lines)
        yield S3Server(endpoint=started.stdout.strip(), env=env)
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop", str(state)], capture_output=True, timeout=60)
        shutil.rmtree(state, ignore_errors=True)
