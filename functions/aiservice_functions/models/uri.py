"""Resolve a model URI to a local file whose sha256 is checked.

Supported: ``file:///abs/path``, ``pkg://package.name/path/in/package`` (models shipped
inside a Python package), ``http(s)://`` (sha256 mandatory; cached by digest) and
``s3://bucket/key`` (needs boto3; credentials and endpoint from the environment, see
``object_store``; with a sha256, a copy already in the cache is reused).
Anything else is refused: a revision must name exactly the bytes it serves, so nothing is
ever fetched from a model hub by name.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.resources
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from aiservice_functions import contract, object_store

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 1 << 20
DOWNLOAD_TIMEOUT_S = 60.0


class ModelURIError(ValueError):
    """The model URI cannot be served: unknown scheme, missing file, sha256 mismatch."""


@dataclass(frozen=True)
class ResolvedModel:
    uri: str
    path: Path
    sha256: str


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _normalise_sha(expected: str | None) -> str | None:
    if expected is None or expected == "":
        return None
    value = expected.strip().lower().removeprefix("sha256:")
    if not _SHA256.match(value):
        raise ModelURIError(f"{contract.ENV_MODEL_SHA256} must be 64 hex digits, got {expected!r}")
    return value


def _verified(uri: str, path: Path, expected: str | None) -> ResolvedModel:
    if not path.is_file():
        raise ModelURIError(f"model {uri}: {path} is not a file")
    actual = sha256_file(path)
    if expected is not None and actual != expected:
        raise ModelURIError(f"model {uri}: sha256 mismatch: expected {expected}, got {actual}")
    return ResolvedModel(uri=uri, path=path, sha256=actual)


def default_cache_dir() -> Path:
    configured = os.environ.get(contract.ENV_MODEL_CACHE_DIR)
    if configured:
        return Path(configured)
    return Path(tempfile.gettempdir()) / "aisvc-models"


def resolve(
    uri: str,
    sha256: str | None = None,
    *,
    cache_dir: Path | None = None,
    stack: contextlib.ExitStack | None = None,
) -> ResolvedModel:
    """Return a local, verified copy of the model at ``uri``.

    ``stack`` keeps files extracted from zipped packages alive; without it they are
    extracted into the cache directory instead.
    """
    check_uri(uri, sha256)
    expected = _normalise_sha(sha256)
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ModelURIError(f"model {uri}: file:// URIs must name a local absolute path")
        return _verified(uri, Path(unquote(parts.path)), expected)
    if scheme == "pkg":
        return _resolve_pkg(uri, parts.netloc, unquote(parts.path).lstrip("/"), expected, stack)
    if scheme in ("http", "https"):
        assert expected is not None  # check_uri refuses http(s) without a sha256
        return _resolve_http(uri, expected, cache_dir or default_cache_dir())
    return _resolve_s3(uri, parts.netloc, parts.path.lstrip("/"), expected, cache_dir)


def _resolve_pkg(
    uri: str, package: str, inner: str, expected: str | None, stack: contextlib.ExitStack | None
) -> ResolvedModel:
    if not package or not inner:
        raise ModelURIError(f"model {uri}: expected pkg://package.name/path/in/package")
    try:
        resource = importlib.resources.files(package).joinpath(inner)
    except ModuleNotFoundError:
        raise ModelURIError(f"model {uri}: package {package!r} is not installed") from None
    if not resource.is_file():
        raise ModelURIError(f"model {uri}: {inner!r} is not a file in package {package!r}")
    if isinstance(resource, Path):
        return _verified(uri, resource, expected)
    if stack is not None:
        return _verified(uri, stack.enter_context(importlib.resources.as_file(resource)), expected)
    target = default_cache_dir() / "pkg" / package / inner
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(resource.read_bytes())
    return _verified(uri, target, expected)


def _resolve_http(uri: str, expected: str, cache_dir: Path) -> ResolvedModel:
    cached = cache_dir / "sha256" / expected
    if cached.is_file() and sha256_file(cached) == expected:
        return ResolvedModel(uri=uri, path=cached, sha256=expected)
    cached.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    fd, tmp_name = tempfile.mkstemp(dir=cached.parent, prefix=".download-")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            request = urllib.request.Request(uri, headers={"User-Agent": "aisvc-runtime"})
            with urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT_S) as response:
                while chunk := response.read(_CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
        actual = digest.hexdigest()
        if actual != expected:
            raise ModelURIError(f"model {uri}: sha256 mismatch: expected {expected}, got {actual}")
        os.replace(tmp, cached)
    except (urllib.error.URLError, OSError) as err:
        raise ModelURIError(f"model {uri}: download failed: {err}") from err
    finally:
        tmp.unlink(missing_ok=True)
    return ResolvedModel(uri=uri, path=cached, sha256=expected)


def _resolve_s3(
    uri: str, bucket: str, key: str, expected: str | None, cache_dir: Path | None
) -> ResolvedModel:
    if not bucket or not key:
        raise ModelURIError(f"model {uri}: expected s3://bucket/key")
    target_dir = (cache_dir or default_cache_dir()) / "s3" / bucket
    target = target_dir / key.replace("/", "__")
    if expected is not None and target.is_file() and sha256_file(target) == expected:
        # A restarted container finds the model on the cache volume: no second download.
        return ResolvedModel(uri=uri, path=target, sha256=expected)
    try:
        s3 = object_store.client()
    except object_store.ObjectStoreError as err:
        raise ModelURIError(f"model {uri}: {err}") from None
    target_dir.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(target.suffix + ".part")
    try:
        s3.download_file(bucket, key, str(tmp))
        shutil.move(tmp, target)
    except Exception as err:  # boto3 raises many unrelated types
        tmp.unlink(missing_ok=True)
        if object_store.error_code(err) in object_store.NOT_FOUND_CODES:
            raise ModelURIError(f"model {uri}: no such object") from err
        raise ModelURIError(f"model {uri}: download failed: {err}") from err
    try:
        return _verified(uri, target, expected)
    except ModelURIError:
        target.unlink(missing_ok=True)  # never leave unverified bytes in the cache
        raise


SUPPORTED_SCHEMES = ("file", "pkg", "http", "https", "s3")


def check_uri(uri: str, sha256: str | None = None) -> None:
    """Refuse a URI that can never resolve (unknown scheme, http(s) without sha256) up front,
    so a misconfigured server exits at start instead of serving a model that never loads."""
    expected = _normalise_sha(sha256)
    scheme = urlsplit(uri).scheme.lower()
    if scheme not in SUPPORTED_SCHEMES:
        shown = f"{scheme}://" if scheme else "a bare path"
        raise ModelURIError(
            f"model {uri!r}: {shown} is not supported; use file://, pkg://, http(s):// "
            "(with sha256) or s3://"
        )
    if scheme in ("http", "https") and expected is None:
        raise ModelURIError(
            f"model {uri}: {contract.ENV_MODEL_SHA256} is required for {scheme}:// models"
        )


def as_uri(value: str) -> str:
    """Accept an existing local path where a URI is expected (for command lines)."""
    if "://" in value:
        return value
    path = Path(value)
    if path.exists():
        return path.resolve().as_uri()
    return value
