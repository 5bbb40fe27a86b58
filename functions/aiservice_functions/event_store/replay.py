"""Re-send dead letters: to the Broker ingress of their namespace, or to a given URL.

The event goes out in binary mode with its original ``id`` and ``source`` (consumers can
de-duplicate), without Knative's ``knativeerror*`` extensions, and with ``aisvcreplay``
set to this replay's count (1 on the first). A record is marked replayed only when the
target answers 2xx. Records are claimed before sending, so a concurrent replay never
sends the same record twice, and an unforced replay skips replayed records — replaying
the same selection again sends nothing.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlsplit

import httpx

from aiservice_functions import contract
from aiservice_functions.cloudevents_http import (
    STRUCTURED_JSON,
    InvalidEvent,
    parse_request,
    render_response,
)
from aiservice_functions.event_store.guard import (
    TargetPolicy,
    redact_http_client_logs,
    redact_url,
)
from aiservice_functions.event_store.records import ERROR_EXTENSIONS, EventFilter, StoredEvent
from aiservice_functions.event_store.storage import EventTable

log = logging.getLogger(__name__)
redact_http_client_logs()

DEFAULT_BROKER_URL: Final = "http://broker-ingress.knative-eventing.svc.cluster.local"
MAX_SELECTION: Final = 10_000
MAX_CONCURRENCY: Final = 64
MIN_RATE: Final = 0.1
"""Slowest pace a replay may ask for (events/s); 0 means unbounded."""
MAX_RATE: Final = 10_000.0


@dataclass(frozen=True)
class ReplayOptions:
    broker_url: str = DEFAULT_BROKER_URL
    """Base of the Broker ingress; the target is ``{broker_url}/{namespace}/{broker}``."""
    broker: str = "default"
    target: str | None = None
    """Send every selected event here instead of to its namespace's Broker."""
    force: bool = False
    """Also re-send records that were replayed already."""
    concurrency: int = 4
    rate: float = 0.0
    """Events per second over the whole run; 0 = as fast as ``concurrency`` allows."""
    timeout: float = 10.0
    limit: int = 1000
    policy: TargetPolicy = field(default_factory=TargetPolicy)
    """Which targets a replay may send to (see :mod:`.guard`)."""


@dataclass(frozen=True)
class ReplayResult:
    seq: int
    id: str
    namespace: str
    name: str
    target: str
    ok: bool
    status: int | None
    error: str | None
    replay: int

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "id": self.id,
            "namespace": self.namespace,
            "name": self.name,
            "target": self.target,
            "ok": self.ok,
            "status": self.status,
            "error": self.error,
            "replay": self.replay,
        }


@dataclass(frozen=True)
class ReplaySummary:
    selected: int
    replayed: int
    failed: int
    results: list[ReplayResult]
    cancelled: int = 0
    """Selected records left unsent because the replay was cancelled (still pending)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "selected": self.selected,
            "replayed": self.replayed,
            "failed": self.failed,
            "cancelled": self.cancelled,
            "results": [r.to_json() for r in self.results],
        }


def check_url(url: str, what: str) -> str:
    """Refuse anything but an absolute http(s) URL, naming ``what``."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{what} must be an absolute http(s) URL, got {url[:200]!r}")
    return url


def replay_request(record: StoredEvent) -> tuple[dict[str, str], bytes]:
    """Binary-mode headers and body re-sending ``record``'s event."""
    document = {k: v for k, v in record.document.items() if k not in ERROR_EXTENSIONS}
    document[contract.EXT_REPLAY] = str(record.replay_count + 1)
    try:
        event = parse_request(
            {"content-type": STRUCTURED_JSON}, json.dumps(document).encode("utf-8")
        ).event
    except InvalidEvent as err:  # stored events were valid when they came in
        raise ValueError(f"stored event cannot be rebuilt: {err.reason}") from None
    _, headers, body = render_response(event, "binary")
    return headers, body


class Pace:
    """Spaces sends ``1/rate`` seconds apart across threads (rate 0: no spacing).

    ``sleep`` may return early (a cancelled replay's ``Event.wait``)."""

    def __init__(
        self,
        rate: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Any] = time.sleep,
    ) -> None:
        self._interval = 1.0 / rate if rate > 0 else 0.0
        self._clock = clock
        self._sleep = sleep
        self._next = clock()
        self._lock = threading.Lock()

    def wait(self) -> None:
        if not self._interval:
            return
        with self._lock:
            now = self._clock()
            at = max(now, self._next)
            self._next = at + self._interval
        if at > now:
            self._sleep(at - now)


