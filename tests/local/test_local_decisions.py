"""The pure decisions of the local executor: retry schedule, dead-letter extensions,
traffic pick, URL resolution and scaling."""

from __future__ import annotations

import base64

import pytest
from aiservice_functions import contract
from aiservice_operator.local import delivery
from aiservice_operator.local.delivery import DeliveryPolicy
from aiservice_operator.local.scaling import ScaleSettings, choose_process, desired_processes
from aiservice_operator.local.traffic import (
    Route,
    RouteError,
    ServiceAddress,
    Target,
    resolve_service_url,
    route_of,
)

# --- delivery -----------------------------------------------------------------------


def test_policy_reads_knative_delivery_spec() -> None:
    policy = DeliveryPolicy.from_knative(
        {
            "retry": 3,
            "backoffPolicy": "linear",
            "backoffDelay": "PT0.5S",
            "timeout": "PT2S",
            "deadLetterSink": {"uri": "http://store/dl"},
        }
    )
    assert (policy.retry, policy.backoff_policy, policy.backoff_delay, policy.timeout) == (
        3,
        "linear",
        0.5,
        2.0,
    )
    assert policy.has_dead_letter_sink


def test_policy_defaults_are_knatives() -> None:
    policy = DeliveryPolicy.from_knative(None)
    assert policy.retry == 0 and policy.timeout is None and not policy.has_dead_letter_sink


@pytest.mark.parametrize(
    ("delivery_spec", "field"),
    [
        ({"retry": -1}, "spec.delivery.retry"),
        ({"retry": "3"}, "spec.delivery.retry"),
        ({"backoffPolicy": "random"}, "spec.delivery.backoffPolicy"),
        ({"backoffDelay": "500ms"}, "spec.delivery"),
    ],
)
def test_bad_delivery_names_the_field(delivery_spec: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        DeliveryPolicy.from_knative(delivery_spec)


def test_linear_and_exponential_schedules() -> None:
    linear = DeliveryPolicy(retry=3, backoff_policy="linear", backoff_delay=0.2)
    assert delivery.retry_schedule(linear) == pytest.approx([0.2, 0.4, 0.6])
    exponential = DeliveryPolicy(retry=3, backoff_policy="exponential", backoff_delay=0.2)
    assert delivery.retry_schedule(exponential) == pytest.approx([0.4, 0.8, 1.6])
    assert delivery.retry_schedule(DeliveryPolicy(retry=0)) == []


@pytest.mark.parametrize(
    ("status", "retryable"),
    [(None, True), (500, True), (502, True), (503, True), (404, True), (408, True),
     (409, True), (429, True), (400, False), (401, False), (403, False), (413, False),
     (415, False), (422, False), (301, False)],
)  # fmt: skip
def test_which_answers_are_retried(status: int | None, retryable: bool) -> None:
    assert delivery.is_retryable(status) is retryable


def test_decide_walks_retry_then_dead_letter() -> None:
    policy = DeliveryPolicy(retry=2)
    assert delivery.decide(policy, 1, 500) == "retry"
    assert delivery.decide(policy, 2, None) == "retry"
    assert delivery.decide(policy, 3, 500) == "dead-letter"
    assert delivery.decide(policy, 1, 422) == "dead-letter"  # not retryable: at once
    assert delivery.decide(policy, 1, 202) == "delivered"
    assert delivery.decide(policy, 3, 200) == "delivered"


def test_dead_letter_extensions_like_knative() -> None:
    body = b'{"error": "model failed"}'
    ext = delivery.dead_letter_extensions("http://svc.ns.svc.cluster.local", 500, body)
    assert ext[contract.EXT_ERROR_DEST] == "http://svc.ns.svc.cluster.local"
    assert ext[contract.EXT_ERROR_CODE] == "500"
    assert base64.b64decode(ext[contract.EXT_ERROR_DATA]) == body


def test_error_data_is_cut_to_1024_base64_characters() -> None:
    body = bytes(range(256)) * 10
    data = delivery.error_data(body)
    assert len(data) == 1024
    assert base64.b64decode(data) == body[:768]


def test_no_answer_has_no_code_but_says_why() -> None:
    ext = delivery.dead_letter_extensions("http://x", None, b"ConnectionRefused")
    assert contract.EXT_ERROR_CODE not in ext
    assert base64.b64decode(ext[contract.EXT_ERROR_DATA]) == b"ConnectionRefused"


# --- traffic ------------------------------------------------------------------------


def service(traffic: list[dict[str, object]]) -> dict[str, object]:
    return {
        "metadata": {"name": "svc", "namespace": "ns"},
        "spec": {"template": {"metadata": {"name": "svc-v2-aaaa"}}, "traffic": traffic},
    }


def test_route_of_a_split_with_tags() -> None:
    route = route_of(
        service(
            [
                {"revisionName": "svc-v1-1111", "percent": 90, "tag": "stable"},
                {"revisionName": "svc-v2-2222", "percent": 10, "tag": "canary"},
                {"revisionName": "svc-v1-1111", "percent": 0, "tag": "v1"},
            ]
        )
    )
    assert route.weights == {"svc-v1-1111": 90, "svc-v2-2222": 10}
    assert route.tags == {"stable": "svc-v1-1111", "canary": "svc-v2-2222", "v1": "svc-v1-1111"}


def test_latest_revision_is_the_template() -> None:
    route = route_of(service([{"latestRevision": True, "percent": 100}]))
    assert route.weights == {"svc-v2-aaaa": 100}


def test_percents_must_sum_to_100() -> None:
    with pytest.raises(RouteError, match="sum to 90"):
        route_of(service([{"revisionName": "a", "percent": 90}]))


def test_pick_gives_each_revision_its_share_of_the_draw() -> None:
    route = Route("ns", "svc", (Target("a", 70), Target("zero", 0, "z"), Target("b", 30)))
    draws = [i / 1000 for i in range(1000)]
    picks = [route.pick(d) for d in draws]
    assert picks.count("a") == 700 and picks.count("b") == 300 and "zero" not in picks
    assert route.pick(0.0) == "a" and route.pick(0.69999) == "a" and route.pick(0.7) == "b"
    assert route.pick(0.999999) == "b"


SHADOW = ServiceAddress("ns", "svc", "canary", "/shadow")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://svc.ns.svc.cluster.local", ServiceAddress("ns", "svc", "", "/")),
        ("http://canary-svc.ns.svc.cluster.local/shadow", SHADOW),
        ("http://v1-svc.ns.svc.cluster.local", ServiceAddress("ns", "svc", "v1", "/")),
        ("http://svc.other.svc.cluster.local", None),
        ("http://unknown.ns.svc.cluster.local", None),
        ("http://127.0.0.1:8080/", None),
    ],
)  # fmt: skip
def test_cluster_urls_resolve_to_local_services(url: str, expected: ServiceAddress | None) -> None:
    assert resolve_service_url(url, {("ns", "svc")}) == expected


