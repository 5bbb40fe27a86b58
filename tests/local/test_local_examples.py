"""The shipped examples run on the local executor as they are (the fraud ones: no MiniLM)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from aiservice_operator.local.dispatcher import load_trigger
from aiservice_operator.local.manifests import load
from aiservice_operator.local.runner import LocalRun, UpOptions
from aiservice_operator.local.state_files import read_state

from tests.support.local import Background

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TRANSACTION = {"amount": 912.5, "merchant_category": "electronics", "hour": 3,
               "country_mismatch": True, "card_present": False}  # fmt: skip


@pytest.fixture(scope="module")
def fraud_split(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Background]:
    work = tmp_path_factory.mktemp("example")
    options = UpOptions(state_dir=work / ".aisvc", ready_timeout=120, event_store=False)
    bg = Background(LocalRun(load([EXAMPLES / "fraud-split.yaml"]), options))
    try:
        bg.call(bg.run.start(), timeout=180)
    except Exception:
        bg.close()
        raise
    yield bg
    bg.close()


def test_fraud_split_example_answers_on_both_tags(fraud_split: Background) -> None:
    state = read_state(fraud_split.run.state_dir)
    assert state is not None
    url = f"{state['servingUrl']}/payments/fraud"
    headers = {"ce-specversion": "1.0", "ce-id": "x", "ce-source": "/payments/test",
               "ce-type": "com.example.payment.authorized"}  # fmt: skip
    for tag in ("v1", "v2"):
        response = httpx.post(f"{url}/tags/{tag}", headers=headers, json=TRANSACTION, timeout=30)
        assert response.status_code == 200, response.text
        assert response.headers["ce-modelversion"] == tag
        assert (
            response.json()["label"] in ("fraud", "legit", "ok", "review")
            or "risk" in response.json()
        )


def test_cesql_triggers_are_refused_with_the_trigger_and_field() -> None:
    trigger = {
        "metadata": {"name": "t1", "namespace": "ns"},
        "spec": {
            "broker": "default",
            "filters": [{"cesql": "source LIKE '/shop/%'"}],
            "subscriber": {"uri": "http://127.0.0.1:9/"},
        },
    }
    with pytest.raises(ValueError, match=r"Trigger ns/t1: spec\.filters\[0\]\.cesql: CESQL"):
        load_trigger(trigger, set())


def test_subscriber_ref_to_an_unknown_service_is_refused() -> None:
    trigger = {
        "metadata": {"name": "t2", "namespace": "ns"},
        "spec": {
            "subscriber": {"ref": {"apiVersion": "serving.knative.dev/v1", "kind": "Service",
                                   "name": "missing"}},
        },
    }  # fmt: skip
    with pytest.raises(ValueError, match="no Knative Service ns/missing"):
        load_trigger(trigger, set())
