"""The Kopf wiring: when to reconcile an AIService, and how errors and Events are reported.

One reconcile for create, update and resume: read the AIService and what Knative serves
(the Service, its Revisions, the Triggers), let `core.reconcile.plan` decide the objects,
the status and the Events, and write them through `kube`. The compiler points traffic
only at ready revisions, so the rollout of a new revision proceeds when Knative reports
it ready: owned Knative Services (and Triggers) are watched, and any change to one — a
revision becoming ready, a status update, someone editing or deleting it — reconciles
its AIService again. That one mechanism gives
revision-before-traffic sequencing and drift correction without polling; a reconcile that
finds nothing to change writes nothing, so the watch loop settles. A slow resync timer
(`AISVC_RESYNC_SECONDS`) catches what no event announces.

Errors: an invalid spec sets Ready=False/InvalidSpec naming the fields and stops retrying
(`kopf.PermanentError`) until the spec changes; conflicts, throttling, server errors and an
unreachable API retry after `AISVC_RETRY_DELAY_SECONDS` (`kopf.TemporaryError`).

Run: `python -m aiservice_operator` or `kopf run -m aiservice_operator.cluster.handlers -A`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any, cast

import kopf
from aiservice_functions.logs import configure_logging

from aiservice_operator.cluster import kube, operator_metrics
from aiservice_operator.cluster.config import Config
from aiservice_operator.cluster.memo import Key, OperatorMemo
from aiservice_operator.core import compile as compiler
from aiservice_operator.core import conditions, features, rollout_tick
from aiservice_operator.core import reconcile as planner
from aiservice_operator.core.spec import API_GROUP, API_VERSION, PLURAL, AIService, SpecError, parse

OWNED = {compiler.LABEL_MANAGED_BY: compiler.MANAGED_BY}
CONFIG = Config.from_env(os.environ)
"""The settings, read and checked once, when the operator loads this module (before Kopf
starts): a malformed one stops it there, naming the variable. Kopf fixes a timer's
interval when the handler is registered, so the intervals below come from here too."""
Obj = dict[str, Any]


def _state(memo: Any) -> OperatorMemo:
    """The typed memo: the one `main` passes, or one kept in the `kopf.Memo` that
    `kopf run -m aiservice_operator.cluster.handlers` creates."""
    if isinstance(memo, OperatorMemo):
        return memo
    state = memo.get("aisvc")
    if state is None:
        state = memo["aisvc"] = OperatorMemo(CONFIG)
    return cast(OperatorMemo, state)


# --- Start-up ---------------------------------------------------------------------------


def connection_info(config: Config) -> kopf.ConnectionInfo | None:
    """Credentials: `AISVC_KUBE_SERVER` (plain, no auth), else the in-cluster service
    account, else kubeconfig."""
    if config.kube_server:
        return kopf.ConnectionInfo(server=config.kube_server, insecure=True)
    settings = kopf.OperatorSettings()
    return kopf.login_with_service_account(settings=settings) or kopf.login_with_kubeconfig(
        settings=settings
    )


def _as_connection(info: kopf.ConnectionInfo) -> kube.Connection:
    def text(value: object) -> str | None:
        if value is None:
            return None
        return value.decode() if isinstance(value, bytes) else str(value)

    return kube.Connection(
        server=info.server,
        token=info.token,
        scheme=info.scheme,
        ca_path=text(info.ca_path),
        ca_data=text(info.ca_data),
        insecure=bool(info.insecure),
        certificate_path=text(info.certificate_path),
        certificate_data=text(info.certificate_data),
        private_key_path=text(info.private_key_path),
        private_key_data=text(info.private_key_data),
    )


def _relogin(config: Config) -> Callable[[], Awaitable[kube.Connection | None]]:
    """Credentials read again (a rotated token file, a refreshed kubeconfig) after a 401."""

    async def again() -> kube.Connection | None:
        info = await asyncio.to_thread(connection_info, config)
        return None if info is None else _as_connection(info)

    return again


@kopf.on.login()
def login(memo: Any, **_: Any) -> kopf.ConnectionInfo | None:
    return connection_info(_state(memo).config)


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: Any, **_: Any) -> None:
    # `kopf run` (the chart's command) set up its own text logging before importing this
    # module: switch to the one format, keeping the level its flags chose.
    configure_logging(keep_level=True)
    state = _state(memo)
    config = state.config
    # The framework's bookkeeping goes to annotations, so `status` is the operator's alone.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=API_GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=API_GROUP, key="last-handled-configuration"
    )
    # Events: the operator posts its own (kopf.event); only framework warnings are posted.
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = config.watch_timeout
    if config.worker_limit:
        # At most this many objects per kind in flight; an object's worker leaves its slot
        # after 0.1 s without events (Kopf's 5 s would hold slots and throttle a burst).
        settings.queueing.worker_limit = config.worker_limit
        settings.queueing.idle_timeout = 0.1
    if config.peering_name:  # else the command line decides (--standalone / --peering)
        settings.peering.standalone = False
        settings.peering.name = config.peering_name
    info = connection_info(config)
    if info is None:
        raise kopf.PermanentError("no Kubernetes credentials: not in a cluster, no kubeconfig")
    state.kube = kube.Kube(_as_connection(info), relogin=_relogin(config))
    if state.observer is None:
        state.observer = config.observer()
    try:
        state.metrics_endpoint = operator_metrics.serve(config.metrics_port)
    except OSError as err:
        raise kopf.PermanentError(
            f"cannot serve metrics on port {config.metrics_port}: {err}"
        ) from err


@kopf.on.cleanup()
async def close(memo: Any, **_: Any) -> None:
    state = _state(memo)
    if state.kube is not None:
        await state.kube.close()
    if state.metrics_endpoint is not None:
        await asyncio.to_thread(state.metrics_endpoint.close)


# --- Reconcile --------------------------------------------------------------------------


@kopf.on.resume(API_GROUP, API_VERSION, PLURAL)
@kopf.on.create(API_GROUP, API_VERSION, PLURAL)
@kopf.on.update(API_GROUP, API_VERSION, PLURAL)
async def reconcile_aiservice(body: kopf.Body, memo: Any, **_: Any) -> None:
    meta = body.get("metadata", {})
    await reconcile(_state(memo), meta.get("namespace", "default"), meta["name"])


@kopf.timer(
    API_GROUP,
    API_VERSION,
    PLURAL,
    interval=CONFIG.resync_seconds,
    initial_delay=CONFIG.resync_seconds,
)
async def resync_aiservice(body: kopf.Body, memo: Any, **_: Any) -> None:
    """The safety net of a level-based controller: reconcile now and then even without an
    event (a missed watch event, an owned object stripped of the labels watched for). A
    resync that finds nothing to change only reads."""
    meta = body.get("metadata", {})
    await reconcile(_state(memo), meta.get("namespace", "default"), meta["name"])


@kopf.on.event(compiler.SERVING_API.split("/")[0], "v1", "services", labels=OWNED)
@kopf.on.event(compiler.EVENTING_API.split("/")[0], "v1", "triggers", labels=OWNED)
async def child_changed(
    body: kopf.Body,
    type: str,
    resource: kopf.Resource,
    memo: Any,
    logger: logging.Logger | logging.LoggerAdapter[Any],
    **_: Any,
) -> None:
    """A child changed (status, an edit, a deletion): reconcile its AIService again.

    The initial listing (`type` None) is skipped: the resume handler covers it.
    """
    if type is None:
        return
    labels = body.get("metadata", {}).get("labels") or {}
    name, namespace = labels.get(compiler.LABEL_NAME), body.get("metadata", {}).get("namespace")
    if not name or not namespace:
        return
    state = _state(memo)
    if state.waiting.get((namespace, name)):
        return  # a reconcile already queued for it will read this change too
    if type != "DELETED" and state.client.is_own_write(resource.plural, body):
        return  # the watch echoing this operator's own write
    try:
        await reconcile(state, namespace, name)
    except (kopf.TemporaryError, kopf.PermanentError, kube.ApiError) as err:
        # The AIService's own handler retries; the next child event reconciles anyway.
        logger.info(f"reconcile of {namespace}/{name} after a child change deferred: {err}")


def _deleted(type: str, **_: Any) -> bool:
    return type == "DELETED"


@kopf.on.event(API_GROUP, API_VERSION, PLURAL, when=_deleted)
async def aiservice_deleted(body: kopf.Body, memo: Any, **_: Any) -> None:
    """Drop a deleted AIService from the Ready gauge and forget what was kept for it (one
    without children, e.g. with an invalid spec, is never reconciled again to notice)."""
    meta = body.get("metadata", {})
    namespace, name = meta.get("namespace", "default"), meta["name"]
    operator_metrics.ready_status(namespace, name, None)
    operator_metrics.ROLLOUTS.forget(namespace, name)
    key, state = (namespace, name), _state(memo)
    lock = state.locks.get(key)
    if lock is not None and not lock.locked() and not state.waiting.get(key):
        del state.locks[key]  # one in use is dropped by a reconcile that finds it gone
        state.client.forget(namespace, name)


def _event(body: Obj, *, type: str, reason: str, message: str) -> None:
    """Post a Kubernetes Event about the AIService (kopf queues and sends it)."""
    if not body.get("metadata", {}).get("uid"):
        return  # not read from the API: nothing to attach the Event to
    kopf.event(cast(kopf.Body, body), type=type, reason=reason, message=message[:1024])


async def _queue(state: OperatorMemo, key: Key) -> None:
    """Wait for the AIService's lock, counted as waiting (`state.waiting`, and the
    reconciles-waiting gauge, which the reconcile decrements when it ends)."""
    waiting = state.waiting
    waiting[key] = waiting.get(key, 0) + 1
    operator_metrics.RECONCILES_WAITING.inc()
    try:
        await state.lock(key).acquire()
    except BaseException:  # cancelled while queued: it leaves the queue
        operator_metrics.RECONCILES_WAITING.dec()
        raise
    finally:
        waiting[key] -= 1
        if not waiting[key]:
            del waiting[key]


async def reconcile(state: OperatorMemo, namespace: str, name: str) -> None:
    """Bring one AIService's children and status in line with its spec.

    Serialized per AIService (watch events of children and of the AIService may overlap),
    and always from a fresh read: the triggering event's copy can predate the status this
    operator wrote a moment ago, and merging conditions into a stale status would move
    their transition times.
    """
    key = (namespace, name)
    await _queue(state, key)
    waiting = state.waiting
    gone = False
    result, started = "error", time.perf_counter()
    body: Obj = {"metadata": {"namespace": namespace, "name": name}}
    try:
        client, config = state.client, state.config
        try:
            fresh = await client.get_aiservice(namespace, name)
            if fresh is None or fresh["metadata"].get("deletionTimestamp"):
                gone, result = True, "gone"
                return  # its children go with it (ownerReferences)
            body = fresh
            await _reconcile(client, config, body)
            result = "ok"
        except kube.ApiError as err:
            if err.retryable:
                result = "retry"
                raise kopf.TemporaryError(str(err), delay=config.retry_delay) from err
            _event(body, type="Warning", reason="ApplyFailed", message=str(err)[:1024])
            raise kopf.PermanentError(f"the API refused the desired objects: {err}") from err
        except kopf.PermanentError as err:
            if isinstance(err.__cause__, SpecError):
                result = "invalid_spec"
            raise
    finally:
        operator_metrics.RECONCILES_WAITING.dec()
        operator_metrics.reconciled(result, time.perf_counter() - started)
        ready = None if gone else _ready(body.get("status") or {}).get("status")
        if gone or ready:
            operator_metrics.ready_status(namespace, name, ready)
        state.lock(key).release()
        if gone and not waiting.get(key):  # forget what was kept for it
            state.locks.pop(key, None)
            state.client.forget(namespace, name)


async def _reconcile(client: kube.Kube, config: Config, body: Obj) -> None:
    """Read, plan, write."""
    namespace = body["metadata"].get("namespace", "default")
    try:
        ais = parse(body)
    except SpecError:
        read = planner.Read(body)  # nothing to read for a spec that cannot be served
    else:
        read = await _read(client, config, ais, body)
    plan = planner.plan(
        read,
        now=datetime.now(UTC),
        options=config.compile_options,
        serving_namespace=config.knative_serving_namespace,
    )
    if plan.desired is not None:
        await _apply(client, namespace, body["metadata"]["name"], plan.desired, read)
    await _write_status(client, body, plan.status)
    for event in plan.events:
        _event(body, type=event.type, reason=event.reason, message=event.message)
    if plan.refusal is not None:
        raise kopf.PermanentError(plan.refusal) from plan.invalid_spec


async def _read(client: kube.Kube, config: Config, ais: AIService, body: Obj) -> planner.Read:
    """Everything the plan needs, in one round trip (each trip is latency)."""
    namespace, service = ais.namespace, compiler.service_name(ais)
    live, revisions, triggers, flags, broker = await asyncio.gather(
        client.get_service(namespace, service),
        client.list_revisions(namespace, service),
        client.list_triggers(namespace, planner.child_selector(ais.name)),
        _knative_features(client, ais, config.knative_serving_namespace),
        client.get_broker(namespace, ais.spec.broker),
    )
    known = flags is not _UNKNOWN
    return planner.Read(
        body,
        live,
        revisions,
        triggers,
        broker,
        flags if known else None,
        known,
    )


async def _apply(
    client: kube.Kube, namespace: str, name: str, desired: compiler.Desired, read: planner.Read
) -> None:
    """The managed Broker first (Triggers on a missing Broker cannot become ready), then
    the Service and the Triggers together."""
    await client.apply_broker(desired.broker, read.broker)
    selector = planner.child_selector(name)
    results = await asyncio.gather(
        client.apply_service(desired.service, read.service),
        client.apply_triggers(namespace, selector, desired.triggers, read.triggers),
        return_exceptions=True,  # both finish before a failure of either is raised
    )
    for result in results:
        if isinstance(result, BaseException):
            raise result
    applied, triggers = cast(tuple[kube.Applied, dict[str, kube.Applied]], tuple(results))
    operator_metrics.children_written("service", (applied.action,))
    operator_metrics.children_written("trigger", (a.action for a in triggers.values()))


_UNKNOWN: Any = object()
"""The feature flags could not be read: Knative's webhook will judge the revision."""


