"""Claim-check: events whose data is a ``dataref``, resolved by the runtime before ``decode``,
against a real S3 server (SeaweedFS) and real HTTP servers on 127.0.0.1. Internal targets
outside loopback are judged with a stand-in resolver: no traffic ever leaves loopback."""

from __future__ import annotations

import hashlib
import http.server
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import requests
from aiservice_functions import digits
from aiservice_functions.runtime.app import create_app
from aiservice_functions.runtime.claimcheck import ClaimCheck, ClaimCheckConfig
from aiservice_functions.runtime.function import ByReference, Function

from tests.support.digits import as_image, held_out
from tests.support.net import free_port
from tests.support.runtime import config_for, post_binary, serving, wait_ready
from tests.support.s3 import S3Server, s3_server

PNG = as_image(held_out(2)[1][0])
PNG_SHA = hashlib.sha256(PNG).hexdigest()


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with s3_server() as server:
        client = server.client()
        client.put_object(Bucket="photos", Key="in/seven.png", Body=PNG, ContentType="image/png")
        client.put_object(Bucket="photos", Key="in/big.png", Body=PNG + b"\0" * 5000,
                          ContentType="image/png")  # fmt: skip
        client.put_object(Bucket="photos", Key="in/notes.txt", Body=b"not an image",
                          ContentType="text/plain")  # fmt: skip
        client.put_object(Bucket="other", Key="in/seven.png", Body=PNG, ContentType="image/png")
        yield server