# --- scaling ------------------------------------------------------------------------


def settings(**kw: float) -> ScaleSettings:
    base = {"min_scale": 0, "max_scale": 3, "target": 4.0, "container_concurrency": 4}
    base.update(kw)
    return ScaleSettings(idle_seconds=30.0, **base)  # type: ignore[arg-type]


def test_scale_settings_from_annotations() -> None:
    template = {
        "metadata": {
            "annotations": {
                "autoscaling.knative.dev/min-scale": "1",
                "autoscaling.knative.dev/max-scale": "5",
                "autoscaling.knative.dev/target": "8",
            }
        },
        "spec": {"containerConcurrency": 16},
    }
    s = ScaleSettings.from_template(template)
    assert (s.min_scale, s.max_scale, s.target, s.container_concurrency) == (1, 5, 8.0, 16)


def test_scale_from_zero_on_first_event() -> None:
    assert desired_processes(settings(), in_flight=1, current=0, idle_for=0) == 1


def test_scale_up_by_concurrency_bounded_by_max() -> None:
    assert desired_processes(settings(), in_flight=9, current=1, idle_for=0) == 3
    assert desired_processes(settings(), in_flight=100, current=1, idle_for=0) == 3


def test_scale_down_only_after_idle_period() -> None:
    assert desired_processes(settings(), in_flight=0, current=2, idle_for=5) == 2
    assert desired_processes(settings(), in_flight=0, current=2, idle_for=30) == 0
    assert desired_processes(settings(min_scale=1), in_flight=0, current=2, idle_for=60) == 1


def test_choose_least_loaded_process_with_room() -> None:
    assert choose_process([3, 1, 2], 4) == 1
    assert choose_process([4, 4], 4) is None
    assert choose_process([4, 9], 0) == 0  # 0: unlimited
    assert choose_process([], 4) is None
