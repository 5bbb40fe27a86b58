"""The broker's dispatcher: logged events to Triggers, with Knative's delivery semantics.

For each accepted event, every Trigger of its broker whose filter matches gets one
delivery: up to ``retry + 1`` attempts, each bounded by ``timeout``, separated by the
backoff; then, if it still failed, the event goes to the Trigger's dead-letter sink with
the ``knativeerror*`` extensions. A CloudEvent in a subscriber's answer is a reply: it
goes back into the same broker (logged in the same transaction as the delivery's
outcome), so services chain. Replies carry a hop count (``aisvchops``); past
``hop_limit`` the reply is dead-lettered instead of looping for ever.

Decisions come from `delivery` (pure); this module does the posting and the waiting.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiservice_functions import contract
from aiservice_functions.cloudevents_http import (
    STRUCTURED_JSON,
    CloudEvent,
    InvalidEvent,
    hops,
    parse_request,
    render_response,
)
from cloudevents.core.formats.json import JSONFormat

from aiservice_operator.core.compile import DECISION_ROLES
from aiservice_operator.local import delivery, loopback
from aiservice_operator.local.filters import Predicate, attribute_strings, compile_trigger
from aiservice_operator.local.log import EventLog, Pending, Record, Reply
from aiservice_operator.local.serving import NoRoute, Services
from aiservice_operator.local.traffic import ServiceAddress, resolve_service_url

log = logging.getLogger(__name__)

DEFAULT_HOP_LIMIT = 16
DEFAULT_MAX_IN_FLIGHT = 256
"""Posts in flight at once for the services' own deliveries and plain Triggers."""
DEFAULT_LOG_IN_FLIGHT = 32
"""Posts in flight at once for the decision-log Triggers: a budget of their own, so a
slow event store holds at most this many and never the services' own deliveries."""
LOOP_STATUS = 508
"""The code a looping reply is dead-lettered with (HTTP's "Loop Detected")."""

Destination = ServiceAddress | str
Listener = Callable[[str, "TriggerRuntime | None", CloudEvent], None]
"""Told of each outcome worth showing: ("reply" | "dead-letter" | "dropped", trigger, event),
and ("unrouted", None, event) for an event no Trigger of its broker matches."""


@dataclass(frozen=True)
class TriggerRuntime:
    """A Knative Trigger resolved against the local services."""

    name: str
    namespace: str
    broker: str
    """``namespace/broker``."""
    matches: Predicate
    policy: delivery.DeliveryPolicy
    subscriber: Destination
    subscriber_url: str
    """The subscriber's address as Knative resolves it (``knativeerrordest``)."""
    dead_letter: Destination | None
    owner: str = ""
    """The AIService (``aiservice.dev/name`` label) it belongs to, if any."""
    role: str = ""


def _destination(
    dest: Mapping[str, Any],
    namespace: str,
    services: Collection[tuple[str, str]],
    domain: str,
    where: str,
) -> tuple[Destination, str]:
    """A Knative ``Destination`` (ref and/or uri) as a local target and its cluster URL."""
    ref = dest.get("ref")
    uri = str(dest.get("uri") or "")
    if ref:
        kind, api = ref.get("kind"), str(ref.get("apiVersion", ""))
        ns = ref.get("namespace") or namespace
        if kind != "Service" or not api.startswith("serving.knative.dev/"):
            raise ValueError(
                f"{where}.ref: only Knative Services can be resolved locally, not {api} {kind}"
            )
        if (ns, ref.get("name")) not in services:
            raise ValueError(
                f"{where}.ref: no Knative Service {ns}/{ref.get('name')} in the manifests"
            )
        path = uri if uri.startswith("/") else "/"
        return ServiceAddress(
            ns, ref["name"], "", path
        ), f"http://{ref['name']}.{ns}.svc.{domain}{path if path != '/' else ''}"
    if not uri:
        raise ValueError(f"{where}: needs ref or uri")
    local = resolve_service_url(uri, services, domain)
    return (local if local is not None else uri), uri


