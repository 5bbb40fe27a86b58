"""The production-pod examples run on the local executor: Secret and ConfigMap values
from a local file fill `valueFrom` / `envFrom`, pod-only settings are listed once as not
applied, and names of any length route as on a cluster."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from aiservice_operator.local.manifests import ManifestError, load
from aiservice_operator.local.pod_env import LocalValues, MissingValue
from aiservice_operator.local.runner import LocalRun, UpOptions
from aiservice_operator.local.state_files import read_state
from aiservice_operator.local.supervisor import LaunchSpec, RevisionFailed

from tests.support.local import Background

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TRANSACTION = {"amount": 912.5, "merchant_category": "electronics", "hour": 3,
               "country_mismatch": True, "card_present": False}  # fmt: skip
HEADERS = {"ce-specversion": "1.0", "ce-id": "x", "ce-source": "/payments/test"}


def _s3_example_with_a_local_model(work: Path) -> Path:
    """The S3 example with its model read from the package: no S3 (nor boto3) here, so the
    download is not exercised; everything else of the manifest is as shipped."""
    doc = yaml.safe_load((EXAMPLES / "s3-credentials.yaml").read_text())
    doc["spec"]["models"] = [
        {"name": "v3", "uri": "pkg://aiservice_functions.fraud/models/fraud-v1.pt"}
    ]
    path = work / "s3-credentials.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Background]:
    work = tmp_path_factory.mktemp("production-pods")
    files = [
        EXAMPLES / "gpu-sentiment.yaml",
        _s3_example_with_a_local_model(work),
        EXAMPLES / "local" / "s3-credentials-values.yaml",
        EXAMPLES / "restricted.yaml",
        EXAMPLES / "long-names.yaml",
    ]
    options = UpOptions(state_dir=work / ".aisvc", ready_timeout=180, event_store=False)
    bg = Background(LocalRun(load(files), options))
    try:
        bg.call(bg.run.start(), timeout=240)
    except Exception:
        bg.close()
        raise
    yield bg
    bg.close()


def _snapshot(run: Background) -> dict[str, Any]:
    snapshot: dict[str, Any] = run.run.snapshot()
    return snapshot


def _post(url: str, event_type: str, data: Any) -> httpx.Response:
    return httpx.post(url, headers={**HEADERS, "ce-type": event_type}, json=data, timeout=60)


def test_every_example_answers_events(run: Background) -> None:
    state = read_state(run.run.state_dir)
    assert state is not None
    services = {s["name"]: s for s in _snapshot(run)["services"]}
    for name in (
        "fraud-s3",
        "fraud-restricted",
        "fraud-scoring-europe-west-payments-platform-production",
    ):
        response = _post(services[name]["url"], "com.example.payment.authorized", TRANSACTION)
        assert response.status_code == 200, (name, response.text)
    review = _post(services["sentiment-gpu"]["url"], "com.example.review.submitted",
                   {"text": "Arrived quickly and works perfectly."})  # fmt: skip
    assert review.status_code == 200, review.text
    assert review.json()["label"] in ("positive", "negative", "neutral")


def test_long_names_route_by_their_derived_service_name_and_tags(run: Background) -> None:
    (service,) = [s for s in _snapshot(run)["services"] if s["name"].startswith("fraud-scoring")]
    assert service["url"].endswith("/payments/fraud-scoring-europe-west-payme-1c4df212")
    for revision in service["revisions"]:
        assert len(revision["revision"]) <= 63
        response = _post(revision["url"], "com.example.payment.authorized", TRANSACTION)
        assert response.status_code == 200, response.text
        assert response.headers["ce-modelversion"] == revision["model"]


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)


@pytest.mark.skipif(not Path("/proc/self/environ").is_file(), reason="needs Linux /proc")
def test_secret_and_config_map_values_reach_the_function_process(run: Background) -> None:
    (service,) = [s for s in _snapshot(run)["services"] if s["name"] == "fraud-s3"]
    (pid,) = service["revisions"][0]["pids"]
    env = _environ(pid)
    assert env["AWS_ACCESS_KEY_ID"] == "AKIALOCALEXAMPLE"
    assert env["AWS_SECRET_ACCESS_KEY"] == "local-example-secret"
    assert env["AWS_REGION"] == "eu-west-1"  # envFrom: every key of the ConfigMap
    assert env.get("TMPDIR") != "/aisvc/tmp"  # the pod's emptyDir paths stay in the pod
    assert env.get("AISVC_MODEL_CACHE_DIR") != "/aisvc/model-cache"


def test_pod_only_fields_are_listed_once_as_not_applied(run: Background) -> None:
    warnings = _snapshot(run)["warnings"]
    (gpu,) = [w for w in warnings if w.startswith("default/sentiment-gpu:")]
    for field in ("nodeSelector", "tolerations", "runtimeClassName", "volumes"):
        assert f"spec.function.{field}" in gpu
    assert any(
        w.startswith("scoring/fraud-restricted: spec.function.securityContext") for w in warnings
    )
    assert not any(w.startswith("payments/fraud-scoring") for w in warnings)


def _container(env: list[dict[str, Any]], env_from: list[dict[str, Any]] | None = None) -> Any:
    return {"env": env, "envFrom": env_from or []}


def test_env_precedence_and_pod_fields() -> None:
    values = LocalValues()
    assert values.add({"kind": "ConfigMap", "metadata": {"name": "c", "namespace": "ns"},
                       "data": {"MODE": "from-config-map", "OTHER": "x"}}) == []  # fmt: skip
    assert values.add({"kind": "Secret", "metadata": {"name": "s", "namespace": "ns"},
                       "data": {"k": "c2VjcmV0"}}) == []  # fmt: skip
    env = values.environment(
        _container(
            [{"name": "MODE", "value": "explicit"},
             {"name": "KEY", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
             {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
             {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
             {"name": "GONE", "valueFrom": {"secretKeyRef": {"name": "x", "key": "k",
                                                              "optional": True}}}],
            [{"configMapRef": {"name": "c"}, "prefix": "C_"}, {"configMapRef": {"name": "c"}}],
        ),
        "ns",
        "rev-1",
    )  # fmt: skip
    assert env == {"C_MODE": "from-config-map", "C_OTHER": "x", "MODE": "explicit",
                   "OTHER": "x", "KEY": "secret", "POD": "rev-1", "NODE": ""}  # fmt: skip


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"name": "A", "valueFrom": {"secretKeyRef": {"name": "s3", "key": "k"}}},
         "env A: Secret ns/s3 does not exist"),
        ({"name": "A", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "nope"}}},
         "env A: ConfigMap ns/c has no key 'nope'"),
    ],
)  # fmt: skip
def test_a_missing_local_value_fails_the_revision_naming_it(
    entry: dict[str, Any], message: str
) -> None:
    values = LocalValues()
    values.add({"kind": "ConfigMap", "metadata": {"name": "c", "namespace": "ns"}, "data": {}})
    with pytest.raises(MissingValue, match=message):
        values.environment(_container([entry]), "ns", "r")
    template = {"metadata": {"name": "r"}, "spec": {"containers": [
        {"env": [{"name": "AISVC_ENTRYPOINT", "value": "pkg.fn"}, entry]}]}}  # fmt: skip
    with pytest.raises(RevisionFailed, match=f"r: {message}.*-f"):
        LaunchSpec.from_template(template, "ns", values)


def test_a_secret_that_is_not_base64_is_refused_naming_the_key(tmp_path: Path) -> None:
    path = tmp_path / "values.yaml"
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
              "data": {"token": "%%%"}}  # fmt: skip
    path.write_text(yaml.safe_dump(secret))
    with pytest.raises(ManifestError, match=r"Secret: data\.token: not base64"):
        load([path])
