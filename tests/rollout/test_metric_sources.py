"""The metric sources against a real Prometheus scraping a queue-proxy stand-in every
second, and against the real event store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from aiservice_operator.metrics import (
    EventStoreSource,
    MetricsObserver,
    PrometheusSource,
    Queries,
    SourceUnavailable,
    render,
)
from rollout_support import NAMESPACE, EventStore, Prometheus, Standin, free_port

pytestmark = pytest.mark.prometheus
WINDOW = 30.0


def test_queue_proxy_series_give_events_errors_and_p99(
    standin: Standin, prometheus: Prometheus
) -> None:
    revision = "metrics-v2-0000aaaa"
    standin.register(revision, error_rate=0.25, delay_ms=25)
    series = f'revision_app_request_count{{revision_name="{revision}"}}'
    prometheus.wait_value(f"sum({series})", 0)  # scraped at 0 first, like a running queue-proxy
    assert standin.send(revision, 80) == {200: 60, 500: 20}
    prometheus.wait_settled(series, 80)

    source = PrometheusSource(prometheus.url)
    used, events, errors, p99 = source.canary(
        namespace=NAMESPACE,
        service="metrics",
        revision=revision,
        model="v2",
        window_seconds=WINDOW,
    )
    assert used == "queue-proxy"
    # increase() extrapolates to the window's edges; the ratio is what analysis uses.
    assert 80 <= events <= 92
    assert errors / events == pytest.approx(0.25, abs=0.02)
    # Every event took >= 25 ms (more when the machine is busy): milliseconds, not seconds.
    assert p99 is not None and 25 <= p99 <= 1000


def test_function_series_are_the_fallback(standin: Standin, prometheus: Prometheus) -> None:
    revision = "fnonly-v2-0000bbbb"
    standin.register(revision, shape="fn", error_rate=0.1, delay_ms=2)
    series = f'aisvc_function_events_total{{revision_name="{revision}"}}'
    prometheus.wait_value(f"sum({series})", 0)
    standin.send(revision, 50, shape="fn")
    prometheus.wait_settled(series, 50)
    used, events, errors, p99 = PrometheusSource(prometheus.url).canary(
        namespace=NAMESPACE,
        service="fnonly",
        revision=revision,
        model="v2",
        window_seconds=WINDOW,
    )
    assert used == "function"
    assert errors / events == pytest.approx(0.1, abs=0.02)
    assert p99 is not None and 2 <= p99 <= 1000  # seconds histogram, reported in ms


def test_a_revision_without_any_series_has_no_data(prometheus: Prometheus) -> None:
    source = PrometheusSource(prometheus.url)
    assert source.canary(
        namespace=NAMESPACE, service="x", revision="x-v2-none", model="v2", window_seconds=WINDOW
    ) == ("none", 0, 0, None)


def test_unreachable_prometheus_and_bad_queries_are_unavailable(
    prometheus: Prometheus, event_store: EventStore
) -> None:
    down = MetricsObserver(
        PrometheusSource(f"http://127.0.0.1:{free_port()}"),
        EventStoreSource(event_store.url, event_store.token),
    )
    obs = down.observe(
        namespace=NAMESPACE,
        service="x",
        revision="x-v2-1",
        model="v2",
        window_seconds=WINDOW,
        now=datetime.now(UTC),
        canary_ready=True,
    )
    assert not obs.available and "prometheus at http://127.0.0.1" in obs.unavailable[0]

    broken = PrometheusSource(prometheus.url, Queries(requests="sum(rate(x[{interval}]"))
    with pytest.raises(SourceUnavailable, match=r"answered 400.*parse error"):
        broken.canary(
            namespace=NAMESPACE, service="x", revision="r", model="v2", window_seconds=WINDOW
        )


def test_dead_letters_per_revision_from_the_event_store(event_store: EventStore) -> None:
    now = datetime.now(UTC)
    for n in range(3):
        event_store.dead_letter("dl", "dl-v2-0000cccc", f"a{n}")
    event_store.dead_letter("dl", "canary", "b0")  # via the shadow Trigger's tag route
    event_store.dead_letter("dl", "dl-v1-0000dddd", "c0")  # the stable revision's
    source = EventStoreSource(event_store.url, event_store.token)
    since = now - timedelta(seconds=5)
    count = source.dead_letters(
        namespace=NAMESPACE, name="dl", targets={"dl-v2-0000cccc", "v2", "canary"}, since=since
    )
    assert count == 4
    later = datetime.now(UTC) + timedelta(seconds=1)
    assert (
        source.dead_letters(namespace=NAMESPACE, name="dl", targets={"dl-v2-0000cccc"}, since=later)
        == 0
    )
    with pytest.raises(SourceUnavailable, match="401"):
        EventStoreSource(event_store.url, token=None).dead_letters(
            namespace=NAMESPACE, name="dl", targets={"canary"}, since=since
        )


def test_templates_are_filled_by_text_and_overridable() -> None:
    text = render(
        'x{a="{namespace}",b="{revision}"}[{interval}]',
        namespace='n"s',
        revision="r",
        interval="30s",
    )
    assert text == 'x{a="n\\"s",b="r"}[30s]'
    queries = Queries.from_mapping({"requests": "sum(my_requests)"})
    assert queries.requests == "sum(my_requests)" and queries.errors == Queries().errors
    with pytest.raises(ValueError, match="unknown metric queries: request"):
        Queries.from_mapping({"request": "x"})