async def _knative_features(
    client: kube.Kube, ais: AIService, namespace: str
) -> Mapping[str, str] | None:
    """config-features' data when the spec uses a field behind a flag that is off by
    default (else nothing is read: a plain AIService costs no extra request)."""
    if all(features.DEFAULTS.get(flag) == "Enabled" for flag in features.needed(ais)):
        return {}
    try:
        return await client.get_knative_features(namespace)
    except kube.ApiError as err:
        if err.status != 403:
            raise
        logging.getLogger(__name__).warning(
            "cannot read %s/%s (%s): feature flags not checked",
            namespace,
            features.CONFIG_MAP,
            err,
        )
        return cast(Mapping[str, str], _UNKNOWN)


async def _write_status(client: kube.Kube, body: Obj, status: Obj) -> None:
    """Patch the status only when a field the operator owns changed."""
    previous = body.get("status") or {}
    if all(previous.get(key) == value for key, value in status.items()):
        return
    meta = body["metadata"]
    await client.patch_aiservice_status(meta.get("namespace", "default"), meta["name"], status)
    body["status"] = {**previous, **status}


def _ready(status: Mapping[str, Any]) -> Mapping[str, Any]:
    return conditions.find_condition(status.get("conditions") or (), conditions.READY) or {}


# --- Canary rollouts (rollout_tick drives rollout.py) -----------------------------------


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _rollout_wanted(body: kopf.Body, **_: Any) -> bool:
    return rollout_tick.wants_tick(body)


