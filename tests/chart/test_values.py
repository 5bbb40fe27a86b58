"""The chart's values: refused with a clear message when wrong, documented in
docs/chart-values.md, and wired to settings the operator really reads."""

from __future__ import annotations

import importlib.util
import json
import re
from dataclasses import fields
from pathlib import Path
from types import ModuleType
from typing import Any

import aiservice_operator
import pytest

from tests.support.chart import ROOT, RenderFn

BAD_VALUES: dict[str, tuple[dict[str, Any], str]] = {
    "unknown top-level key": ({"replica": 2}, "additional properties 'replica' not allowed"),
    "unknown nested key": (
        {"operator": {"peering": {"enable": True}}},
        "additional properties 'enable' not allowed",
    ),
    "wrong type": ({"operator": {"replicas": "two"}}, "/operator/replicas"),
    "zero replicas": ({"operator": {"replicas": 0}}, "/operator/replicas"),
    "replicas without peering": (
        {"operator": {"replicas": 2, "peering": {"enabled": False}}},
        "/operator/peering/enabled",
    ),
    "log level": ({"operator": {"logLevel": "loud"}}, "/operator/logLevel"),
    "pull policy": ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
    "image tag": ({"image": {"tag": "v1 beta"}}, "/image/tag"),
    "sqlite with two replicas": ({"eventStore": {"replicas": 2}}, "/eventStore/replicas"),
    "sqlite with two workers": ({"eventStore": {"workers": 2}}, "/eventStore/workers"),
    "postgresql without a secret": (
        {"eventStore": {"database": {"type": "postgresql"}}},
        "/eventStore/database/postgresql/existingSecret",
    ),
    "unknown database": ({"eventStore": {"database": {"type": "mysql"}}}, "/database/type"),
    "volume size": (
        {"eventStore": {"database": {"persistence": {"size": "lots"}}}},
        "/eventStore/database/persistence/size",
    ),
    "service name": ({"eventStore": {"service": {"name": "Dead_Letters"}}}, "/service/name"),
    "service port": ({"eventStore": {"service": {"port": 70000}}}, "/eventStore/service/port"),
    "retention age": ({"eventStore": {"retention": {"maxAge": "a month"}}}, "/maxAge"),
    "retention age without a unit": ({"eventStore": {"retention": {"maxAge": "90"}}}, "/maxAge"),
    "database host name in a network policy": (
        {"eventStore": {"networkPolicy": {"egress": {"postgresqlCidrs": ["db.example.com"]}}}},
        "/eventStore/networkPolicy/egress/postgresqlCidrs/0",
    ),
    "unknown metric query": (
        {"rollout": {"queries": {"latency": "up"}}},
        "additional properties 'latency' not allowed",
    ),
    "prometheus url": ({"rollout": {"prometheus": {"url": "prometheus:9090"}}}, "/url"),
    "scrape interval": ({"metrics": {"podMonitor": {"interval": "often"}}}, "/interval"),
    "resource quantity": (
        {"operator": {"resources": {"limits": {"memory": "much"}}}},
        "/operator/resources/limits/memory",
    ),
}


@pytest.mark.parametrize("case", BAD_VALUES)
def test_bad_values_fail_with_a_message_naming_the_field(render: RenderFn, case: str) -> None:
    values, expected = BAD_VALUES[case]
    rendered = render(values)
    assert rendered.returncode != 0, f"{case}: accepted"
    assert "values don't meet the specifications of the schema" in rendered.stderr
    assert expected in rendered.stderr, rendered.stderr


def test_retention_age_takes_the_one_duration_grammar(render: RenderFn) -> None:
    """The value reaches the store's `--retention-max-age`, which reads the same grammar."""
    rendered = render({"eventStore": {"retention": {"maxAge": "1d12h"}}})
    assert rendered.returncode == 0, rendered.stderr
    container = rendered.deployment("event-store")["spec"]["template"]["spec"]["containers"][0]
    assert "--retention-max-age=1d12h" in container["args"]


def _values_table() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "values_table", ROOT / "scripts" / "values_table.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_docs_values_table_is_up_to_date() -> None:
    module = _values_table()
    current = module.page_table((ROOT / "docs" / "chart-values.md").read_text())
    assert current is not None, "docs/chart-values.md lost its values table markers"
    assert current == module.table(), "run: python scripts/values_table.py --write"


def test_every_value_is_described() -> None:
    module = _values_table()
    undocumented = [key for key, _, _, description in module.table_rows() if not description]
    assert undocumented == []


def test_metric_query_values_are_the_operator_queries() -> None:
    metrics = pytest.importorskip("aiservice_operator.cluster.config")
    Queries = metrics.Queries

    schema = json.loads((ROOT / "charts" / "aiservice-operator" / "values.schema.json").read_text())
    names = set(schema["properties"]["rollout"]["properties"]["queries"]["properties"])
    assert names == {f.name for f in fields(Queries)}


def _operator_sources() -> str:
    package = Path(aiservice_operator.__file__).parent
    import aiservice_functions.contract as contract

    texts = [p.read_text() for p in package.rglob("*.py")]
    return "\n".join([*texts, Path(contract.__file__).read_text()])


def test_operator_settings_the_chart_sets_are_read_by_the_operator(render: RenderFn) -> None:
    rendered = render({"operator": {"replicas": 2}})
    container = rendered.deployment("operator")["spec"]["template"]["spec"]["containers"][0]
    sources = _operator_sources()
    names = [e["name"] for e in container["env"] if e["name"].startswith("AISVC_")]
    assert names
    unread = [n for n in names if not re.search(rf"[\"']{n}[\"']", sources)]
    assert unread == [], f"the chart sets variables no operator code reads: {unread}"


def test_rollout_settings_reach_the_operator(render: RenderFn, tmp_path: Path) -> None:
    metrics = pytest.importorskip("aiservice_operator.cluster.config")

    def env_of(values: dict[str, Any]) -> dict[str, Any]:
        deployment = render(values).deployment("operator")
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        return {e["name"]: e.get("value") for e in container["env"]}

    default = env_of({})
    assert default[metrics.ENV_PROMETHEUS_URL] == metrics.DEFAULT_PROMETHEUS_URL
    assert metrics.ENV_PROMETHEUS_QUERIES not in default
    custom = env_of(
        {
            "rollout": {
                "prometheus": {"url": "http://prometheus.obs:9090"},
                "queries": {"requests": "sum(my_requests)"},
            }
        }
    )
    assert custom[metrics.ENV_PROMETHEUS_URL] == "http://prometheus.obs:9090"
    assert json.loads(custom[metrics.ENV_PROMETHEUS_QUERIES]) == {"requests": "sum(my_requests)"}
    # ... and the operator configures itself from exactly these variables.
    token = tmp_path / "token"  # stands in for the Secret the kubelet mounts
    token.write_text("s3cret\n")
    in_pod = {k: v for k, v in custom.items() if isinstance(v, str)}
    in_pod["AISVC_EVENT_STORE_TOKEN_FILE"] = str(token)
    sink_key = tmp_path / "sink-key"
    sink_key.write_text("k" * 48 + "\n")
    in_pod["AISVC_EVENT_STORE_SINK_KEY_FILE"] = str(sink_key)
    observer = metrics.Config.from_env(in_pod).observer()
    assert observer.prometheus.url == "http://prometheus.obs:9090"
    assert observer.prometheus.queries.requests == "sum(my_requests)"
    assert observer.event_store.url == custom["AISVC_EVENT_STORE_URL"]
    assert observer.event_store.token == "s3cret"
    assert observer.event_store.sink_key == b"k" * 48
