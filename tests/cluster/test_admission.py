"""The real kube-apiserver's verdict on every manifest the CRD tests judge, and Knative's real
webhooks' verdict on every object the compiler emits: `kubectl apply --dry-run=server`.

The project's own verdicts (tests/schemas/test_aiservice_crd.py: the CRD's schema and CEL
rules evaluated offline, and spec.parse) must be the server's: each valid manifest admitted,
each invalid one refused by a message naming the field."""

from __future__ import annotations

import copy
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiservice_operator.core import features
from aiservice_operator.core.resource import IMAGE
from aiservice_operator.core.spec import AIService, parse

from tests.support.cluster import Cluster, KubectlError
from tests.support.compiled import compiled_stages, example_services
from tests.support.crd_cases import INVALID, VALID, base

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))


def _in(manifest: dict[str, Any], ns: str) -> dict[str, Any]:
    manifest = copy.deepcopy(manifest)
    manifest["metadata"]["namespace"] = ns
    return manifest


def _dry_run(cluster: Cluster, manifest: dict[str, Any]) -> str:
    try:
        cluster.apply(manifest, dry_run=True)
    except KubectlError as err:
        return err.stderr
    return ""


def _server_path(words: str) -> str:
    """The offline validator writes list indices as `.0`; the API server as `[0]`."""
    return re.sub(r"\.(\d+)(?=\.|$)", r"[\1]", words)


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_every_example_is_admitted(cluster: Cluster, crd: None, path: Path) -> None:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    for ns in {d["metadata"].get("namespace", "default") for d in docs}:
        cluster.namespace(ns)
    out = cluster.kubectl("apply", "--dry-run=server", "-f", str(path)).stdout
    assert out.count("created (server dry run)") == len(docs), out


@pytest.mark.parametrize("mutate", [v[1] for v in VALID], ids=[v[0] for v in VALID])
def test_valid_manifests_are_admitted(cluster: Cluster, crd: None, ns: str, mutate: Any) -> None:
    manifest = base()
    mutate(manifest)
    assert _dry_run(cluster, _in(manifest, ns)) == ""


@pytest.mark.parametrize(
    ("mutate", "words"), [v[1:3] for v in INVALID], ids=[v[0] for v in INVALID]
)
def test_invalid_manifests_are_refused_naming_the_field(
    cluster: Cluster, crd: None, ns: str, mutate: Any, words: str
) -> None:
    manifest = base()
    mutate(manifest)
    refusal = _dry_run(cluster, _in(manifest, ns))
    # kubectl asks for strict field validation: an unknown field is refused, not pruned.
    assert "is invalid" in refusal or refusal.startswith("Error from server"), refusal
    assert words in refusal or _server_path(words) in refusal, refusal


def _prerequisites(cluster: Cluster, ns: str, ais: AIService) -> None:
    """What a platform provides before such an AIService is applied: its ServiceAccount and
    RuntimeClass (Knative's webhook dry-runs the pod, which must find both) and the
    `config-features` flags the operator says it needs (`features.needed`; the operator
    refuses the AIService while one is off)."""
    runtime_class = ais.spec.function.runtime_class_name
    if runtime_class:
        cluster.apply(
            {
                "apiVersion": "node.k8s.io/v1",
                "kind": "RuntimeClass",
                "metadata": {"name": runtime_class},
                "handler": runtime_class,
            }
        )
    account = ais.spec.function.service_account_name
    if account:
        cluster.apply(
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": account, "namespace": ns},
            }
        )
    flags = {
        flag: "enabled"
        for flag in features.needed(ais)
        if flag not in features.DEFAULTS or not features.is_on(None, flag)
    }
    if flags:
        cluster.kubectl(
            "patch",
            "configmap",
            features.CONFIG_MAP,
            "-n",
            features.NAMESPACE,
            "--type=merge",
            "-p",
            json.dumps({"data": flags}),
        )


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_knative_webhooks_admit_every_compiled_object(
    cluster: Cluster, ns: str, path: Path
) -> None:
    """Knative Serving's and Eventing's own webhooks (defaulting and validation) admit the
    Service and Triggers at every stage of a rollout, once the flags and ServiceAccount the
    AIService needs are in place."""
    refused: list[str] = []
    for ais in example_services(path):
        _prerequisites(cluster, ns, ais)
        for label, obj in compiled_stages(ais):
            # The webhook reads config-features through a watch: a just-enabled flag may
            # take a moment to reach it.
            deadline = time.monotonic() + 30
            while (verdict := _dry_run(cluster, _in(obj, ns))) and time.monotonic() < deadline:
                time.sleep(1)
            if verdict:
                refused.append(f"{ais.name} {obj['kind']} ({label}): {verdict}")
    assert refused == []


@pytest.mark.parametrize(
    ("backoff", "timeout"), [("250ms", "1m30s"), ("1.5s", "1d"), ("PT0.25S", "P1DT2H")]
)
def test_knative_admits_delivery_durations_given_in_either_form(
    cluster: Cluster, ns: str, backoff: str, timeout: str
) -> None:
    """`spec.delivery` takes the one duration grammar or ISO-8601; what reaches Knative is
    ISO-8601 its own webhook admits (e.g. `250ms` as `PT0.25S`)."""
    manifest = base()
    manifest["metadata"]["uid"] = "6f1c7f7e-0000-4000-8000-000000000002"
    manifest["spec"]["delivery"] = {"backoffDelay": backoff, "timeout": timeout}
    ais = parse(manifest)
    _prerequisites(cluster, ns, ais)
    triggers = [
        o for label, o in compiled_stages(ais) if label == "all ready" and o["kind"] == "Trigger"
    ]
    assert triggers
    for trigger in triggers:
        assert trigger["spec"]["delivery"]["backoffDelay"].startswith("P")
        assert _dry_run(cluster, _in(trigger, ns)) == ""


DIGEST = "sha256:" + "a" * 64
IMAGES = [
    "registry.example/f:1", "registry.example/fn:1", "img:1", "i:1", "f", "my.image",
    "my.image:1", "reg.io:5000", "localhost:5000/xy", "localhost/x", "a/b",
    "Registry.Example/Team/Fn:1",
    "reg.io/UPPER:1", f"reg.io/team/fn@{DIGEST}", f"reg.io/team/fn:1@{DIGEST}",
    "docker.io/library/python:3.11-slim", "ghcr.io/aiservice-dev/aiservice-functions:0.1.0",
]  # fmt: skip


@pytest.mark.parametrize("image", IMAGES)
def test_images_knative_refuses_are_the_images_the_crd_refuses(
    cluster: Cluster, crd: None, ns: str, image: str
) -> None:
    """`spec.function.image` is checked by the grammar Knative's webhook applies, so an
    image Knative would refuse on every apply is refused by `kubectl apply` of the
    AIService instead, naming the field."""
    manifest = base()
    manifest["metadata"]["uid"] = "6f1c7f7e-0000-4000-8000-000000000003"
    ais = parse(manifest)
    _prerequisites(cluster, ns, ais)
    (service,) = [
        o for label, o in compiled_stages(ais) if label == "all ready" and o["kind"] == "Service"
    ]
    service["spec"]["template"]["spec"]["containers"][0]["image"] = image
    knative_verdict = _dry_run(cluster, _in(service, ns))
    manifest["spec"]["function"]["image"] = image
    del manifest["metadata"]["uid"]  # the compiler's ownerReferences needed one
    crd_verdict = _dry_run(cluster, _in(manifest, ns))
    assert bool(crd_verdict) == bool(knative_verdict), (crd_verdict, knative_verdict)
    assert bool(crd_verdict) == (not IMAGE.match(image))
