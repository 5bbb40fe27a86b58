"""Model URIs: file://, pkg://, http(s):// with sha256 (from a real local HTTP server), refusals."""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import importlib.util
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
import requests
from aiservice_functions import digits
from aiservice_functions.models.uri import ModelURIError, as_uri, resolve, sha256_file
from aiservice_functions.runtime.app import create_app

from tests.support.runtime import config_for, serving, wait_ready
from tests.support.s3 import S3Server, s3_server

CONTENT = b"model bytes \x00\x01\x02" * 100
SHA = hashlib.sha256(CONTENT).hexdigest()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    requests_seen = 0

    def do_GET(self) -> None:
        type(self).requests_seen += 1
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def http_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    root = tmp_path_factory.mktemp("http-models")
    (root / "model.bin").write_bytes(CONTENT)
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), partial(_QuietHandler, directory=str(root))
    )
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", root
    finally:
        server.shutdown()
        thread.join(5)


def test_file_uri_with_and_without_sha(tmp_path: Path) -> None:
    path = tmp_path / "m.bin"
    path.write_bytes(CONTENT)
    resolved = resolve(path.as_uri())
    assert resolved.path == path and resolved.sha256 == SHA
    assert resolve(path.as_uri(), SHA.upper()).sha256 == SHA
    assert resolve(path.as_uri(), f"sha256:{SHA}").sha256 == SHA


def test_sha_mismatch_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.bin"
    path.write_bytes(CONTENT)
    with pytest.raises(ModelURIError, match="sha256 mismatch"):
        resolve(path.as_uri(), "0" * 64)
    with pytest.raises(ModelURIError, match="64 hex digits"):
        resolve(path.as_uri(), "abc")


def test_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelURIError, match="is not a file"):
        resolve((tmp_path / "nope.bin").as_uri())


@pytest.mark.parametrize(
    "uri",
    ["hf://sentence-transformers/all-MiniLM-L6-v2", "ftp://host/m.bin", "gs://b/m", "model.bin"],
)
def test_unknown_scheme_is_refused(uri: str) -> None:
    with pytest.raises(ModelURIError, match="not supported"):
        resolve(uri)


def test_pkg_uri_finds_models_shipped_in_a_package() -> None:
    resolved = resolve("pkg://aiservice_functions.fraud/models/fraud-v2.pt")
    assert resolved.path.is_file() and resolved.sha256 == sha256_file(resolved.path)
    with pytest.raises(ModelURIError, match="not a file in package"):
        resolve("pkg://aiservice_functions.fraud/models/fraud-v9.pt")
    with pytest.raises(ModelURIError, match="not installed"):
        resolve("pkg://no_such_package_here/m.pt")


def test_http_download_is_checked_and_cached(http_root: tuple[str, Path], tmp_path: Path) -> None:
    base, _ = http_root
    before = _QuietHandler.requests_seen
    first = resolve(f"{base}/model.bin", SHA, cache_dir=tmp_path)
    assert first.path.read_bytes() == CONTENT and first.sha256 == SHA
    second = resolve(f"{base}/model.bin", SHA, cache_dir=tmp_path)
    assert second.path == first.path
    assert _QuietHandler.requests_seen == before + 1  # the second came from the cache