@kopf.timer(
    API_GROUP, API_VERSION, PLURAL, interval=CONFIG.rollout_tick_seconds, when=_rollout_wanted
)
async def rollout_timer(body: kopf.Body, patch: kopf.Patch, memo: Any, **kw: Any) -> None:
    """One rollout tick: metrics, state machine, `status.rollout`, Event and audit event;
    then the normal reconcile, which compiles with the weight now recorded in status.

    A retried tick (`retry` > 0: the last one failed, possibly in that reconcile after the
    new weight was recorded) reconciles even when it has nothing new to decide, or the
    recorded weight would wait for the next resync to reach traffic."""
    retry = int(kw.get("retry") or 0)
    meta = body.get("metadata", {})
    namespace, name = meta.get("namespace", "default"), meta["name"]
    state = _state(memo)
    try:
        seen = parse(body)
    except SpecError:
        return  # the reconcile handler reports it
    stray, ignored = rollout_tick.ignored_commands(seen)
    for key in stray:
        patch.metadata.annotations[key] = None
    if ignored is not None:
        _event(dict(body), type=ignored.type, reason=ignored.reason, message=ignored.message)
    if seen.spec.rollout is None:
        return
    if not rollout_tick.tick_needed(seen, (body.get("status") or {}).get("rollout"), _utcnow()):
        if retry:
            await reconcile(state, namespace, name)
        return  # between analyses: nothing to read or query
    async with state.lock((namespace, name)):
        ticked = await _tick(state, namespace, name)
    if ticked is None:
        return
    result, fresh = ticked
    for key in result.clear_annotations:
        patch.metadata.annotations[key] = None
    if result.decision is not None:
        operator_metrics.rollout_decision(result.decision.action, result.decision.phase)
    action = result.decision.action if result.decision is not None else None
    operator_metrics.ROLLOUTS.record(namespace, name, result.state, action)
    if result.kube_event is not None:
        event = result.kube_event
        _event(fresh, type=event.type, reason=event.reason, message=event.message)
    if result.status is not None or retry:
        await reconcile(state, namespace, name)


