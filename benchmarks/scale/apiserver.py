"""The benchmark's API server process: the test emulator, Knative Serving's stand-in and an
observer that timestamps convergence where it happens — on the server.

Every AIService write that changes its generation sets a new expectation: the children the
compiler emits once every revision is ready (`compile.steady_state`). Every write of a
Knative Service or Trigger then checks whether all children of its AIService now contain
what is expected (the operator's own drift test, `core.drift.needs_update`), and stamps the first
time they do. Both stamps come from one clock in one process, so nothing is inferred from a
client's view, and the observer costs no API requests. Its CPU time is measured and reported.

Requests are counted per phase and per client (the `User-Agent` names the benchmark driver;
everything else is the operator), by verb and resource.

Control endpoints (not Kubernetes API paths) under `/_bench/`:
  POST /_bench/phase {"phase": name}       counts and expectations that follow belong to it
  GET  /_bench/wait?phase=&timeout=        long-poll until every expectation of the phase matched
  GET  /_bench/wait-one?namespace=&name=&timeout=   the same for one AIService
  GET  /_bench/quiet?seconds=&timeout=     until no API request came for `seconds`
  GET  /_bench/timeline                    the last 2000 requests with their times
  GET  /_bench/counts                      request counts only
  GET  /_bench/report                      records, request counts, observer CPU seconds

Run: `python -m benchmarks.scale.apiserver`; prints one JSON line with the URL, stops when
its standard input closes.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import json
import sys
import threading
import time
from dataclasses import asdict, dataclass

import aiohttp.web
from aiservice_operator.core import compile as compiler
from aiservice_operator.core.drift import needs_update
from aiservice_operator.core.spec import SpecError, parse

from tests.support.knative import KnativeServing
from tests.support.kubeemu import (
    AISERVICES,
    KSERVICES,
    TRIGGERS,
    Emulator,
    EmulatorThread,
    Kind,
    LoggedRequest,
    Obj,
)

DRIVER_AGENT = "aiservice-bench-driver"
_CLIENT: contextvars.ContextVar[str] = contextvars.ContextVar("client", default="operator")


@dataclass
class Expectation:
    """One generation of one AIService and when its children first matched it."""

    namespace: str
    name: str
    generation: int
    phase: str
    written_at: float
    matched_at: float | None = None
    ready_at: float | None = None


class CountingLog(collections.deque[LoggedRequest]):
    """The emulator's request log, kept short, with running counts that never drop."""

    def __init__(self, owner: BenchEmulator) -> None:
        super().__init__(maxlen=1000)
        self.owner = owner

    def append(self, entry: LoggedRequest) -> None:
        super().append(entry)
        resource = entry.plural + (f"/{entry.subresource}" if entry.subresource else "")
        key = (self.owner.phase, _CLIENT.get(), entry.verb, resource)
        self.owner.counts[key] += 1
        self.owner.last_request_at = time.monotonic()
        self.owner.timeline.append((self.owner.last_request_at, _CLIENT.get(), entry))