def test_http_requires_a_sha(http_root: tuple[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ModelURIError, match="AISVC_MODEL_SHA256 is required"):
        resolve(f"{http_root[0]}/model.bin", cache_dir=tmp_path)


def test_http_sha_mismatch_leaves_nothing_behind(
    http_root: tuple[str, Path], tmp_path: Path
) -> None:
    with pytest.raises(ModelURIError, match="sha256 mismatch"):
        resolve(f"{http_root[0]}/model.bin", "1" * 64, cache_dir=tmp_path)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_http_not_found_is_a_clear_error(http_root: tuple[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ModelURIError, match=r"download failed.*404"):
        resolve(f"{http_root[0]}/missing.bin", SHA, cache_dir=tmp_path)


@pytest.mark.skipif(importlib.util.find_spec("boto3") is not None, reason="boto3 is installed here")
def test_s3_without_boto3_is_refused_with_reason() -> None:
    with pytest.raises(ModelURIError, match="needs boto3"):
        resolve("s3://bucket/model.pt")


def test_an_s3_model_in_the_cache_is_not_fetched_again(tmp_path: Path) -> None:
    """What a restarted container finds on its cache volume: the verified copy, used as is
    (no S3 client is even created; none is installed for this test to call)."""
    body = b"weights"
    digest = hashlib.sha256(body).hexdigest()
    cached = tmp_path / "s3" / "models" / "fraud__v3.pt"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(body)
    resolved = resolve("s3://models/fraud/v3.pt", digest, cache_dir=tmp_path)
    assert resolved.path == cached and resolved.sha256 == digest
    cached.write_bytes(b"corrupted")
    if importlib.util.find_spec("boto3") is None:
        with pytest.raises(ModelURIError, match="needs boto3"):  # a bad copy is fetched again
            resolve("s3://models/fraud/v3.pt", digest, cache_dir=tmp_path)


def test_as_uri_turns_existing_paths_into_file_uris(tmp_path: Path) -> None:
    path = tmp_path / "m.bin"
    path.write_bytes(b"x")
    with contextlib.chdir(tmp_path):
        assert as_uri("m.bin") == path.as_uri()
    assert as_uri("pkg://a/b") == "pkg://a/b"


# --- s3:// against a real S3 server (SeaweedFS) ------------------------------------------


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with s3_server() as server:
        client = server.client()
        client.put_object(Bucket="models", Key="fraud/v3.pt", Body=CONTENT)
        digits_model = resolve(digits.MODEL_V1).path.read_bytes()
        client.put_object(Bucket="models", Key="digits/v1.pt", Body=digits_model)
        yield server


@pytest.fixture
def pod_env(s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    """Credentials and endpoint as a pod gets them (valueFrom a Secret, envFrom a ConfigMap):
    boto3 reads AWS_ENDPOINT_URL itself, so nothing S3-specific is configured in the URI."""
    for name, value in s3.env.items():
        monkeypatch.setenv(name, value)
    return s3


def test_an_s3_model_is_downloaded_checked_and_cached(pod_env: S3Server, tmp_path: Path) -> None:
    resolved = resolve("s3://models/fraud/v3.pt", SHA, cache_dir=tmp_path)
    assert resolved.sha256 == SHA and resolved.path.read_bytes() == CONTENT
    assert resolve("s3://models/fraud/v3.pt", cache_dir=tmp_path / "other").sha256 == SHA


def test_an_s3_model_with_the_wrong_digest_is_refused_and_not_kept(
    pod_env: S3Server, tmp_path: Path
) -> None:
    with pytest.raises(ModelURIError, match=f"sha256 mismatch: expected {'0' * 64}, got {SHA}"):
        resolve("s3://models/fraud/v3.pt", "0" * 64, cache_dir=tmp_path)
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def test_a_missing_s3_model_is_named(pod_env: S3Server, tmp_path: Path) -> None:
    with pytest.raises(ModelURIError, match=r"s3://models/fraud/v9.pt: no such object"):
        resolve("s3://models/fraud/v9.pt", SHA, cache_dir=tmp_path)


@pytest.mark.parametrize(
    ("unset", "words"),
    [
        (("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"), "set AWS_ACCESS_KEY_ID and"),
        (("AWS_SECRET_ACCESS_KEY",), "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not"),
    ],
)
def test_missing_s3_credentials_are_refused_naming_the_variable(
    pod_env: S3Server,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    unset: tuple[str, ...],
    words: str,
) -> None:
    for name in unset:
        monkeypatch.delenv(name)
    with pytest.raises(ModelURIError, match=words):
        resolve("s3://models/fraud/v3.pt", SHA, cache_dir=tmp_path)


def test_a_revision_serves_an_s3_model_and_a_second_start_reuses_the_cache(
    pod_env: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real runtime loads the digits model from S3; the object is then deleted, and a
    second start (same cache volume) still serves it, from the verified copy."""
    sha = hashlib.sha256(resolve(digits.MODEL_V1).path.read_bytes()).hexdigest()
    monkeypatch.setenv("AISVC_MODEL_CACHE_DIR", str(tmp_path))
    env = {"AISVC_MODEL_URI": "s3://models/digits/v1.pt", "AISVC_MODEL_SHA256": sha}
    for start in (1, 2):
        with serving(create_app(digits.function, config_for(digits.function, env))) as base:
            wait_ready(base)
            ready = requests.get(f"{base}/health/readiness", timeout=5).json()
        assert ready["model_sha256"] == sha, start
        if start == 1:
            pod_env.client().delete_object(Bucket="models", Key="digits/v1.pt")
