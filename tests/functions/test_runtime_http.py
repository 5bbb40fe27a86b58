"""The function runtime through real HTTP (werkzeug's threaded server on 127.0.0.1).

Uses the tiny torch-free ``echo_fn`` function so every error class can be provoked.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import echo_fn
import pytest
import requests
from aiservice_functions import contract
from aiservice_functions.cloudevents_http import parse_request
from aiservice_functions.runtime.app import FunctionService, create_app
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.runtime import (
    BASE_ENV,
    binary_headers,
    config_for,
    metric_value,
    post_binary,
    post_structured,
    serving,
    wait_ready,
)

REVISION = BASE_ENV["K_REVISION"]
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("echo") / "echo-model.txt"
    path.write_text("echo-model\n")
    return path


@pytest.fixture(scope="module")
def base(model_file: Path) -> Iterator[str]:
    cfg = config_for(
        echo_fn.function, model_uri=model_file.as_uri(), max_body_bytes=4096, timeout_seconds=30
    )
    with serving(create_app(echo_fn.function, cfg)) as url:
        wait_ready(url)
        yield url


@pytest.fixture(scope="module")
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        yield s


def reply_of(response: requests.Response) -> Any:
    """Parse a reply with the same strict parser the rest of the system uses."""
    return parse_request(response.headers, response.content)


# --- replies ------------------------------------------------------------------------


def test_binary_in_binary_out_with_reply_attributes(base: str, session: requests.Session) -> None:
    response = post_binary(
        base, {"text": "héllo 😀 ✓"}, session, ce_traceparent=TRACEPARENT, ce_aisvchops="2"
    )
    assert response.status_code == 200, response.text
    parsed = reply_of(response)
    assert parsed.mode == "binary"
    event = parsed.event
    assert response.headers["content-type"] == "application/json"
    assert event.get_type() == "com.example.echoed"
    assert event.get_source() == "/aiservices/shop/echo/echo-00002"
    assert event.get_extension("modelversion") == "v2"
    assert event.get_extension("traceparent") == TRACEPARENT
    assert event.get_extension("aisvchops") == "3"
    assert event.get_id() != "req-1"
    assert event.get_data() == {
        "echo": "héllo 😀 ✓",
        "length": 9,
        "batch": 1,
        "model": "echo-model@v2",
    }


@pytest.mark.parametrize("mode", ["binary", "structured"])
def test_reply_names_its_cause_and_starts_a_correlation(
    base: str, session: requests.Session, mode: str
) -> None:
    """A first event (no correlationid): the reply's correlation is the event's own key,
    which is exactly what the decision log computes for that event."""
    if mode == "binary":
        response = post_binary(base, {"text": "a"}, session, ce_id="in-7", ce_source="/shop/a")
    else:
        response = post_structured(base, {"text": "a"}, session, id="in-7", source="/shop/a")
    assert response.status_code == 200, response.text
    event = reply_of(response).event
    assert event.get_extension("causationid") == "/shop/a#in-7"
    assert event.get_extension("correlationid") == "/shop/a#in-7"
    assert float(event.get_extension("aisvclatencyms")) >= 0


def test_reply_keeps_the_chain_correlation(base: str, session: requests.Session) -> None:
    response = post_binary(
        base, {"text": "a"}, session, ce_id="r-2", ce_source="/stage1", ce_correlationid="chain-9"
    )
    event = reply_of(response).event
    assert event.get_extension("causationid") == "/stage1#r-2"
    assert event.get_extension("correlationid") == "chain-9"


def test_structured_in_structured_out(base: str, session: requests.Session) -> None:
    response = post_structured(base, {"text": "ünïcødé 🎉"}, session, traceparent=TRACEPARENT)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/cloudevents+json"
    parsed = reply_of(response)
    assert parsed.mode == "structured"
    assert parsed.event.get_data()["echo"] == "ünïcødé 🎉"
    assert parsed.event.get_extension("traceparent") == TRACEPARENT
    assert parsed.event.get_extension("modelversion") == "v2"


def test_w3c_traceparent_header_is_carried_when_the_event_has_none(
    base: str, session: requests.Session
) -> None:
    response = post_binary(base, {"text": "traced"}, session, traceparent=TRACEPARENT)
    assert response.status_code == 200
    assert response.headers["ce-traceparent"] == TRACEPARENT
    response = post_structured(base, {"text": "x"}, session, traceparent="00-from-event")
    assert reply_of(response).event.get_extension("traceparent") == "00-from-event"


def test_structured_data_base64_is_read_as_json(base: str, session: requests.Session) -> None:
    payload = base64.b64encode(json.dumps({"text": "from base64"}).encode()).decode()
    response = post_structured(
        base, None, session, data_base64=payload, datacontenttype="application/json"
    )
    assert response.status_code == 200, response.text
    assert reply_of(response).event.get_data()["echo"] == "from base64"


def test_empty_data_is_rejected_not_crashed(base: str, session: requests.Session) -> None:
    response = post_binary(base, b"", session)
    assert response.status_code == 400
    assert "JSON object" in response.json()["error"]
    response = post_structured(base, None, session)
    assert response.status_code == 400


def test_function_returning_none_gives_202(base: str, session: requests.Session) -> None:
    response = post_binary(base, {"none": True}, session)
    assert response.status_code == 202 and response.content == b""


def test_shadow_event_is_answered_under_the_shadow_reply_type(
    base: str, session: requests.Session
) -> None:
    """The answer reaches the decision log (for the rollout's quality checks) and no
    consumer: its type is one only the decision log subscribes to."""
    before = session.get(f"{base}/metrics").text
    response = post_binary(base, {"text": "mirror"}, session, ce_aisvcshadow="true")
    assert response.status_code == 200, response.text
    assert response.headers["ce-type"] == contract.SHADOW_REPLY_TYPE
    assert response.headers["ce-modelversion"] == "v2"
    assert response.headers["ce-causationid"].endswith("#" + response.request.headers["ce-id"])
    after = session.get(f"{base}/metrics").text
    shadow = {"outcome": "shadow", "model_version": "v2"}
    name = "aisvc_function_events_total"
    assert metric_value(after, name, **shadow) == metric_value(before, name, **shadow) + 1


def test_posts_to_the_shadow_path_are_answered_under_the_shadow_reply_type(
    base: str, session: requests.Session
) -> None:
    """Knative Triggers cannot add the shadow extension: the shadow Trigger posts here."""
    before = session.get(f"{base}/metrics").text
    response = session.post(
        f"{base}/shadow", data=json.dumps({"text": "mirror"}), headers=binary_headers()
    )
    assert response.status_code == 200
    assert response.headers["ce-type"] == contract.SHADOW_REPLY_TYPE
    bad = session.post(f"{base}/shadow", data=b"{}", headers={"content-type": "application/json"})
    assert bad.status_code == 400
    after = session.get(f"{base}/metrics").text
    shadow = {"outcome": "shadow", "model_version": "v2"}
    name = "aisvc_function_events_total"
    assert metric_value(after, name, **shadow) == metric_value(before, name, **shadow) + 1


# --- the error contract ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "body", "status", "needle"),
    [
        ({"content-type": "application/json"}, b"{}", 400, "not a CloudEvent"),
        ({"ce-id": "1", "ce-source": "/s", "ce-type": "t"}, b"", 400, "specversion"),
        (
            {"ce-id": "1", "ce-source": "/s", "ce-type": "t", "ce-specversion": "0.3"},
            b"",
            400,
            "specversion",
        ),
        ({"content-type": "application/cloudevents+json"}, b"{broken", 400, "JSON"),
        ({"content-type": "application/cloudevents-batch+json"}, b"[]", 415, "batch"),
    ],
)
def test_not_a_valid_cloudevent(
    base: str,
    session: requests.Session,
    headers: dict[str, str],
    body: bytes,
    status: int,
    needle: str,
) -> None:
    response = session.post(f"{base}/", data=body, headers=headers)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert needle in response.json()["error"]


def test_payload_rejected_by_the_function_names_the_field(
    base: str, session: requests.Session
) -> None:
    response = post_binary(base, {"txt": "typo"}, session)
    assert response.status_code == 422
    assert response.json() == {
        "error": "field 'text' is required and must be a string",
        "status": 422,
        "field": "text",
        "revision": REVISION,
    }


def test_body_over_the_limit_is_413(base: str, session: requests.Session) -> None:
    response = post_binary(base, {"text": "x" * 5000}, session)
    assert response.status_code == 413
    assert "4096" in response.json()["error"]


def test_model_failure_is_500(base: str, session: requests.Session) -> None:
    response = post_binary(base, {"fail": True}, session)
    assert response.status_code == 500
    assert "model failed" in response.json()["error"]


def test_unknown_path_and_method_answer_json(base: str, session: requests.Session) -> None:
    assert session.get(f"{base}/nope").status_code == 404
    response = session.get(f"{base}/")
    assert response.status_code == 405 and "error" in response.json()


def test_inference_timeout_is_500(model_file: Path) -> None:
    cfg = config_for(echo_fn.function, model_uri=model_file.as_uri(), timeout_seconds=0.2)
    gate = echo_fn.GATES.setdefault("timeout", threading.Event())
    batched_cfg = config_for(echo_fn.batched, model_uri=model_file.as_uri(), timeout_seconds=0.2)
    try:
        for fn, c in ((echo_fn.function, cfg), (echo_fn.batched, batched_cfg)):
            with serving(create_app(fn, c)) as url:
                wait_ready(url)
                gate.clear()
                releaser = threading.Timer(0.4, gate.set)
                releaser.start()
                response = post_binary(url, {"wait": "timeout"})
                releaser.join()
                assert response.status_code == 500
                assert "longer than 0.2s" in response.json()["error"]
                metrics = requests.get(f"{url}/metrics").text
                assert metric_value(metrics, "aisvc_function_events_total", outcome="timeout") == 1
    finally:
        gate.set()


# --- readiness and liveness -----------------------------------------------------------


def test_readiness_waits_for_the_model_and_liveness_does_not(model_file: Path) -> None:
    gate = threading.Event()
    app = create_app(
        echo_fn.function,
        config_for(echo_fn.function, model_uri=model_file.as_uri()),
        load_gate=gate,
    )
    with serving(app) as url:
        assert requests.get(f"{url}/health/liveness").status_code == 200
        loading = requests.get(f"{url}/health/readiness")
        assert loading.status_code == 503 and loading.json()["status"] == "loading"
        early = post_binary(url, {"text": "too early"})
        assert early.status_code == 503 and "still loading" in early.json()["error"]
        gate.set()
        wait_ready(url)
        ready = requests.get(f"{url}/health/readiness").json()
        assert ready["model_version"] == "v2" and len(ready["model_sha256"]) == 64
        assert post_binary(url, {"text": "now"}).status_code == 200


def test_model_that_fails_to_load_fails_liveness(tmp_path: Path) -> None:
    cfg = config_for(echo_fn.function, model_uri=(tmp_path / "missing.txt").as_uri())
    app = create_app(echo_fn.function, cfg)
    service = app.extensions["aisvc"]
    assert isinstance(service, FunctionService)
    service._loader.join(10)
    with serving(app) as url:
        readiness = requests.get(f"{url}/health/readiness")
        assert readiness.status_code == 503 and "missing.txt" in readiness.json()["error"]
        assert requests.get(f"{url}/health/liveness").status_code == 500
        assert post_binary(url, {"text": "x"}).status_code == 503


def test_no_reply_type_answers_202(model_file: Path) -> None:
    cfg = config_for(echo_fn.function, {"AISVC_REPLY_TYPE": ""}, model_uri=model_file.as_uri())
    with serving(create_app(echo_fn.function, cfg)) as url:
        wait_ready(url)
        response = post_binary(url, {"text": "fire and forget"})
        assert response.status_code == 202 and response.content == b""


# --- metrics ------------------------------------------------------------------------


def test_metrics_count_outcomes_latency_and_batches(base: str, session: requests.Session) -> None:
    post_binary(base, {"text": "count me"}, session)
    post_binary(base, {"oops": 1}, session)
    text = session.get(f"{base}/metrics").text
    assert "# TYPE aisvc_function_events_total counter" in text
    assert (
        metric_value(text, "aisvc_function_events_total", outcome="replied", model_version="v2")
        >= 1
    )
    assert (
        metric_value(text, "aisvc_function_events_total", outcome="rejected", model_version="v2")
        >= 1
    )
    assert metric_value(text, "aisvc_function_latency_seconds_count", model_version="v2") >= 1
    assert metric_value(text, "aisvc_function_batch_size_count", model_version="v2") >= 1
    assert metric_value(text, "aisvc_function_model_ready", model_version="v2") == 1
    assert metric_value(text, "aisvc_function_model_load_seconds", model_version="v2") > 0


# --- micro-batching -----------------------------------------------------------------


def test_batching_groups_concurrent_events_and_keeps_answers(model_file: Path) -> None:
    """Deterministic: the first batch is held on a gate while seven more events queue."""
    cfg = config_for(echo_fn.batched, model_uri=model_file.as_uri())
    app = create_app(echo_fn.batched, cfg)
    service = app.extensions["aisvc"]
    assert isinstance(service, FunctionService)
    gate = echo_fn.GATES.setdefault("batch", threading.Event())
    gate.clear()
    texts = [f"text {i} ✓" for i in range(7)]
    with serving(app) as url, ThreadPoolExecutor(8) as pool:
        wait_ready(url)
        singles = [post_binary(url, {"text": t}).json() for t in texts]
        entered = echo_fn.ENTERED.setdefault("batch", threading.Event())
        entered.clear()
        first = pool.submit(post_binary, url, {"wait": "batch", "text": "first"})
        assert entered.wait(10)
        rest = [pool.submit(post_binary, url, {"text": t}) for t in texts]
        runner = service.state.runner
        while runner is not None and runner.pending() < len(texts):  # type: ignore[union-attr]
            threading.Event().wait(0.01)
        gate.set()
        assert first.result().status_code == 200
        batched = [f.result().json() for f in rest]
        metrics = requests.get(f"{url}/metrics").text
    assert [b["batch"] for b in batched] == [7] * 7
    assert [{**b, "batch": 1} for b in batched] == singles
    assert metric_value(metrics, "aisvc_function_batch_size_bucket", le="8.0") >= 2


def test_a_failing_event_does_not_fail_its_batch_mates(model_file: Path) -> None:
    cfg = config_for(echo_fn.batched, model_uri=model_file.as_uri())
    app = create_app(echo_fn.batched, cfg)
    gate = echo_fn.GATES.setdefault("poison", threading.Event())
    gate.clear()
    service = app.extensions["aisvc"]
    with serving(app) as url, ThreadPoolExecutor(4) as pool:
        wait_ready(url)
        entered = echo_fn.ENTERED.setdefault("poison", threading.Event())
        entered.clear()
        blocker = pool.submit(post_binary, url, {"wait": "poison", "text": "hold"})
        assert entered.wait(10)
        good = pool.submit(post_binary, url, {"text": "fine"})
        bad = pool.submit(post_binary, url, {"fail": True})
        while service.state.runner.pending() < 2:
            threading.Event().wait(0.01)
        gate.set()
        assert blocker.result().status_code == 200
        assert good.result().status_code == 200
        assert bad.result().status_code == 500


# --- fuzzing: bad input is a 4xx, never a 5xx, and the server keeps serving --------------

_names = st.sampled_from(
    [
        "ce-id",
        "ce-source",
        "ce-type",
        "ce-specversion",
        "ce-time",
        "ce-traceparent",
        "ce-Bad_Name",
        "ce-aisvcshadow",
        "content-type",
        "ce-datacontenttype",
        "x-any",
    ]
)
_values = st.one_of(
    # Leading/trailing blanks are refused by the HTTP client itself, before sending.
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=24).map(str.strip),
    st.sampled_from(
        [
            "1.0",
            "application/json",
            "text/plain",
            "application/cloudevents+json",
            "application/cloudevents-batch+json",
            "2024-01-01T00:00:00Z",
            "%FF",
            "true",
        ]
    ),
)
_bodies = st.one_of(
    st.binary(max_size=80),
    st.builds(
        lambda d: json.dumps(d).encode(),
        st.dictionaries(
            st.sampled_from(
                [
                    "id",
                    "source",
                    "type",
                    "specversion",
                    "data",
                    "data_base64",
                    "text",
                    "time",
                    "datacontenttype",
                ]
            ),
            st.one_of(st.none(), st.text(max_size=8), st.integers(), st.just("1.0")),
            max_size=8,
        ),
    ),
)


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(headers=st.dictionaries(_names, _values, max_size=7), body=_bodies)
def test_fuzz_bad_input_is_4xx_not_5xx(
    base: str, session: requests.Session, headers: dict[str, str], body: bytes
) -> None:
    response = session.post(f"{base}/", data=body, headers=headers)
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert response.json()["error"]
    else:
        assert response.status_code in (200, 202)