class BenchEmulator(Emulator):
    """The test emulator plus the convergence observer and request counters."""

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.phase = "setup"
        self.counts: collections.Counter[tuple[str, str, str, str]] = collections.Counter()
        self.log = CountingLog(self)
        self.last_request_at = time.monotonic()
        self.timeline: collections.deque[tuple[float, str, LoggedRequest]] = collections.deque(
            maxlen=2000
        )
        self.expected: dict[tuple[str, str], tuple[Expectation, Obj, dict[str, Obj]]] = {}
        self.records: list[Expectation] = []
        self.observer_seconds = 0.0
        self.changed = asyncio.Event()

    # --- the observer --------------------------------------------------------------

    def _commit(self, kind: Kind, old: Obj | None, new: Obj) -> Obj:
        result = super()._commit(kind, old, new)
        if kind.key in (AISERVICES.key, KSERVICES.key, TRIGGERS.key):
            started = time.thread_time()
            try:
                self._observe(kind, old, result)
            finally:
                self.observer_seconds += time.thread_time() - started
        return result

    def _observe(self, kind: Kind, old: Obj | None, obj: Obj) -> None:
        now = time.monotonic()
        meta = obj["metadata"]
        if kind.key == AISERVICES.key:
            key = (meta["namespace"], meta["name"])
            generation = meta.get("generation", 1)
            current = self.expected.get(key)
            if current is None or current[0].generation != generation:
                try:
                    desired = compiler.steady_state(parse(obj))
                except SpecError:
                    return
                record = Expectation(key[0], key[1], generation, self.phase, now)
                triggers = {t["metadata"]["name"]: t for t in desired.triggers}
                self.expected[key] = (record, desired.service, triggers)
                self.records.append(record)
                self._check(key, now)
            record = self.expected[key][0]
            if record.ready_at is None and _ready_for(obj, generation):
                record.ready_at = now
                self._notify()
            return
        owner = (meta.get("labels") or {}).get(compiler.LABEL_NAME)
        if owner:
            self._check((meta["namespace"], owner), now)

    def _check(self, key: tuple[str, str], now: float) -> None:
        entry = self.expected.get(key)
        if entry is None or entry[0].matched_at is not None:
            return
        record, service, triggers = entry
        live = self.store.get((KSERVICES.key, key[0], key[1]))
        if live is None or needs_update(live, service):
            return
        for name, trigger in triggers.items():
            live = self.store.get((TRIGGERS.key, key[0], name))
            if live is None or needs_update(live, trigger):
                return
        record.matched_at = now
        self._notify()

    def _counts(self) -> list[Obj]:
        return _counts_rows(self.counts)

    def _notify(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()

    # --- control endpoints ---------------------------------------------------------

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        if raw_request.path.startswith("/_bench/"):
            return await self._control(raw_request)
        agent = raw_request.headers.get("User-Agent", "")
        token = _CLIENT.set("driver" if agent.startswith(DRIVER_AGENT) else "operator")
        try:
            return await super().__call__(raw_request)
        finally:
            _CLIENT.reset(token)

    async def _control(self, request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        what = request.path.removeprefix("/_bench/")
        query = request.query
        if what == "phase":
            self.phase = str((await request.json())["phase"])
            return aiohttp.web.json_response({"phase": self.phase})
        if what in ("wait", "wait-one"):
            deadline = time.monotonic() + float(query.get("timeout", "60"))
            ready = query.get("until") == "ready"
            while True:
                if what == "wait":
                    pending = sum(
                        1 for r in self.records if r.phase == query["phase"] and not _done(r, ready)
                    )
                else:
                    entry = self.expected.get((query["namespace"], query["name"]))
                    pending = 0 if entry is not None and _done(entry[0], ready) else 1
                left = deadline - time.monotonic()
                if not pending or left <= 0:
                    return aiohttp.web.json_response({"pending": pending})
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.changed.wait(), min(left, 1.0))
        if what == "quiet":
            # Until no request has come for `seconds` (a restarted operator settled).
            seconds = float(query.get("seconds", "1"))
            deadline = time.monotonic() + float(query.get("timeout", "60"))
            while time.monotonic() - self.last_request_at < seconds:
                if time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.05)
            return aiohttp.web.json_response({"idle": time.monotonic() - self.last_request_at})
        if what == "timeline":
            # The last requests with their times, for finding where a latency goes.
            return aiohttp.web.json_response(
                [
                    [t, client, e.verb, e.plural, e.subresource, e.namespace, e.name, e.code]
                    for t, client, e in self.timeline
                ]
            )
        if what == "counts":
            return aiohttp.web.json_response({"counts": self._counts()})
        if what == "report":
            return aiohttp.web.json_response(
                {
                    "records": [asdict(r) for r in self.records],
                    "counts": self._counts(),
                    "observer_seconds": self.observer_seconds,
                    "objects": len(self.store),
                }
            )
        return aiohttp.web.json_response({"error": f"unknown {what}"}, status=404)


def _counts_rows(counts: collections.Counter[tuple[str, str, str, str]]) -> list[Obj]:
    return [
        {"phase": p, "client": c, "verb": v, "resource": r, "count": n}
        for (p, c, v, r), n in sorted(counts.items())
    ]


def _ready_for(obj: Obj, generation: int) -> bool:
    status = obj.get("status") or {}
    if status.get("observedGeneration") != generation:
        return False
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or ()
    )


def _done(record: Expectation, ready: bool) -> bool:
    return (record.ready_at if ready else record.matched_at) is not None


def main() -> None:
    """Serve until standard input closes."""
    kube = EmulatorThread(BenchEmulator())
    kube.start()
    KnativeServing(kube).start()
    print(json.dumps({"url": kube.url}), flush=True)
    done = threading.Event()

    def wait_stdin() -> None:
        sys.stdin.read()
        done.set()

    threading.Thread(target=wait_stdin, daemon=True).start()
    done.wait()
    kube.stop()


if __name__ == "__main__":
    main()