async def _tick(
    state: OperatorMemo, namespace: str, name: str
) -> tuple[rollout_tick.TickResult, Obj] | None:
    """Read, tick, record `status.rollout`; `None` when there is no rollout to tick."""
    client = state.client
    fresh = await client.get_aiservice(namespace, name)
    if fresh is None or fresh["metadata"].get("deletionTimestamp"):
        return None
    try:
        ais = parse(fresh)
    except SpecError:
        return None
    if ais.spec.rollout is None or state.observer is None:
        return None
    service = compiler.service_name(ais)
    live, revisions = await asyncio.gather(
        client.get_service(namespace, service), client.list_revisions(namespace, service)
    )
    ready = conditions.knative_state(
        conditions.current_knative_status(live), revisions
    ).ready_revisions
    store = getattr(state.observer, "event_store", None)
    result = await asyncio.to_thread(
        rollout_tick.rollout_tick,
        ais,
        (fresh.get("status") or {}).get("rollout"),
        observer=state.observer,
        now=_utcnow(),
        canary_ready=compiler.revision_name(ais, ais.spec.rollout.canary) in ready,
        audit=store.send_audit if store is not None else None,
    )
    if result.status is not None:
        await client.patch_aiservice_status(namespace, name, {"rollout": result.status})
    return result, fresh


# --- Running ----------------------------------------------------------------------------


def main() -> None:
    """Run the operator until SIGTERM/SIGINT, configured from the environment (read once,
    at import: `CONFIG`)."""
    configure_logging()  # JSON lines like the runtime and the store; AISVC_LOG_FORMAT=text
    kopf.run(
        clusterwide=not CONFIG.namespaces,
        namespaces=CONFIG.namespaces,
        standalone=CONFIG.standalone,
        peering_name=CONFIG.peering_name or None,
        liveness_endpoint=CONFIG.liveness_endpoint or None,
        memo=OperatorMemo(CONFIG),
    )
