"""The metric sources against a real Prometheus scraping a queue-proxy stand-in every
second, and against the real event store."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from aiservice_operator.sources.canary import (
    MetricsObserver,
    PrometheusSource,
    Queries,
    SourceUnavailable,
    render,
)
from aiservice_operator.sources.event_store import EventStoreClient

from tests.support.rollout import NAMESPACE, EventStore, Prometheus, Standin, free_port

pytestmark = pytest.mark.prometheus
WINDOW = 30.0


QP_REVISION = "metrics-v2-0000aaaa"
FN_REVISION = "fnonly-v2-0000bbbb"


@pytest.fixture(scope="module")
def served(standin: Standin, prometheus: Prometheus) -> float:
    """Events through two revisions: one seen by queue-proxy (40 events, 25% failing, each
    taking 25 ms), one only by the function's own series (50 events, 10% failing).

    Returns when the series were first scraped at zero (monotonic clock): a query window
    must reach back past it, or increase() sees only part of the counts and extrapolates
    (on a busy machine the sends and the settling take longer than any fixed window)."""
    standin.register(QP_REVISION, error_rate=0.25, delay_ms=25)
    standin.register(FN_REVISION, shape="fn", error_rate=0.1, delay_ms=2)
    qp = f'revision_app_request_count{{revision_name="{QP_REVISION}"}}'
    fn = f'aisvc_function_events_total{{revision_name="{FN_REVISION}"}}'
    # Scraped at 0 first, like a queue-proxy that has been running for a while.
    prometheus.wait_value(f"count({qp}) + count({fn})", 4)
    zero = time.monotonic()
    assert standin.send(QP_REVISION, 40) == {200: 30, 500: 10}
    assert standin.send(FN_REVISION, 50, shape="fn") == {200: 45, 500: 5}
    prometheus.wait_settled(qp, 40)
    prometheus.wait_settled(fn, 50)  # settled at the same time: returns at once
    return zero


def window_since(start: float) -> float:
    """A window reaching a few scrapes before ``start``."""
    return max(WINDOW, time.monotonic() - start + 5.0)


def test_queue_proxy_series_give_events_errors_and_p99(
    served: float, prometheus: Prometheus
) -> None:
    used, events, errors, p99 = PrometheusSource(prometheus.url).canary(
        namespace=NAMESPACE,
        service="metrics",
        revision=QP_REVISION,
        model="v2",
        window_seconds=window_since(served),
    )
    assert used == "queue-proxy"
    # increase() extrapolates to the window's edges; the ratio is what analysis uses.
    assert 40 <= events <= 48
    assert errors / events == pytest.approx(0.25, abs=0.01)
    # Every event took >= 25 ms (more when the machine is busy): milliseconds, not seconds.
    assert p99 is not None and 25 <= p99 <= 1000


def test_function_series_are_the_fallback(served: float, prometheus: Prometheus) -> None:
    used, events, errors, p99 = PrometheusSource(prometheus.url).canary(
        namespace=NAMESPACE,
        service="fnonly",
        revision=FN_REVISION,
        model="v2",
        window_seconds=window_since(served),
    )
    assert used == "function"
    assert 50 <= events <= 60
    assert errors / events == pytest.approx(0.1, abs=0.01)
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
        EventStoreClient(event_store.url, event_store.token),
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
    source = EventStoreClient(event_store.url, event_store.token)
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
        EventStoreClient(event_store.url, token=None).dead_letters(
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
