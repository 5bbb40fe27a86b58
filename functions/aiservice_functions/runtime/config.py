"""Runtime settings from the container environment (names in ``contract``).

Knative sets ``K_SERVICE``/``K_REVISION``/``PORT``; the operator's compiler and the
local executor set the ``AISVC_*`` variables per revision. Everything is read once
at start and bad values are refused with the variable's name.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from aiservice_functions import contract
from aiservice_functions.models.quantize import Quantize, QuantizeError, parse_quantize
from aiservice_functions.models.torch_setup import DEFAULT_TORCH_THREADS
from aiservice_functions.runtime.claimcheck import ClaimCheckConfig
from aiservice_functions.runtime.cpus import container_cpus
from aiservice_functions.runtime.function import BatchDefaults
from aiservice_functions.targets import TargetPolicy

MAX_WORKERS = 32
DEFAULT_HEADER_TIMEOUT_SECONDS = 10.0
"""Headers of a request must arrive within this time (``AISVC_HEADER_TIMEOUT_SECONDS``)."""
DEFAULT_BODY_TIMEOUT_SECONDS = 10.0
"""... and then its body within this time (``AISVC_BODY_TIMEOUT_SECONDS``), else 408."""
DEFAULT_TIMEOUT_SECONDS = 30.0


class ConfigError(ValueError):
    """An environment variable holds a value the runtime cannot use."""


def _int(env: Mapping[str, str], name: str, default: int, minimum: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, minimum: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if not value >= minimum or value == float("inf"):
        raise ConfigError(f"{name} must be a finite number >= {minimum}, got {raw!r}")
    return value


@dataclass(frozen=True)
class RuntimeConfig:
    model_uri: str | None
    model_sha256: str | None
    model_version: str
    reply_type: str
    service: str
    namespace: str
    revision: str
    concurrency: int
    max_body_bytes: int
    batch_max_size: int
    """1 means no batching: each request thread runs its own forward pass."""
    batch_max_wait_ms: float
    timeout_seconds: float
    torch_threads: int = DEFAULT_TORCH_THREADS
    workers: int = 1
    """Worker processes; each loads its own copy of the model and batches on its own."""
    header_timeout_seconds: float = DEFAULT_HEADER_TIMEOUT_SECONDS
    body_timeout_seconds: float = DEFAULT_BODY_TIMEOUT_SECONDS
    quantize: Quantize = "none"
    """``AISVC_QUANTIZE``, applied by the text encoder; checked here so a bad value stops
    the server at start instead of failing every worker's model load."""
    claim_check: ClaimCheckConfig = field(default_factory=ClaimCheckConfig)
    """Where ``dataref`` events are fetched from and large outputs written to."""

    @property
    def reply_source(self) -> str:
        """``source`` of reply events: which service and revision answered."""
        return f"/aiservices/{self.namespace}/{self.service}/{self.revision}"

    @classmethod
    def from_env(
        cls,
        batching: BatchDefaults,
        env: Mapping[str, str] | None = None,
        *,
        cpus: int | None = None,
    ) -> RuntimeConfig:
        """``cpus``: the CPUs to size workers by (default: the container's, see ``cpus``)."""
        env = os.environ if env is None else env
        revision = env.get(contract.ENV_K_REVISION) or "local"
        service = (
            env.get(contract.ENV_SERVICE_NAME) or env.get(contract.ENV_K_SERVICE) or "function"
        )
        version = env.get(contract.ENV_MODEL_VERSION) or revision
        default_size = batching.max_size if batching.enabled else 1
        batch_max_size = _int(env, contract.ENV_BATCH_MAX_SIZE, default_size, 1)
        concurrency = _int(env, contract.ENV_CONCURRENCY, 0, 0)
        # One process per CPU of the container's quota: a process runs Python (HTTP,
        # decoding) on one core at most, and torch on one thread (``torch_setup``). No
        # more processes than events the pod lets in at once: an extra one would idle.
        default_workers = min(cpus or container_cpus(), concurrency or MAX_WORKERS, MAX_WORKERS)
        workers = _int(env, contract.ENV_WORKERS, default_workers, 1)
        if workers > MAX_WORKERS:
            raise ConfigError(
                f"{contract.ENV_WORKERS} must be at most {MAX_WORKERS}, got {workers}"
            )
        try:
            quantize = parse_quantize(env.get(contract.ENV_QUANTIZE))
        except QuantizeError as err:
            raise ConfigError(str(err)) from None
        return cls(
            model_uri=env.get(contract.ENV_MODEL_URI) or None,
            model_sha256=env.get(contract.ENV_MODEL_SHA256) or None,
            model_version=version,
            reply_type=env.get(contract.ENV_REPLY_TYPE, "").strip(),
            service=service,
            namespace=env.get(contract.ENV_NAMESPACE) or "default",
            revision=revision,
            concurrency=concurrency,
            max_body_bytes=_int(
                env, contract.ENV_MAX_BODY_BYTES, contract.DEFAULT_MAX_BODY_BYTES, 1
            ),
            batch_max_size=batch_max_size,
            batch_max_wait_ms=_float(env, contract.ENV_BATCH_MAX_WAIT_MS, batching.max_wait_ms, 0),
            timeout_seconds=_float(
                env, contract.ENV_TIMEOUT_SECONDS, DEFAULT_TIMEOUT_SECONDS, 0.001
            ),
            torch_threads=_int(env, contract.ENV_TORCH_THREADS, DEFAULT_TORCH_THREADS, 1),
            workers=workers,
            header_timeout_seconds=_float(
                env, contract.ENV_HEADER_TIMEOUT_SECONDS, DEFAULT_HEADER_TIMEOUT_SECONDS, 0.001
            ),
            body_timeout_seconds=_float(
                env, contract.ENV_BODY_TIMEOUT_SECONDS, DEFAULT_BODY_TIMEOUT_SECONDS, 0.001
            ),
            quantize=quantize,
            claim_check=_claim_check(
                env, namespace=env.get(contract.ENV_NAMESPACE) or "default", service=service
            ),
        )


def _list(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    return tuple(x.strip().lower() for x in env.get(name, "").split(",") if x.strip())


def _claim_check(env: Mapping[str, str], *, namespace: str, service: str) -> ClaimCheckConfig:
    allow = _list(env, contract.ENV_CLAIMCHECK_ALLOW_HOSTS)
    try:
        TargetPolicy.parse(allow)
    except ValueError as err:
        raise ConfigError(f"{contract.ENV_CLAIMCHECK_ALLOW_HOSTS}: {err}") from None
    prefix = env.get(contract.ENV_CLAIMCHECK_PREFIX, "").strip().strip("/")
    return ClaimCheckConfig(
        bucket=env.get(contract.ENV_CLAIMCHECK_BUCKET, "").strip() or None,
        endpoint=env.get(contract.ENV_CLAIMCHECK_ENDPOINT, "").strip() or None,
        prefix=f"{prefix or f'{namespace}/{service}'}/",
        max_bytes=_int(
            env, contract.ENV_CLAIMCHECK_MAX_BYTES, contract.DEFAULT_CLAIMCHECK_MAX_BYTES, 1
        ),
        timeout_seconds=_float(env, contract.ENV_CLAIMCHECK_TIMEOUT_SECONDS, 30.0, 0.001),
        allow_hosts=allow,
        content_types=_list(env, contract.ENV_CLAIMCHECK_CONTENT_TYPES),
    )
