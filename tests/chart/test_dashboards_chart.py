"""The chart's Grafana dashboards and alerting rules: off by default; when turned on, one
ConfigMap per dashboard carrying the sidecar's label and folder, and a PrometheusRule that
promtool (Prometheus' own checker) accepts, with the thresholds the values set."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.chart import CHART, NAMESPACE, RenderFn

DASHBOARDS = sorted((CHART / "dashboards").glob("*.json"))
ALERTS = {
    "AIServiceDeadLettersGrowing",
    "AIServiceRolloutRolledBack",
    "AIServiceErrorRateHigh",
    "AIServiceLatencyHigh",
    "AIServiceOperatorReconcileFailing",
}


def _dashboard_maps(rendered: Any) -> list[dict[str, Any]]:
    return [o for o in rendered.of_kind("ConfigMap") if "-dashboard-" in o["metadata"]["name"]]


def test_dashboards_and_alerts_are_off_by_default(render: RenderFn) -> None:
    rendered = render()
    assert _dashboard_maps(rendered) == []
    assert rendered.of_kind("PrometheusRule") == []


def test_each_dashboard_is_a_configmap_for_the_grafana_sidecar(render: RenderFn) -> None:
    assert len(DASHBOARDS) == 4
    rendered = render({"dashboards": {"enabled": True}})
    maps = _dashboard_maps(rendered)
    assert len(maps) == len(DASHBOARDS)
    uids = set()
    for cm in maps:
        meta = cm["metadata"]
        assert meta["namespace"] == NAMESPACE and len(meta["name"]) <= 63
        assert meta["labels"]["grafana_dashboard"] == "1"  # kube-prometheus-stack's default
        assert meta["annotations"] == {"grafana_folder": "AIService"}
        ((key, text),) = cm["data"].items()
        assert json.loads(text) == json.loads((CHART / "dashboards" / key).read_text())
        uids.add(json.loads(text)["uid"])
    assert len(uids) == len(DASHBOARDS)


def test_sidecar_label_folder_and_namespace_come_from_the_values(render: RenderFn) -> None:
    values = {
        "dashboards": {
            "enabled": True,
            "label": "dashboards.example.com/load",
            "labelValue": "yes",
            "folder": "",
            "namespace": "monitoring",
        }
    }
    for cm in _dashboard_maps(render(values)):
        assert cm["metadata"]["namespace"] == "monitoring"
        assert cm["metadata"]["labels"]["dashboards.example.com/load"] == "yes"
        assert "grafana_dashboard" not in cm["metadata"]["labels"]
        assert "annotations" not in cm["metadata"]


def _rules(render: RenderFn, **alerts: Any) -> dict[str, Any]:
    rule = render({"alerts": {"enabled": True, **alerts}}).one("PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    return dict(rule)


def test_alert_thresholds_come_from_the_values(render: RenderFn) -> None:
    rule = _rules(
        render,
        labels={"release": "kps"},
        severity="critical",
        errorRate={"threshold": 0.2},
        p99Latency={"thresholdSeconds": 2.5},
        deadLetters={"threshold": 10},
    )
    assert rule["metadata"]["labels"]["release"] == "kps"
    rules = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    assert set(rules) == ALERTS
    assert all(r["labels"]["severity"] == "critical" for r in rules.values())
    assert rules["AIServiceErrorRateHigh"]["expr"].endswith("> 0.2")
    assert rules["AIServiceLatencyHigh"]["expr"].endswith("> 2.5")
    assert "> 10 and" in rules["AIServiceDeadLettersGrowing"]["expr"]
    assert "for" not in rules["AIServiceRolloutRolledBack"]  # a rollback is news at once


def test_promtool_accepts_the_rules(render: RenderFn, tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI") == "true":
            pytest.fail("promtool missing in CI (Debian package prometheus)")
        pytest.skip("no promtool on this machine (Debian package prometheus)")
    rule = _rules(render)
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    checked = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in checked.stdout


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"dashboards": {"label": "not a label"}}, "/dashboards/label"),
        ({"dashboards": {"enable": True}}, "'enable' not allowed"),
        ({"alerts": {"errorRate": {"threshold": 5}}}, "/alerts/errorRate/threshold"),
        ({"alerts": {"for": "a while"}}, "/alerts/for"),
        ({"alerts": {"severity": "loud"}}, "/alerts/severity"),
    ],
    ids=["label", "unknown key", "error rate", "for", "severity"],
)
def test_bad_dashboard_and_alert_values_name_the_field(
    render: RenderFn, values: dict[str, Any], field: str
) -> None:
    rendered = render(values)
    assert rendered.returncode != 0
    assert field in rendered.stderr, rendered.stderr
