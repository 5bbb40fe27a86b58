"""Runtime settings from the environment: defaults, overrides, and refusals naming the variable."""

from __future__ import annotations

import pytest
from aiservice_functions.runtime.config import ConfigError, RuntimeConfig
from aiservice_functions.runtime.function import BatchDefaults, Function, load_entrypoint

BIG = BatchDefaults(enabled=True, max_size=32, max_wait_ms=5)
TINY = BatchDefaults(enabled=False)


def test_defaults_without_any_environment() -> None:
    cfg = RuntimeConfig.from_env(TINY, env={})
    assert cfg.reply_source == "/aiservices/default/function/local"
    assert cfg.model_version == "local" and cfg.reply_type == ""
    assert cfg.max_body_bytes == 1024 * 1024 and cfg.batch_max_size == 1
    assert cfg.torch_threads == 1 and cfg.timeout_seconds == 30
    assert (cfg.header_timeout_seconds, cfg.body_timeout_seconds) == (10, 10)


def test_knative_and_contract_variables() -> None:
    env = {
        "K_SERVICE": "sentiment",
        "K_REVISION": "sentiment-00007",
        "AISVC_NAMESPACE": "shop",
        "AISVC_MODEL_VERSION": "v2",
        "AISVC_CONCURRENCY": "200",
        "AISVC_REPLY_TYPE": " com.example.scored ",
    }
    cfg = RuntimeConfig.from_env(BIG, env=env, cpus=2)
    assert cfg.reply_source == "/aiservices/shop/sentiment/sentiment-00007"
    assert cfg.model_version == "v2" and cfg.reply_type == "com.example.scored"
    assert (cfg.batch_max_size, cfg.batch_max_wait_ms) == (32, 5)
    assert cfg.workers == 2


def test_batching_overrides() -> None:
    assert RuntimeConfig.from_env(BIG, env={"AISVC_BATCH_MAX_SIZE": "1"}).batch_max_size == 1
    on = RuntimeConfig.from_env(TINY, env={"AISVC_BATCH_MAX_SIZE": "16"})
    assert on.batch_max_size == 16


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("AISVC_CONCURRENCY", "lots"),
        ("AISVC_CONCURRENCY", "-1"),
        ("AISVC_MAX_BODY_BYTES", "0"),
        ("AISVC_BATCH_MAX_SIZE", "0"),
        ("AISVC_BATCH_MAX_WAIT_MS", "-5"),
        ("AISVC_BATCH_MAX_WAIT_MS", "nan"),
        ("AISVC_TIMEOUT_SECONDS", "inf"),
        ("AISVC_TORCH_THREADS", "0"),
    ],
)
def test_bad_values_are_refused_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        RuntimeConfig.from_env(TINY, env={name: value})


def test_entrypoints() -> None:
    assert isinstance(load_entrypoint("aiservice_functions.fraud"), Function)
    assert load_entrypoint("aiservice_functions.fraud:function").name == "fraud"
    with pytest.raises(ValueError, match="must be an"):
        load_entrypoint("aiservice_functions.fraud:MODEL_V1")
    with pytest.raises(ValueError, match="cannot import"):
        load_entrypoint("aiservice_functions.nope")


def test_workers_default_to_the_container_cpus_capped_by_the_concurrency() -> None:
    # One process per CPU, batching or not: each batches on its own core.
    assert RuntimeConfig.from_env(BIG, env={"AISVC_CONCURRENCY": "16"}, cpus=2).workers == 2
    assert RuntimeConfig.from_env(TINY, env={"AISVC_CONCURRENCY": "16"}, cpus=4).workers == 4
    # Knative lets one event in at a time: a second process would idle.
    assert RuntimeConfig.from_env(TINY, env={"AISVC_CONCURRENCY": "1"}, cpus=4).workers == 1
    assert RuntimeConfig.from_env(TINY, env={}, cpus=64).workers == 32  # MAX_WORKERS
    assert RuntimeConfig.from_env(BIG, env={"AISVC_WORKERS": "3"}, cpus=8).workers == 3


@pytest.mark.parametrize(
    ("name", "value"),
    [("AISVC_HEADER_TIMEOUT_SECONDS", "0"), ("AISVC_BODY_TIMEOUT_SECONDS", "soon")],
)
def test_bad_read_timeouts_are_refused(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        RuntimeConfig.from_env(TINY, env={name: value})


@pytest.mark.parametrize("value", ["0", "two", "33"])
def test_bad_worker_counts_are_refused(value: str) -> None:
    with pytest.raises(ConfigError, match="AISVC_WORKERS"):
        RuntimeConfig.from_env(TINY, env={"AISVC_WORKERS": value})