@dataclass
class _Run:
    """One replay under way: sends records (in the pool's threads) and records each result
    (in the calling thread: the pool's threads are short-lived and would each open a
    database connection of their own)."""

    events: EventTable
    options: ReplayOptions
    http: httpx.Client
    pace: Pace
    stopping: threading.Event
    token: str

    def send(self, record: StoredEvent) -> tuple[StoredEvent, str, int | None, str | None] | None:
        options = self.options
        target = options.target or (
            f"{options.broker_url.rstrip('/')}/{record.namespace}/{options.broker}"
        )
        status: int | None = None
        error: str | None = None
        try:
            headers, body = replay_request(record)
            self.pace.wait()
            if self.stopping.is_set():
                return None
            response = self.http.post(
                target, headers=headers, content=body, timeout=options.timeout
            )
            status = response.status_code
            if not 200 <= status < 300:
                error = f"target answered HTTP {status}"
        except httpx.HTTPError as err:
            error = f"request failed: {type(err).__name__}"
        except ValueError as err:
            error = str(err)
        return record, target, status, error

    def record_result(
        self, record: StoredEvent, target: str, status: int | None, error: str | None
    ) -> ReplayResult:
        count = record.replay_count + 1
        try:
            self.events.finish_replay(
                record.seq, self.token, status, error, count if error is None else None
            )
        except Exception as err:  # the send happened; say the bookkeeping failed
            log.warning("replay of seq %s: could not record result: %s", record.seq, err)
            error = error or f"sent, but not recorded: {type(err).__name__}"
        return ReplayResult(
            record.seq,
            record.event_id,
            record.namespace,
            record.name,
            redact_url(target),
            error is None,
            status,
            error,
            count,
        )

    def run(
        self,
        records: list[StoredEvent],
        concurrency: int,
        progress: Callable[[ReplayResult], None] | None,
        results: list[ReplayResult],
        unsent: list[int],
    ) -> None:
        """Send with at most ``concurrency`` in flight; ``results`` and ``unsent`` fill as
        it goes, so that a failure part way still releases what was not sent."""
        with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="replay") as pool:
            queue = iter(records)
            in_flight: set[Future[Any]] = set()
            seq_of: dict[Future[Any], int] = {}
            while True:
                while len(in_flight) < concurrency and not self.stopping.is_set():
                    record = next(queue, None)
                    if record is None:
                        break
                    future = pool.submit(self.send, record)
                    seq_of[future] = record.seq
                    in_flight.add(future)
                if not in_flight:
                    break
                done, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in done:
                    outcome = future.result()
                    if outcome is None:
                        unsent.append(seq_of[future])
                        continue
                    result = self.record_result(*outcome)
                    results.append(result)
                    if progress is not None:
                        progress(result)
            unsent += [r.seq for r in queue]


def replay(
    events: EventTable,
    selection: EventFilter,
    options: ReplayOptions,
    client: httpx.Client | None = None,
    *,
    progress: Callable[[ReplayResult], None] | None = None,
    stop: threading.Event | None = None,
    claimed: Callable[[int], None] | None = None,
) -> ReplaySummary:
    """Replay the dead letters matching ``selection`` and say what happened to each.

    ``progress`` hears of each result as it comes; setting ``stop`` cancels: sends in
    flight finish, the rest are released unsent (still pending, replayable later).
    """
    if options.target:
        check_url(options.target, "target")
        options.policy.check(options.target, "target", options.broker_url)
    check_url(options.broker_url, "broker URL")
    concurrency = max(1, min(options.concurrency, MAX_CONCURRENCY))
    limit = max(1, min(options.limit, MAX_SELECTION))
    rate = options.rate if options.rate <= 0 else max(MIN_RATE, min(options.rate, MAX_RATE))
    token = uuid.uuid4().hex
    per_slot = math.ceil(limit / concurrency) + 1
    lease_s = options.timeout * per_slot + (limit / rate if rate > 0 else 0) + 60
    records = events.claim(selection, options.force, limit, token, int(lease_s * 1_000_000))
    if claimed is not None:
        claimed(len(records))
    stopping = stop or threading.Event()
    own_client = client is None
    http = client or httpx.Client(timeout=options.timeout)
    run = _Run(events, options, http, Pace(rate, sleep=stopping.wait), stopping, token)
    results: list[ReplayResult] = []
    unsent: list[int] = []
    try:
        run.run(records, concurrency, progress, results, unsent)
    finally:
        if own_client:
            http.close()
        if unsent:
            events.release_claims(token, unsent)
    results.sort(key=lambda r: r.seq)
    done_ok = sum(1 for r in results if r.ok)
    log.info(
        "replay: %d selected, %d replayed, %d failed, %d cancelled",
        len(records),
        done_ok,
        len(results) - done_ok,
        len(unsent),
    )
    return ReplaySummary(
        len(records), done_ok, len(results) - done_ok, results, cancelled=len(unsent)
    )