def load_trigger(
    trigger: Mapping[str, Any], services: Collection[tuple[str, str]], domain: str = "cluster.local"
) -> TriggerRuntime:
    """Read an ``eventing.knative.dev/v1`` Trigger; raise ValueError naming the bad field."""
    meta = trigger.get("metadata") or {}
    spec = trigger.get("spec") or {}
    name = meta.get("name", "?")
    namespace = meta.get("namespace", "default")
    try:
        matches = compile_trigger(spec)
        policy = delivery.DeliveryPolicy.from_knative(spec.get("delivery"))
        subscriber, url = _destination(
            spec.get("subscriber") or {}, namespace, services, domain, "spec.subscriber"
        )
        sink = (spec.get("delivery") or {}).get("deadLetterSink")
        dead_letter = (
            _destination(sink, namespace, services, domain, "spec.delivery.deadLetterSink")[0]
            if sink
            else None
        )
    except ValueError as err:
        raise ValueError(f"Trigger {namespace}/{name}: {err}") from None
    labels = meta.get("labels") or {}
    return TriggerRuntime(
        name=name,
        namespace=namespace,
        broker=f"{namespace}/{spec.get('broker', 'default')}",
        matches=matches,
        policy=policy,
        subscriber=subscriber,
        subscriber_url=url,
        dead_letter=dead_letter,
        owner=labels.get("aiservice.dev/name", ""),
        role=labels.get("aiservice.dev/role", ""),
    )


@dataclass
class Stats:
    """Counters the live view and the status API show."""

    accepted: Counter[str] = field(default_factory=Counter)  # per broker
    duplicates: Counter[str] = field(default_factory=Counter)
    delivered: Counter[str] = field(default_factory=Counter)  # per trigger
    answered: Counter[str] = field(default_factory=Counter)
    dead_lettered: Counter[str] = field(default_factory=Counter)
    dead_letter_failed: Counter[str] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)
    retries: Counter[str] = field(default_factory=Counter)
    bad_replies: Counter[str] = field(default_factory=Counter)
    unrouted: Counter[str] = field(default_factory=Counter)  # per broker: matched no Trigger


@dataclass(frozen=True)
class _Attempt:
    status: int | None
    body: bytes
    headers: Mapping[str, str]
    revision: str = ""