@pytest.fixture
def s3_env(s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The function container's environment: credentials as a Secret would set them."""
    for name, value in s3.env.items():
        monkeypatch.setenv(name, value)
    return {
        "AISVC_CLAIMCHECK_BUCKET": "photos",
        "AISVC_CLAIMCHECK_ENDPOINT": s3.endpoint,
        "AISVC_CLAIMCHECK_MAX_BYTES": "4000",
    }


@pytest.fixture(scope="module")
def direct() -> dict[str, Any]:
    """The model's own answer for PNG, without the runtime."""
    from aiservice_functions.cloudevents_http import make_event
    from aiservice_functions.models.uri import resolve

    model = digits.load(resolve(digits.MODEL_V1).path, "v1")
    item = digits.decode(make_event({"id": "1", "source": "/t", "type": "t"}, PNG))
    return digits.infer(model, [item])[0]


def _serve(env: dict[str, str], **claim_check: Any) -> Any:
    config = config_for(digits.function, env)
    check = ClaimCheck(config.claim_check, **claim_check) if claim_check else None
    return serving(create_app(digits.function, config, claim_check=check))


def _ref(base: str, ref: str, **extra: str) -> requests.Response:
    """A binary-mode event with no body: its Content-Type is the referenced data's type."""
    extra.setdefault("content_type", "image/png")
    return post_binary(base, b"", ce_dataref=ref, **extra)


def test_a_referenced_photo_is_answered_as_if_sent_inline(
    s3_env: dict[str, str], direct: dict[str, Any]
) -> None:
    with _serve(s3_env) as base:
        wait_ready(base)
        by_ref = _ref(base, "s3://photos/in/seven.png", ce_datasha256=PNG_SHA)
        inline = requests.post(
            f"{base}/", data=PNG, timeout=30,
            headers={"ce-id": "2", "ce-source": "/t", "ce-type": "t", "ce-specversion": "1.0",
                     "content-type": "image/png"},
        )  # fmt: skip
    assert by_ref.status_code == 200, by_ref.text
    assert by_ref.json() == inline.json() == direct


@pytest.mark.parametrize(
    ("ref", "extra", "status", "words"),
    [
        ("s3://photos/in/missing.png", {}, 422, "no such object"),
        ("s3://photos/in/seven.png", {"ce_datasha256": "0" * 64}, 422, "does not match"),
        ("s3://photos/in/seven.png", {"ce_datasha256": "abc"}, 400, "64 hex digits"),
        ("s3://photos/in/big.png", {}, 413, "AISVC_CLAIMCHECK_MAX_BYTES=4000"),
        ("s3://photos/in/notes.txt", {"content_type": "text/plain"}, 422, "not a readable PNG"),
        ("s3://photos/in/seven.png", {"content_type": "image/jpeg"}, 415, "'image/png'"),
        ("s3://other/in/seven.png", {}, 422, "from 'photos' only"),
        ("ftp://files.example/a.png", {}, 422, "use s3://bucket/key or https://"),
        ("http://169.254.169.254/latest/meta-data/", {}, 422, "internal address"),
    ],
)
def test_a_bad_reference_is_refused_with_its_reason(
    s3_env: dict[str, str], ref: str, extra: dict[str, str], status: int, words: str
) -> None:
    with _serve(s3_env) as base:
        wait_ready(base)
        answer = _ref(base, ref, **extra)
    assert answer.status_code == status, answer.text
    assert words in answer.json()["error"]


def test_only_allowed_content_types_are_fetched(s3_env: dict[str, str]) -> None:
    env = {**s3_env, "AISVC_CLAIMCHECK_CONTENT_TYPES": "image/png,image/jpeg"}
    with _serve(env) as base:
        wait_ready(base)
        answer = _ref(base, "s3://photos/in/notes.txt", content_type="text/plain")
    assert answer.status_code == 415 and "'text/plain' is not accepted" in answer.json()["error"]


def test_a_store_outage_is_retried_and_bad_credentials_too(
    s3_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    down = {**s3_env, "AISVC_CLAIMCHECK_ENDPOINT": f"http://127.0.0.1:{free_port()}",
            "AISVC_CLAIMCHECK_TIMEOUT_SECONDS": "2"}  # fmt: skip
    with _serve(down) as base:
        wait_ready(base)
        answer = _ref(base, "s3://photos/in/seven.png")
    assert answer.status_code == 503 and "unreachable" in answer.json()["error"]
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-key")
    with _serve(s3_env) as base:
        wait_ready(base)
        answer = _ref(base, "s3://photos/in/seven.png")
    assert answer.status_code == 503 and "refused" in answer.json()["error"]


def test_missing_credentials_are_named(
    s3_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with _serve(s3_env) as base:
        wait_ready(base)
        answer = _ref(base, "s3://photos/in/seven.png")
    assert answer.status_code == 503
    assert "AWS_SECRET_ACCESS_KEY is not" in answer.json()["error"]


# --- https:// references: no S3 server needed -----------------------------------------


class _Files(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/seven.png":
            self._reply(200, PNG, "image/png")
        elif self.path == "/huge.png":  # claims 2 GiB; the runtime must not read it
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(2 << 30))
            self.end_headers()
        elif self.path == "/endless.png":  # no length, more bytes than allowed
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.end_headers()
            try:
                for _ in range(100):
                    self.wfile.write(b"\0" * 1000)
            except OSError:
                pass
        elif self.path == "/moved.png":
            self.send_response(302)
            self.send_header("Location", "http://169.254.169.254/")
            self.end_headers()
        elif self.path == "/broken.png":
            self._reply(502, b"upstream down", "text/plain")
        else:
            self._reply(404, b"no", "text/plain")

    def _reply(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def files() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


LOOPBACK_ALLOWED = {"AISVC_CLAIMCHECK_ALLOW_HOSTS": "127.0.0.1/32",
                    "AISVC_CLAIMCHECK_MAX_BYTES": "4000"}  # fmt: skip


@pytest.mark.parametrize(
    ("path", "status", "words"),
    [
        ("/seven.png", 200, ""),
        ("/huge.png", 413, "2147483648 bytes"),
        ("/endless.png", 413, "more than AISVC_CLAIMCHECK_MAX_BYTES"),
        ("/moved.png", 422, "redirect"),
        ("/gone.png", 422, "404"),
        ("/broken.png", 503, "502"),
    ],
)
def test_https_references_of_an_allow_listed_host(
    files: str, path: str, status: int, words: str
) -> None:
    with _serve(LOOPBACK_ALLOWED) as base:
        wait_ready(base)
        answer = _ref(base, f"{files}{path}", ce_datasha256=PNG_SHA)
    assert answer.status_code == status, answer.text
    if words:
        assert words in answer.json()["error"]


def test_loopback_is_refused_unless_allow_listed(files: str) -> None:
    with _serve({"AISVC_CLAIMCHECK_BUCKET": "photos"}) as base:
        wait_ready(base)
        answer = _ref(base, f"{files}/seven.png")
    assert answer.status_code == 422 and "AISVC_CLAIMCHECK_ALLOW_HOSTS" in answer.json()["error"]


@pytest.mark.parametrize(
    ("address", "refused"),
    [("169.254.169.254", True), ("10.1.2.3", True), ("fd00::1", True), ("93.184.216.34", False)],
)
def test_names_resolving_to_internal_addresses_are_refused(address: str, refused: bool) -> None:
    """A stand-in resolver answers for ``files.example``; the guard runs before any request,
    so nothing is sent (the public case is only judged, never fetched)."""
    check = ClaimCheck(ClaimCheckConfig(bucket="photos"), resolve_host=lambda host: [address])
    if refused:
        with pytest.raises(ValueError, match="internal address"):
            check.policy.check("https://files.example/a.png", "dataref")
    else:
        check.policy.check("https://files.example/a.png", "dataref")


def test_references_are_refused_where_no_claim_check_is_configured(files: str) -> None:
    with _serve({}) as base:
        wait_ready(base)
        answer = _ref(base, f"{files}/seven.png")
        inline = post_binary(base, b"x", ce_dataref=f"{files}/seven.png", content_type="image/png")
    assert answer.status_code == 422 and "claimCheck" in answer.json()["error"]
    # Data given inline wins over a reference: nothing is fetched, the bytes are decoded.
    assert inline.status_code == 422 and "not a readable" in inline.json()["error"]


# --- outputs written back by reference ---------------------------------------------------


def _repeat_infer(model: Any, items: Sequence[Any]) -> list[Any]:
    return [ByReference(bytes(item) * 3000, "image/png") for item in items]


REPEATER = Function(
    name="repeater",
    load=lambda path, version: None,
    decode=lambda event: event.get_data(),
    infer=_repeat_infer,
    uses_torch=False,
)


def test_a_large_output_is_written_under_the_service_prefix_and_replied_by_reference(
    s3: S3Server, s3_env: dict[str, str], tmp_path: Path
) -> None:
    model = tmp_path / "model.txt"
    model.write_text("none")
    env = {**s3_env, "AISVC_MODEL_URI": model.as_uri()}
    with serving(create_app(REPEATER, config_for(REPEATER, env))) as base:
        wait_ready(base)
        answer = post_binary(base, b"abc", content_type="application/octet-stream")
    assert answer.status_code == 200, answer.text
    assert answer.content == b""
    ref, digest = answer.headers["ce-dataref"], answer.headers["ce-datasha256"]
    expected = b"abc" * 3000
    assert digest == hashlib.sha256(expected).hexdigest()
    assert ref == f"s3://photos/shop/echo/{digest}"  # <namespace>/<service>/ of BASE_ENV
    stored = s3.client().get_object(Bucket="photos", Key=ref.removeprefix("s3://photos/"))
    assert stored["Body"].read() == expected and stored["ContentType"] == "image/png"
    assert answer.headers["content-type"] == "image/png"
