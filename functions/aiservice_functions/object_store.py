"""An S3 client configured from the environment, shared by model downloads, the claim-check
and ``aisvc send``.

Credentials come from the environment (in a pod: ``valueFrom`` a Secret), a web identity
(IRSA) or a profile. Nothing else is probed: boto3's last resort, the instance metadata
endpoint, is not a place a function should get keys from by accident, so with none of
those set the client is refused, naming the variables to set. The endpoint is
``AWS_ENDPOINT_URL`` (or ``AWS_ENDPOINT_URL_S3``), read by boto3 itself, unless a caller
passes one, so any S3-compatible store works. boto3 is imported only when a client is made
(the ``s3`` extra).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

ACCESS_KEY = "AWS_ACCESS_KEY_ID"
SECRET_KEY = "AWS_SECRET_ACCESS_KEY"
ENDPOINT = "AWS_ENDPOINT_URL"
_OTHER_SOURCES = (
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_PROFILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
)
NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NotFound"})


class ObjectStoreError(RuntimeError):
    """The object store cannot be used as configured (no boto3, missing credentials)."""


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` as ``(bucket, key)``; ``ValueError`` when either is missing."""
    parts = urlsplit(uri)
    key = parts.path.lstrip("/")
    if parts.scheme.lower() != "s3" or not parts.netloc or not key:
        raise ValueError(f"{uri[:200]!r} is not s3://bucket/key")
    return parts.netloc, key


def check_credentials(env: Mapping[str, str] | None = None) -> None:
    """Raise :class:`ObjectStoreError` naming the missing variable when no credentials are
    configured (before any request is sent)."""
    env = os.environ if env is None else env
    access, secret = env.get(ACCESS_KEY), env.get(SECRET_KEY)
    if access and not secret:
        raise ObjectStoreError(f"S3 credentials: {ACCESS_KEY} is set but {SECRET_KEY} is not")
    if secret and not access:
        raise ObjectStoreError(f"S3 credentials: {SECRET_KEY} is set but {ACCESS_KEY} is not")
    if access or any(env.get(name) for name in _OTHER_SOURCES):
        return
    raise ObjectStoreError(
        f"no S3 credentials: set {ACCESS_KEY} and {SECRET_KEY} "
        "(in a pod: valueFrom a Secret), or a web identity (IRSA) or profile"
    )


def client(
    *,
    endpoint_url: str | None = None,
    timeout_s: float | None = None,
    attempts: int | None = None,
) -> Any:
    """A boto3 S3 client (``botocore`` signature v4, path-style addressing so that hosts
    without wildcard DNS work); ``timeout_s`` bounds connecting and each read."""
    check_credentials()
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise ObjectStoreError(
            "s3:// needs boto3, which is not installed (install the 's3' extra: "
            "aiservice-operator[s3])"
        ) from None
    options: dict[str, Any] = {"s3": {"addressing_style": "path"}, "signature_version": "s3v4"}
    if timeout_s is not None:
        options.update(connect_timeout=timeout_s, read_timeout=timeout_s)
    if attempts is not None:
        options["retries"] = {"max_attempts": attempts, "mode": "standard"}
    return boto3.session.Session().client(
        "s3", endpoint_url=endpoint_url or None, config=Config(**options)
    )


def error_code(err: BaseException) -> str:
    """The S3 error code of a botocore ``ClientError`` (``""`` for anything else)."""
    response = getattr(err, "response", None)
    if not isinstance(response, dict):
        return ""
    return str(response.get("Error", {}).get("Code", ""))
