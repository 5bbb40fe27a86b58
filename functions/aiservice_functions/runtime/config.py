"""Runtime settings from the container environment (names in ``contract``).

Knative sets ``K_SERVICE``/``K_REVISION``/``PORT``; the operator's compiler and the
local executor set the ``AISVC_*`` variables per revision. Everything is read once
at start and bad values are refused with the variable's name.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Self

from aiservice_functions import contract
from aiservice_functions.models.accelerator import cuda_facts
from aiservice_functions.models.device import (
    AUTO,
    CPU_FP32,
    NO_CUDA,
    CudaFacts,
    DeviceError,
    DeviceRequest,
    Placement,
    parse_device,
    parse_precision,
    resolve_placement,
)
from aiservice_functions.models.quantize import Quantize, QuantizeError, parse_quantize
from aiservice_functions.models.torch_setup import DEFAULT_TORCH_THREADS, configure_torch
from aiservice_functions.runtime.claimcheck import ClaimCheckConfig
from aiservice_functions.runtime.cpus import container_cpus
from aiservice_functions.runtime.function import BatchDefaults, Function
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


def torch_threads(env: Mapping[str, str] | None = None) -> int:
    """``AISVC_TORCH_THREADS``: needed before torch is imported, so before :meth:`from_env`
    can ask torch about devices. One by default, on CPU and GPU pods alike: on a GPU the
    CPU threads only launch kernels and tokenize."""
    env = os.environ if env is None else env
    return _int(env, contract.ENV_TORCH_THREADS, DEFAULT_TORCH_THREADS, 1)


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
    device: DeviceRequest = AUTO
    """``AISVC_DEVICE`` as asked for; :attr:`placement` is what it resolved to."""
    placement: Placement = CPU_FP32
    """The device and precision the model runs in (CPU fp32 for a function that cannot be
    placed); its device also sets the batching defaults."""
    claim_check: ClaimCheckConfig = field(default_factory=ClaimCheckConfig)
    """Where ``dataref`` events are fetched from and large outputs written to."""

    @property
    def reply_source(self) -> str:
        """``source`` of reply events: which service and revision answered."""
        return f"/aiservices/{self.namespace}/{self.service}/{self.revision}"

    @classmethod
    def for_function(cls, function: Function, env: Mapping[str, str] | None = None) -> Self:
        """``function``'s settings in this process, its device resolved from what torch sees.

        torch is imported here (threads fixed first). In the server this runs once, before
        the workers fork: they share torch's pages, and ``cuda`` asked for where torch sees
        no device stops the server with the reason instead of running on CPU.
        """
        cuda = NO_CUDA
        if function.uses_torch:
            configure_torch(torch_threads(env))
            cuda = cuda_facts()
        return cls.from_env(
            function.batching,
            env,
            cuda=cuda,
            on_device=function.uses_torch and function.load_on_device is not None,
            function=function.name,
        )

    @classmethod
    def from_env(
        cls,
        batching: BatchDefaults,
        env: Mapping[str, str] | None = None,
        *,
        cpus: int | None = None,
        cuda: CudaFacts = NO_CUDA,
        on_device: bool = False,
        function: str = "function",
    ) -> Self:
        """``cpus``: the CPUs to size workers by (default: the container's, see ``cpus``);
        ``cuda``: what torch sees (``accelerator.cuda_facts``); ``on_device``: whether the
        ``function`` (named in errors) can be placed on a device at all."""
        env = os.environ if env is None else env
        try:
            device = parse_device(env.get(contract.ENV_DEVICE))
            placement = resolve_placement(
                device,
                parse_precision(env.get(contract.ENV_PRECISION)),
                cuda,
                on_device=on_device,
                function=function,
            )
        except DeviceError as err:
            raise ConfigError(str(err)) from None
        on_cuda = placement.device.is_cuda
        revision = env.get(contract.ENV_K_REVISION) or "local"
        service = (
            env.get(contract.ENV_SERVICE_NAME) or env.get(contract.ENV_K_SERVICE) or "function"
        )
        version = env.get(contract.ENV_MODEL_VERSION) or revision
        default_size = batching.default_max_size(on_cuda)
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
        if quantize == "int8" and placement != CPU_FP32:
            raise ConfigError(
                f"{contract.ENV_QUANTIZE}=int8 runs on CPU in fp32 only, and this revision "
                f"runs on {placement} ({contract.ENV_DEVICE}, {contract.ENV_PRECISION})"
            )
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
            torch_threads=torch_threads(env),
            workers=workers,
            header_timeout_seconds=_float(
                env, contract.ENV_HEADER_TIMEOUT_SECONDS, DEFAULT_HEADER_TIMEOUT_SECONDS, 0.001
            ),
            body_timeout_seconds=_float(
                env, contract.ENV_BODY_TIMEOUT_SECONDS, DEFAULT_BODY_TIMEOUT_SECONDS, 0.001
            ),
            quantize=quantize,
            device=device,
            placement=placement,
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
