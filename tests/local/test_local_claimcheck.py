"""Claim-check end to end on the local executor: 100 held-out digits uploaded by
`aisvc send --data-file` to a real S3 server (SeaweedFS) and sent as references through
`aisvc up` (broker, trigger, the real digits function, the event store with the decision
log on). Replies match the model's direct answers; the image bytes are stored nowhere but
the bucket."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiservice_functions import digits
from aiservice_functions.cloudevents_http import make_event
from aiservice_functions.models.uri import resolve
from aiservice_operator.cli.main import app
from aiservice_operator.local.manifests import load
from aiservice_operator.local.runner import LocalRun, UpOptions
from typer.testing import CliRunner

from tests.support.digits import as_image, held_out
from tests.support.local import Background, sink_trigger, start_sink, write_manifests
from tests.support.s3 import S3Server, s3_server

COUNT = 100


def manifest(endpoint: str) -> dict[str, Any]:
    return {
        "apiVersion": "aiservice.dev/v1alpha1",
        "kind": "AIService",
        "metadata": {"name": "digits", "namespace": "t"},
        "spec": {
            "consumes": [{"type": "com.example.digit.photographed"}],
            "produces": "com.example.digit.read",
            "function": {
                "image": "local",
                "entrypoint": "aiservice_functions.digits",
                "claimCheck": {
                    "bucket": "photos",
                    "endpoint": endpoint,
                    "contentTypes": ["image/png", "image/jpeg"],
                },
            },
            "models": [{"name": "v1", "uri": digits.MODEL_V1}],
            "decisionLog": {"includeData": True, "retention": "1d"},
        },
    }


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with s3_server() as server:
        yield server


@pytest.fixture
def run(
    s3: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Background, Any]]:
    for name, value in s3.env.items():  # what the revisions (and `aisvc send`) inherit
        monkeypatch.setenv(name, value)
    sink = start_sink()
    path = write_manifests(
        tmp_path / "digits.yaml",
        [manifest(s3.endpoint), sink_trigger("replies", "com.example.digit.read", sink.url)],
    )
    state_dir = tmp_path / ".aisvc"
    bg = Background(LocalRun(load([path]), UpOptions(state_dir=state_dir, ready_timeout=240)))
    try:
        bg.call(bg.run.start(), timeout=300)
        yield bg, sink
    finally:
        bg.close()
        sink.server.shutdown()


def test_photos_by_reference_through_aisvc_up(run: tuple[Background, Any], tmp_path: Path) -> None:
    bg, sink = run
    model = digits.load(resolve(digits.MODEL_V1).path, "v1")
    photos = tmp_path / "photos"
    photos.mkdir()
    expected: dict[str, int] = {}
    images: list[bytes] = []
    for n, (pixels, _) in enumerate(held_out(COUNT)):
        image = as_image(pixels)
        images.append(image)
        (photos / f"{n}.png").write_bytes(image)
        item = digits.decode(make_event({"id": "d", "source": "/t", "type": "t"}, image))
        expected[f"photo-{n}"] = digits.infer(model, [item])[0]["digit"]
    runner = CliRunner()
    for n in range(COUNT):
        result = runner.invoke(app, [
            "send", "--type", "com.example.digit.photographed", "--id", f"photo-{n}",
            "--data-file", str(photos / f"{n}.png"),  # the run's claimCheck bucket
            "--state-dir", str(bg.run.state_dir),
        ])  # fmt: skip
        assert result.exit_code == 0, result.output
    deadline = time.monotonic() + 180
    while len(sink.snapshot()) < COUNT and time.monotonic() < deadline:
        time.sleep(0.2)
    replies = sink.snapshot()
    assert len(replies) == COUNT
    answered = {r["causationid"].rsplit("#", 1)[1]: r["data"]["digit"] for r in replies}
    assert answered == expected

    # The decision log keeps each input's reference and digest, never its bytes.
    store = _event_store_url(bg)
    inputs = httpx.get(
        f"{store}/v1/namespaces/t/aiservices/digits/decisions?role=input&limit=500", timeout=30
    )
    text = inputs.text
    assert inputs.status_code == 200, text
    assert "s3://photos/uploads/" in text and "datasha256" in text

    # Nothing under the run's state folder (broker, event store databases, logs) holds
    # an image, raw or base64.
    for path in bg.run.state_dir.rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            for image in images[:10]:
                assert image[8:40] not in content, path
                assert base64.b64encode(image)[:40] not in content, path


def _event_store_url(bg: Background) -> str:
    from aiservice_operator.local.state_files import read_state

    state = read_state(bg.run.state_dir)
    assert state is not None
    return str(state["eventStoreUrl"])
