"""`aisvc up`: compile the manifests and run the resulting Knative objects on this machine.

Order of start-up follows the operator's: every revision is started and must report
ready (Knative starts each new revision at ``initial-scale`` 1) before the AIService is
compiled again with those revisions ready, which is when traffic may point at them.
Then the broker opens, and the deliveries the durable log still owes are resumed.

Files live in a state directory (default ``.aisvc``): the broker log, the event store's
database, process logs, and ``local.json``, which tells ``aisvc send``/``status``/``dlq``
where the local run listens.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import secrets
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from aiservice_functions import contract
from prometheus_client import CollectorRegistry, generate_latest

from aiservice_operator.core.compile import (
    DECISION_ROLES,
    LABEL_ROLE,
    CompileOptions,
    Desired,
    model_tag,
)
from aiservice_operator.core.reconcile import desired_objects
from aiservice_operator.core.rollout import COMMANDS, Command, annotation
from aiservice_operator.core.rollout_tick import rollout_tick, tick_needed
from aiservice_operator.core.spec import AIService
from aiservice_operator.local.dispatcher import Dispatcher, TriggerRuntime, load_trigger
from aiservice_operator.local.ingress import COMMANDS_PATH, METRICS_PATH, STATUS_PATH, ingress_app
from aiservice_operator.local.log import EventLog
from aiservice_operator.local.manifests import Manifests
from aiservice_operator.local.pod_env import ignored_fields
from aiservice_operator.local.rollouts import LocalObserver
from aiservice_operator.local.scaling import ScaleSettings
from aiservice_operator.local.serving import Services, serving_app
from aiservice_operator.local.state_files import (
    STATE_FILE,
    private_database,
    private_dir,
    write_state,
)
from aiservice_operator.local.supervisor import (
    FunctionProcess,
    LaunchSpec,
    RevisionFailed,
    RevisionPool,
    free_port,
)
from aiservice_operator.local.traffic import route_of
from aiservice_operator.local.view import status_object
from aiservice_operator.rollout_metrics import RolloutMetrics
from aiservice_operator.sources.event_store import EventStoreClient

log = logging.getLogger(__name__)

RECONCILE_EVERY_S = 0.5


@dataclass(frozen=True)
class UpOptions:
    state_dir: Path = Path(".aisvc")
    broker_port: int = 0
    serving_port: int = 0
    event_store_port: int = 0
    event_store: bool = True
    idle_seconds: float = 30.0
    synchronous: str = "FULL"
    hop_limit: int = 16
    ready_timeout: float = 180.0
    cluster_domain: str = "cluster.local"
    rollout_tick_seconds: float = 2.0
    """How often active rollouts are stepped (analysis itself runs once per `interval`)."""


@dataclass
class ServiceRun:
    ais: AIService
    desired: Desired
    rollout: dict[str, Any] | None = None
    """The rollout status block (phase, step, weight, ...) while a canary is rolled."""


class LocalRun:
    """Everything one `aisvc up` runs; `start()` then `stop()` (also an async context)."""

    def __init__(self, manifests: Manifests, options: UpOptions = UpOptions()) -> None:
        self.manifests = manifests
        self.options = options
        self.state_dir = options.state_dir
        self.broker_port = options.broker_port or free_port()
        self.serving_port = options.serving_port or free_port()
        self.store_port = options.event_store_port or free_port()
        self.event_store_url = f"http://127.0.0.1:{self.store_port}"
        self.sink_key_file = self.state_dir / "sink.key"
        self.sink_key = _sink_key(self.sink_key_file) if options.event_store else None
        self.compile_options = CompileOptions(
            event_store_url=self.event_store_url,
            cluster_domain=options.cluster_domain,
            sink_key=self.sink_key,
        )
        self.services_runs: dict[tuple[str, str], ServiceRun] = {}
        self.warnings: list[str] = []
        self.started_at = time.time()
        self._session: aiohttp.ClientSession | None = None
        self._runners: list[web.AppRunner] = []
        self._store: FunctionProcess | None = None
        self._reconciler: asyncio.Task[None] | None = None
        self._roller: asyncio.Task[None] | None = None
        self.log: EventLog | None = None
        self.services: Services | None = None
        self.dispatcher: Dispatcher | None = None
        self.resumed = 0
        self.metrics_registry = CollectorRegistry()
        self.rollout_metrics = RolloutMetrics(self.metrics_registry)

    # --- URLs ---------------------------------------------------------------------------

    @property
    def broker_url(self) -> str:
        return f"http://127.0.0.1:{self.broker_port}"

    @property
    def serving_url(self) -> str:
        return f"http://127.0.0.1:{self.serving_port}"

    def _cluster_class(self, broker: str) -> str:
        """The class the AIServices ask for this Broker on a cluster ('' when none does):
        locally every Broker is the same durable SQLite log."""
        for ais in self.manifests.aiservices:
            if f"{ais.namespace}/{ais.spec.broker}" == broker and ais.spec.managed_broker:
                return ais.spec.managed_broker.broker_class
        return ""

    @property
    def console_url(self) -> str | None:
        """The event store's web console (dead letters, replay, rollouts), if it runs."""
        return f"{self.event_store_url}/console/" if self.options.event_store else None

    def broker_urls(self) -> dict[str, str]:
        assert self.dispatcher is not None
        brokers = self.dispatcher.brokers | self.manifests.brokers
        return {b: f"{self.broker_url}/{b}" for b in sorted(brokers)}

    # --- lifecycle ----------------------------------------------------------------------

    async def __aenter__(self) -> LocalRun:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    async def start(self) -> None:
        private_dir(self.state_dir)
        self.log = EventLog(  # first: a log that cannot be read stops the run before it starts
            private_database(self.state_dir / "broker.db"), synchronous=self.options.synchronous
        )
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, limit_per_host=0)
        )
        self.services = Services(self._session)
        self.log.start(asyncio.get_running_loop())
        self.dispatcher = Dispatcher(
            self.log, self.services, self._session, hop_limit=self.options.hop_limit
        )
        try:
            if self.options.event_store:
                await self._start_event_store()
            else:
                self._warn(
                    "no event store: events for the default dead-letter sink cannot be "
                    "dead-lettered (they stay in the broker log as dead-letter-failed)"
                )
                if any(a.spec.rollout is not None for a in self.manifests.aiservices):
                    self._warn(
                        "no event store: rollouts pause at their first analysis, since the "
                        "canary's dead letters cannot be counted"
                    )
            await self._start_services()
            self.dispatcher.triggers = self._load_triggers()
            await self._serve(
                ingress_app(
                    self.dispatcher,
                    self._brokers(),
                    self.snapshot,
                    self.command,
                    lambda: generate_latest(self.metrics_registry),
                ),
                self.broker_port,
            )
            await self._serve(serving_app(self.services), self.serving_port)
            self.resumed = self.dispatcher.resume(self.log.pending())
            self._reconciler = asyncio.get_running_loop().create_task(self._reconcile_loop())
            if any(a.spec.rollout is not None for a in self.manifests.aiservices):
                self._roller = asyncio.get_running_loop().create_task(self._rollout_loop())
            self._write_state()
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Stop accepting, cancel deliveries (the log keeps what is owed), stop processes."""
        for task in (self._reconciler, self._roller):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._reconciler = self._roller = None
        for runner in self._runners:
            await runner.cleanup()
        self._runners = []
        if self.dispatcher is not None:
            await self.dispatcher.stop()
        if self.services is not None:
            await asyncio.gather(*(p.stop() for p in self.services.pools.values()))
        if self._store is not None:
            await self._store.stop()
            self._store = None
        if self.services is not None:
            self.services.client.close()
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self.log is not None:
            self.log.close()
            self.log = None
        with contextlib.suppress(FileNotFoundError):
            state = self.state_dir / STATE_FILE
            if json.loads(state.read_text()).get("pid") == os.getpid():
                state.unlink()

    # --- parts --------------------------------------------------------------------------

    async def _start_event_store(self) -> None:
        assert self._session is not None
        db = private_database(self.state_dir / "event-store.db").resolve()
        command = (
            sys.executable, "-m", "aiservice_functions.event_store", "serve",
            "--db", f"sqlite:///{db}", "--host", "127.0.0.1", "--port", str(self.store_port),
            "--allow-unauthenticated", "--loopback-only", "--broker-url", self.broker_url,
            "--sink-key-file", str(self.sink_key_file),
            "--replay-allow-target", "127.0.0.0/8",  # a local run's targets are local
        )  # fmt: skip
        spec = LaunchSpec("event-store", "event-store", "", "", "", {}, argv=command)
        self._store = FunctionProcess(
            spec, self.store_port, self.state_dir / "logs" / "event-store.log"
        )
        await self._store.start(self._session, self.options.ready_timeout)

    async def _start_services(self) -> None:
        """Start every revision, wait for readiness, then compile with them ready."""
        assert self.services is not None and self._session is not None
        first: dict[tuple[str, str], Desired] = {}
        starts = []
        for ais in self.manifests.aiservices:
            ignored = ignored_fields(ais)
            if ignored:
                self._warn(ignored)
            desired = self._desired(ais, None, ready=())
            first[(ais.namespace, ais.name)] = desired
            for name, template in desired.revisions.items():
                pool = RevisionPool(
                    LaunchSpec.from_template(template, ais.namespace, self.manifests.values),
                    ScaleSettings.from_template(template, self.options.idle_seconds),
                    self._session,
                    self.state_dir / "logs",
                    self.options.ready_timeout,
                )
                self.services.pools[name] = pool
                starts.append(pool.start_one())
        results = await asyncio.gather(*starts, return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            raise RevisionFailed("; ".join(str(f) for f in failures))
        for ais in self.manifests.aiservices:
            ready = list(first[(ais.namespace, ais.name)].revisions)
            self.apply(ais, self._desired(ais, None, ready=ready))

    def apply(self, ais: AIService, desired: Desired) -> None:
        """Serve a (re)compiled AIService: its route, and its Triggers if the run has started."""
        assert self.services is not None
        # Routes go by Knative Service name (an AIService's, shortened past 40 characters).
        service = desired.service["metadata"]["name"]
        self.services.routes[(ais.namespace, service)] = route_of(desired.service)
        previous = self.services_runs.get((ais.namespace, ais.name))
        rollout = previous.rollout if previous is not None else None
        self.services_runs[(ais.namespace, ais.name)] = ServiceRun(ais, desired, rollout)
        if self.dispatcher is not None and self.dispatcher.triggers:
            self.dispatcher.triggers = self._load_triggers()

    def _load_triggers(self) -> list[TriggerRuntime]:
        known = {
            (ns, run.desired.service["metadata"]["name"])
            for (ns, _), run in self.services_runs.items()
        }
        objects = [t for run in self.services_runs.values() for t in run.desired.triggers]
        logging_roles = DECISION_ROLES
        if not self.options.event_store and any(
            t["metadata"]["labels"].get(LABEL_ROLE) in logging_roles for t in objects
        ):
            # The decision log lives in the event store: without one there is nowhere
            # to deliver it, and retrying into nothing would only load the broker.
            self._warn("no event store: spec.decisionLog is not recorded in this run")
            objects = [
                t for t in objects if t["metadata"]["labels"].get(LABEL_ROLE) not in logging_roles
            ]
        triggers = []
        for obj in [*objects, *self.manifests.triggers]:
            trigger = load_trigger(obj, known, self.options.cluster_domain)
            triggers.append(self._local_dead_letter(trigger))
        return triggers

    def _local_dead_letter(self, trigger: TriggerRuntime) -> TriggerRuntime:
        """A dead-letter URL inside a cluster no local run can reach goes to the local store."""
        sink = trigger.dead_letter
        suffix = f".svc.{self.options.cluster_domain}"
        if isinstance(sink, str) and (urlsplit(sink).hostname or "").endswith(suffix):
            owner = trigger.owner or trigger.name
            local = self.event_store_url + contract.dead_letter_path(
                trigger.namespace, owner, self.sink_key
            )
            warning = (
                f"Trigger {trigger.namespace}/{trigger.name}: dead-letter sink {sink} is inside "
                f"a cluster; dead letters go to the local event store ({local}) instead"
            )
            if warning not in self.warnings:
                self.warnings.append(warning)
            return _replace_dead_letter(trigger, local)
        return trigger

    def _brokers(self) -> set[str]:
        assert self.dispatcher is not None
        return self.dispatcher.brokers | self.manifests.brokers

    async def _serve(self, app: web.Application, port: int) -> None:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        self._runners.append(runner)

    async def _reconcile_loop(self) -> None:
        assert self.services is not None
        while True:
            await asyncio.sleep(RECONCILE_EVERY_S)
            for pool in list(self.services.pools.values()):
                try:
                    await pool.reconcile()
                except Exception:  # keep supervising the others
                    log.exception("reconciling %s failed", pool.name)

    async def _rollout_loop(self) -> None:
        """Step every rollout with the operator's own tick; route the weights it returns."""
        store = (
            EventStoreClient(url=self.event_store_url, sink_key=self.sink_key)
            if self.options.event_store
            else None
        )
        observer = LocalObserver(self._endpoints, store)
        while True:
            await asyncio.sleep(self.options.rollout_tick_seconds)
            for run in list(self.services_runs.values()):
                try:
                    await self._rollout_tick(run, observer, store)
                except Exception as err:  # keep rolling the others; show why this one stopped
                    log.exception("rollout of %s/%s failed", run.ais.namespace, run.ais.name)
                    self._warn(f"rollout of {run.ais.namespace}/{run.ais.name}: {err}")

    async def _rollout_tick(
        self, run: ServiceRun, observer: LocalObserver, store: EventStoreClient | None
    ) -> None:
        ais = run.ais
        now = datetime.now(UTC)
        if ais.spec.rollout is None or not tick_needed(ais, run.rollout, now):
            return
        result = await asyncio.to_thread(
            rollout_tick,
            ais,
            run.rollout,
            observer=observer,
            now=now,
            canary_ready=True,  # every revision was started and ready before traffic
            audit=store.send_audit if store is not None else None,
        )
        if result.status is not None:
            run.rollout = result.status
        action = result.decision.action if result.decision is not None else None
        self.rollout_metrics.record(ais.namespace, ais.name, result.state, action)
        current = run.ais  # commands may have arrived while the tick ran
        if result.clear_annotations:  # the commands this tick acted on
            kept = {
                k: v for k, v in current.annotations.items() if k not in result.clear_annotations
            }
            current = run.ais = dataclasses.replace(current, annotations=kept)
        desired = self._desired(current, run.rollout, ready=list(run.desired.revisions))
        if desired != run.desired:  # a new weight, or the shadow Trigger on or off
            self.apply(current, desired)

    def _desired(self, ais: AIService, rollout: Any, ready: Sequence[str]) -> Desired:
        """The objects to serve, decided as the operator decides them (weights and the
        shadow rule from the rollout state, here kept in memory instead of status)."""
        return desired_objects(
            ais, status_rollout=rollout, ready_revisions=ready, options=self.compile_options
        )

    def command(self, namespace: str, name: str, command: str) -> str | None:
        """Queue a rollout command (the local form of the ``aiservice.dev/*`` annotations)."""
        if command not in COMMANDS:
            return f"{command!r} is not a rollout command ({', '.join(COMMANDS)})"
        run = self.services_runs.get((namespace, name))
        if run is None:
            return f"no AIService {namespace}/{name} in this run"
        if run.ais.spec.rollout is None:
            return f"{namespace}/{name} has no spec.rollout"
        key = annotation(cast(Command, command))
        run.ais = dataclasses.replace(run.ais, annotations={**run.ais.annotations, key: "true"})
        return None

    def _endpoints(self, revision: str) -> list[str]:
        """Base URLs of a revision's ready processes (read from the rollout's thread)."""
        pool = self.services.pools.get(revision) if self.services is not None else None
        return [p.url for p in list(pool.processes) if p.ready] if pool is not None else []

    def _warn(self, warning: str) -> None:
        if warning not in self.warnings:
            self.warnings.append(warning)

    def _write_state(self) -> None:
        state = {
            "pid": os.getpid(),
            "startedAt": self.started_at,
            "brokerUrl": self.broker_url,
            "brokers": self.broker_urls(),
            "servingUrl": self.serving_url,
            "statusUrl": self.broker_url + STATUS_PATH,
            "commandsUrl": self.broker_url + COMMANDS_PATH,
            "metricsUrl": self.broker_url + METRICS_PATH,
            "eventStoreUrl": self.event_store_url if self.options.event_store else None,
            "consoleUrl": self.console_url,
            "clusterDomain": self.options.cluster_domain,
            "claimChecks": {
                f"{a.namespace}/{a.name}": {"bucket": cc.bucket, "endpoint": cc.endpoint}
                for a in self.manifests.aiservices
                if (cc := a.spec.function.claim_check) is not None
            },
        }
        write_state(self.state_dir, state)

    # --- status -------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The state the live view, the status API and `aisvc status` show."""
        assert self.services is not None and self.dispatcher is not None
        stats = self.dispatcher.stats
        services = [
            self._service_snapshot(ns, name, run)
            for (ns, name), run in sorted(self.services_runs.items())
        ]
        trigger_rows = [
            {
                "name": t.name,
                "namespace": t.namespace,
                "broker": t.broker,
                "subscriber": t.subscriber_url,
                "role": t.role,
                "owner": t.owner,
                "delivered": stats.delivered[t.name],
                "answered": stats.answered[t.name],
                "deadLettered": stats.dead_lettered[t.name],
                "retries": stats.retries[t.name],
                "dropped": stats.dropped[t.name] + stats.dead_letter_failed[t.name],
            }
            for t in self.dispatcher.triggers
        ]
        return {
            "brokers": {
                b: {
                    "url": url,
                    "accepted": stats.accepted[b],
                    "duplicates": stats.duplicates[b],
                    "unrouted": stats.unrouted[b],
                    "clusterClass": self._cluster_class(b),
                }
                for b, url in self.broker_urls().items()
            },
            "services": services,
            "triggers": trigger_rows,
            "eventStoreUrl": self.event_store_url if self.options.event_store else None,
            "resumed": self.resumed,
            "log": (
                {"commits": self.log.groups, "writes": self.log.writes}
                if self.log is not None
                else None
            ),
            "warnings": list(self.warnings),
        }

    def _service_snapshot(self, ns: str, ais_name: str, run: ServiceRun) -> dict[str, Any]:
        """One AIService in the snapshot: its revisions, events and rollout."""
        assert self.services is not None and self.dispatcher is not None
        stats = self.dispatcher.stats
        name = run.desired.service["metadata"]["name"]  # the Knative Service's (shortened)
        triggers = [
            t for t in self.dispatcher.triggers if t.owner == ais_name and t.namespace == ns
        ]
        return {
            "namespace": ns,
            "name": ais_name,
            "url": f"{self.serving_url}/{ns}/{name}",
            "revisions": self._revision_snapshots(ns, name, run),
            "events": {
                "delivered": sum(stats.delivered[t.name] for t in triggers),
                "answered": sum(stats.answered[t.name] for t in triggers),
                "deadLettered": sum(stats.dead_lettered[t.name] for t in triggers),
                "retries": sum(stats.retries[t.name] for t in triggers),
                "dropped": sum(
                    stats.dropped[t.name] + stats.dead_letter_failed[t.name] for t in triggers
                ),
            },
            "rollout": run.rollout,
            "aiservice": status_object(run.ais, run.rollout),
        }

    def _revision_snapshots(self, ns: str, name: str, run: ServiceRun) -> list[dict[str, Any]]:
        """Each revision of one AIService: traffic, tags, processes and their counters."""
        assert self.services is not None
        route = self.services.routes[(ns, name)]
        tags: dict[str, list[str]] = {}
        for tag, revision in route.tags.items():
            tags.setdefault(revision, []).append(tag)
        revisions = []
        for model, revision in run.desired.revision_names.items():
            pool = self.services.pools.get(revision)
            snap = pool.snapshot() if pool else {}
            processes = snap.get("processes", [])
            revisions.append(
                {
                    "model": model,
                    "revision": revision,
                    "percent": route.weights.get(revision, 0),
                    "tags": sorted(tags.get(revision, [])),
                    "url": f"{self.serving_url}/{ns}/{name}/tags/{model_tag(model)}",
                    "processes": len(processes),
                    "endpoints": [f"http://127.0.0.1:{p['port']}" for p in processes],
                    "pids": [p["pid"] for p in processes],
                    "ready": sum(1 for p in processes if p["ready"]),
                    "inFlight": snap.get("inFlight", 0),
                    "restarts": snap.get("restarts", 0),
                    "sent": self.services.sent[revision],
                    "failed": self.services.failed[revision],
                    "lastError": snap.get("lastError", ""),
                }
            )
        return revisions


def _replace_dead_letter(trigger: TriggerRuntime, url: str) -> TriggerRuntime:
    return dataclasses.replace(trigger, dead_letter=url)


def _sink_key(path: Path) -> bytes:
    """The run's sink key: kept in the state directory (owner-only), so a restarted run
    keeps the sink URLs of the events its broker log still owes."""
    if path.exists():
        return path.read_bytes().strip()
    private_dir(path.parent)
    key = secrets.token_hex(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(key + "\n")
    return key.encode()