class Dispatcher:
    """Logs accepted events and delivers them to the matching Triggers."""

    def __init__(
        self,
        event_log: EventLog,
        services: Services,
        session: aiohttp.ClientSession,
        triggers: Iterable[TriggerRuntime] = (),
        *,
        hop_limit: int = DEFAULT_HOP_LIMIT,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        log_in_flight: int = DEFAULT_LOG_IN_FLIGHT,
    ) -> None:
        self.log = event_log
        self.services = services
        self.session = session
        self.triggers: list[TriggerRuntime] = list(triggers)
        self.hop_limit = hop_limit
        self.stats = Stats()
        self.listeners: list[Listener] = []
        self._slots = asyncio.Semaphore(max_in_flight)
        self._log_slots = asyncio.Semaphore(log_in_flight)
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def brokers(self) -> set[str]:
        return {t.broker for t in self.triggers}

    def matching(self, broker: str, attributes: Mapping[str, Any]) -> list[TriggerRuntime]:
        """Triggers of ``broker`` whose filter passes these context attributes."""
        attrs = attribute_strings(attributes)
        return [t for t in self.triggers if t.broker == broker and t.matches(attrs)]

    # --- accepting ----------------------------------------------------------------------

    async def accept(self, broker: str, event: CloudEvent) -> bool:
        """Log an event from outside durably, then schedule its deliveries.

        False when it was a duplicate (same source, id and replay count) already logged.
        """
        targets = self.matching(broker, event.get_attributes())
        seq = await self.log.append(broker, _record(event), done=not targets)
        if seq is None:
            self.stats.duplicates[broker] += 1
            return False
        self.stats.accepted[broker] += 1
        if targets:
            self._schedule(seq, broker, event, targets)
        else:
            self.stats.unrouted[broker] += 1
            self._tell("unrouted", None, event)
        return True

    def resume(self, pending: Iterable[Pending]) -> int:
        """Schedule the deliveries still owed after a restart; how many events that is."""
        count = 0
        for item in pending:
            event = _from_dict(item.event)
            targets = [
                t
                for t in self.matching(item.broker, event.get_attributes())
                if t.name not in item.settled
            ]
            self._schedule(item.seq, item.broker, event, targets)
            count += 1
        return count

    def _schedule(
        self, seq: int, broker: str, event: CloudEvent, targets: list[TriggerRuntime]
    ) -> None:
        task = asyncio.get_running_loop().create_task(self._dispatch(seq, broker, event, targets))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        """Cancel deliveries in flight; the log still owes them, so a restart resumes them."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def drain(self) -> None:
        """Wait until no delivery is in flight (tests, the demo, the benchmark)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # --- delivering ---------------------------------------------------------------------

    async def _dispatch(
        self, seq: int, broker: str, event: CloudEvent, targets: list[TriggerRuntime]
    ) -> None:
        if not targets:
            self.stats.unrouted[broker] += 1
            self._tell("unrouted", None, event)
            await self.log.finish(seq)
            return
        remaining = len(targets)

        async def one(trigger: TriggerRuntime) -> None:
            nonlocal remaining
            try:
                outcome, status, attempts, reply = await self._deliver(trigger, event)
            except Exception:  # a bug on one event must not stall all the others for ever
                log.exception("%s: delivery of event %s failed", trigger.name, event.get_id())
                outcome, status, attempts, reply = "dead-letter-failed", None, 0, None
            remaining -= 1  # one event loop: no lock needed between these two lines
            last = remaining == 0
            reply_targets = (
                self.matching(broker, reply.get_attributes()) if reply is not None else []
            )
            reply_seq = await self.log.settle(
                seq,
                trigger.name,
                outcome,
                status=status,
                attempts=attempts,
                reply=(
                    Reply(broker, _record(reply), done=not reply_targets)
                    if reply is not None
                    else None
                ),
                finish=last,
            )
            if reply is None or reply_seq is None:
                return
            self._tell("reply", trigger, reply)
            self.stats.answered[trigger.name] += 1
            self.stats.accepted[broker] += 1
            if reply_targets:
                self._schedule(reply_seq, broker, reply, reply_targets)
            else:
                self.stats.unrouted[broker] += 1
                self._tell("unrouted", None, reply)

        await asyncio.gather(*(one(t) for t in targets))

    def _tell(self, kind: str, trigger: TriggerRuntime | None, event: CloudEvent) -> None:
        for listener in self.listeners:
            try:
                listener(kind, trigger, event)
            except Exception:  # a display problem must not fail a delivery
                log.exception("listener failed")

    def _budget(self, trigger: TriggerRuntime) -> asyncio.Semaphore:
        """The decision log's Triggers draw on their own budget, everything else on the
        services': a backlog in one never holds the other's posts."""
        return self._log_slots if trigger.role in DECISION_ROLES else self._slots

    async def _post(
        self,
        dest: Destination,
        headers: Mapping[str, str],
        body: bytes,
        timeout: float | None,
        slots: asyncio.Semaphore,
    ) -> _Attempt:
        async with slots:
            if isinstance(dest, ServiceAddress):
                try:
                    answer = await self.services.post(dest, headers, body, timeout)
                except NoRoute as err:
                    return _Attempt(404, str(err).encode(), {})
                return _Attempt(answer.status, answer.body, answer.headers, answer.revision)
            if loopback.handles(dest):  # the local event store, a local endpoint: the lean client
                resp = await self.services.client.post(dest, headers, body, timeout)
                return _Attempt(resp.status, resp.body, resp.headers)
            async with self.session.post(
                dest, data=body, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout)
            ) as answered:
                return _Attempt(answered.status, await answered.read(), dict(answered.headers))

    async def _deliver(
        self, trigger: TriggerRuntime, event: CloudEvent
    ) -> tuple[str, int | None, int, CloudEvent | None]:
        """One Trigger's delivery of one event: (outcome, last status, attempts, reply)."""
        result, attempt, delivered = await self._send(
            trigger, trigger.subscriber, event, retries=self.stats.retries
        )
        if not delivered:
            outcome = await self._dead_letter(trigger, event, result)
            return outcome, result.status, attempt, None
        self.stats.delivered[trigger.name] += 1
        reply = self._reply(trigger, event, result)
        if reply is not None and hops(reply) > self.hop_limit:
            loop_body = (
                f"reply loop: {hops(reply)} hops exceed the limit of {self.hop_limit}"
            ).encode()
            outcome = await self._dead_letter(
                trigger, reply, _Attempt(LOOP_STATUS, loop_body, {}, result.revision)
            )
            return outcome, result.status, attempt, None
        return "delivered", result.status, attempt, reply

    async def _send(
        self,
        trigger: TriggerRuntime,
        dest: Destination,
        event: CloudEvent,
        retries: Counter[str] | None = None,
    ) -> tuple[_Attempt, int, bool]:
        """Post ``event`` to ``dest`` until it is delivered or the Trigger's delivery policy
        gives up: (last attempt, attempts, delivered). Each retry is counted in ``retries``."""
        policy = trigger.policy
        try:
            _, headers, body = render_response(event, "binary")
        except (ValueError, TypeError, RecursionError) as err:
            # A poison event: no retry can send it, so it fails at once (and is
            # dead-lettered with the reason) instead of failing the dispatcher.
            log.error("%s: event %s cannot be sent: %s", trigger.name, event.get_id(), err)
            reason = f"event cannot be sent: {type(err).__name__}: {err}"
            return _Attempt(None, reason.encode("utf-8", "replace"), {}), 1, False
        attempt = 0
        while True:
            attempt += 1
            try:
                result = await self._post(
                    dest, headers, body, policy.timeout, self._budget(trigger)
                )
            except (aiohttp.ClientError, OSError, TimeoutError) as err:
                result = _Attempt(None, f"{type(err).__name__}: {err}".encode(), {})
            decision = delivery.decide(policy, attempt, result.status)
            if decision != "retry":
                return result, attempt, decision == "delivered"
            if retries is not None:
                retries[trigger.name] += 1
            await asyncio.sleep(delivery.backoff_seconds(policy, attempt))

    def _reply(
        self, trigger: TriggerRuntime, event: CloudEvent, result: _Attempt
    ) -> CloudEvent | None:
        """The CloudEvent in a 2xx answer, with its hop count; None when there is none."""
        headers = {k.lower(): v for k, v in result.headers.items()}
        if not result.body and not any(k.startswith("ce-") for k in headers):
            return None
        try:
            reply = parse_request(headers, result.body).event
        except InvalidEvent as err:
            self.stats.bad_replies[trigger.name] += 1
            log.warning(
                "%s: answer is not a CloudEvent, no reply sent on: %s", trigger.name, err.reason
            )
            return None
        attrs = dict(reply.get_attributes())
        attrs[contract.EXT_HOPS] = str(hops(event) + 1)
        return CloudEvent(attrs, reply.get_data())

    async def _dead_letter(
        self, trigger: TriggerRuntime, event: CloudEvent, failed: _Attempt
    ) -> str:
        """Send a failed event to the Trigger's dead-letter sink; the delivery's outcome."""
        if trigger.dead_letter is None:
            self.stats.dropped[trigger.name] += 1
            self._tell("dropped", trigger, event)
            log.warning(
                "%s: event %s failed and the Trigger has no deadLetterSink: dropped",
                trigger.name,
                event.get_id(),
            )
            return "dropped"
        attrs = dict(event.get_attributes())
        attrs.update(
            delivery.dead_letter_extensions(trigger.subscriber_url, failed.status, failed.body)
        )
        if failed.revision:
            attrs[contract.EXT_REVISION] = failed.revision
        letter = CloudEvent(attrs, event.get_data())
        result, _, delivered = await self._send(trigger, trigger.dead_letter, letter)
        if delivered:
            self.stats.dead_lettered[trigger.name] += 1
            self._tell("dead-letter", trigger, letter)
            return "dead-lettered"
        self.stats.dead_letter_failed[trigger.name] += 1
        log.error(
            "%s: event %s could not be dead-lettered (%s); it stays in the broker log",
            trigger.name,
            event.get_id(),
            result.status,
        )
        return "dead-letter-failed"


_FORMAT = JSONFormat()


def _record(event: CloudEvent) -> Record:
    """The event as the log keeps it (its structured-mode JSON, written once)."""
    replay = event.get_attributes().get(contract.EXT_REPLAY)
    return Record(
        source=event.get_source(),
        id=event.get_id(),
        text=_FORMAT.write(event).decode("utf-8"),
        replay="" if replay is None else str(replay),
    )


def _from_dict(doc: Mapping[str, Any]) -> CloudEvent:
    """Rebuild a logged event (structured JSON) with the shared parser."""
    body = json.dumps(doc).encode("utf-8")
    return parse_request({"content-type": STRUCTURED_JSON}, body).event
