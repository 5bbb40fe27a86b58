"""The AIService `status`: conditions and the view of what Knative is actually serving.

Conditions follow the Kubernetes convention: one entry per type, `lastTransitionTime`
moves only when `status` changes (a new reason or message alone keeps it), so
`kubectl wait` and dashboards see real transitions, not every reconcile. The operator
owns `Ready`; `RolloutProgressing` and `Degraded` belong to the rollout engine and are
carried over untouched by `summarize_status`.

Pure: the caller passes `now`; nothing here reads a clock or the cluster.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from aiservice_functions.durations import parse_iso8601

from aiservice_operator.core.compile import (
    DURABLE_CLASSES,
    Desired,
    broker_class,
    broker_conflict,
    is_managed_broker,
)
from aiservice_operator.core.spec import AIService, SpecError

ConditionStatus = Literal["True", "False", "Unknown"]
MAX_MESSAGE_LENGTH = 1024

READY = "Ready"
ROLLOUT_PROGRESSING = "RolloutProgressing"
DEGRADED = "Degraded"
COLD_START = "ColdStartWithinTimeout"
"""False when a measured cold start (a revision's time to Ready) exceeds the time an event
may wait while the service scales from zero."""
BROKER_DURABLE = "BrokerDurable"
"""Whether the Broker in use keeps events durably (Kafka, RabbitMQ) or in memory."""
BROKER_MANAGED = "BrokerManaged"
"""With spec.managedBroker: whether the Broker is the one asked for."""
CONDITION_TYPES = (READY, ROLLOUT_PROGRESSING, DEGRADED, COLD_START, BROKER_DURABLE, BROKER_MANAGED)

REASON_READY = "Ready"
REASON_INVALID_SPEC = "InvalidSpec"
REASON_NAME_CONFLICT = "NameConflict"
REASON_FEATURE_DISABLED = "KnativeFeatureDisabled"
REASON_SLOW_COLD_START = "SlowColdStart"
REASON_COLD_START_FITS = "WithinTimeout"
REASON_WARM = "MinScaleAboveZero"
REASON_REVISION_PENDING = "RevisionPending"
REASON_KNATIVE_NOT_READY = "KnativeNotReady"
REASON_NO_ROLLOUT = "NoRollout"
REASON_AS_EXPECTED = "AsExpected"

# Rollout phase -> (RolloutProgressing status, Degraded status).
_ROLLOUT_PHASES: dict[str, tuple[ConditionStatus, ConditionStatus]] = {
    "Initializing": ("True", "False"),
    "Progressing": ("True", "False"),
    "Promoting": ("True", "False"),
    "Paused": ("Unknown", "False"),
    "RollingBack": ("True", "True"),
    "Succeeded": ("False", "False"),
    "Failed": ("False", "True"),
}


def timestamp(now: datetime) -> str:
    """RFC 3339 in UTC with second precision: the form Kubernetes writes."""
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def condition(
    type_: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    *,
    now: datetime,
    observed_generation: int,
) -> dict[str, Any]:
    """One condition entry in the `metav1.Condition` shape."""
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message[:MAX_MESSAGE_LENGTH],
        "lastTransitionTime": timestamp(now),
        "observedGeneration": observed_generation,
    }


def merge_conditions(
    previous: Iterable[Mapping[str, Any]], updates: Iterable[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """`previous` with each update replacing its type; an update whose status equals the
    previous one keeps the previous `lastTransitionTime`. Sorted by type (stable output)."""
    merged = {str(c.get("type")): dict(c) for c in previous if c.get("type")}
    for update in updates:
        new = dict(update)
        old = merged.get(str(new["type"]))
        if old is not None and old.get("status") == new["status"] and old.get("lastTransitionTime"):
            new["lastTransitionTime"] = old["lastTransitionTime"]
        merged[str(new["type"])] = new
    return [merged[t] for t in sorted(merged)]


def find_condition(conditions: Iterable[Mapping[str, Any]], type_: str) -> Mapping[str, Any] | None:
    """The condition of a type, or None."""
    return next((c for c in conditions if c.get("type") == type_), None)


# --- Knative Service status ----------------------------------------------------------


@dataclass(frozen=True)
class KnativeState:
    """What a Knative Service's status says, in the terms the operator decides on."""

    ready: bool
    status: ConditionStatus
    """Knative's own Ready status: True, False (failed) or Unknown (still reconciling)."""
    reason: str
    message: str
    url: str
    ready_revisions: frozenset[str]
    traffic: tuple[Mapping[str, Any], ...]


def current_knative_status(service: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A Knative Service's status, or a not-ready one while Knative has not observed the
    Service's latest spec: a Ready from an older generation says nothing about this one."""
    if service is None:
        return None
    status = dict(service.get("status") or {})
    observed = status.get("observedGeneration") or 0
    if observed < (service.get("metadata") or {}).get("generation", 0):
        status["conditions"] = [
            {
                "type": "Ready",
                "status": "Unknown",
                "reason": "Reconciling",
                "message": "Knative has not processed the latest spec yet",
            }
        ]
    return status


def knative_state(
    service_status: Mapping[str, Any] | None, revisions: Iterable[Mapping[str, Any]] = ()
) -> KnativeState:
    """Read a Knative Service status (and, when the caller has them, Revision objects).

    Ready revisions: the latest ready one, every one the Route currently serves (Knative
    only routes to revisions that became ready), and any Revision whose own `Ready`
    condition is True. Each model revision keeps a tagged route once ready, so it stays
    visible here while the template rolls on to the next model.
    """
    status = service_status or {}
    conditions = status.get("conditions") or ()
    ready_cond = find_condition(conditions, "Ready") or {}
    ready_names: set[str] = set()
    if status.get("latestReadyRevisionName"):
        ready_names.add(str(status["latestReadyRevisionName"]))
    traffic = tuple(t for t in status.get("traffic") or () if isinstance(t, Mapping))
    ready_names |= {str(t["revisionName"]) for t in traffic if t.get("revisionName")}
    for revision in revisions:
        rev_cond = find_condition((revision.get("status") or {}).get("conditions") or (), "Ready")
        name = (revision.get("metadata") or {}).get("name")
        if name and rev_cond is not None and rev_cond.get("status") == "True":
            ready_names.add(str(name))
    ready_status = ready_cond.get("status")
    return KnativeState(
        ready=ready_status == "True",
        status=ready_status if ready_status in ("True", "False") else "Unknown",
        reason=str(ready_cond.get("reason") or ""),
        message=str(ready_cond.get("message") or ""),
        url=str(status.get("url") or ""),
        ready_revisions=frozenset(ready_names),
        traffic=traffic,
    )


def _model_of(ais: AIService, desired: Desired, revision: str) -> str:
    """The model a revision serves: from the current spec, else from its name's shape."""
    for model, name in desired.revision_names.items():
        if name == revision:
            return model
    prefix = f"{desired.service['metadata']['name']}-"
    if revision.startswith(prefix) and "-" in revision[len(prefix) :]:
        return revision[len(prefix) :].rsplit("-", 1)[0]
    return ""


def status_traffic(ais: AIService, desired: Desired, state: KnativeState) -> list[dict[str, Any]]:
    """`status.traffic`: what Knative routes now, one entry per target, with its model."""
    entries = []
    for target in state.traffic:
        revision = str(target.get("revisionName") or "")
        entry: dict[str, Any] = {
            "model": _model_of(ais, desired, revision),
            "revisionName": revision,
            "percent": int(target.get("percent") or 0),
            "tag": str(target.get("tag") or ""),
        }
        if target.get("url"):
            entry["url"] = str(target["url"])
        entries.append(entry)
    return entries


# --- The status the operator writes --------------------------------------------------


def _ready_condition(
    ais: AIService, desired: Desired, state: KnativeState, now: datetime
) -> dict[str, Any]:
    generation = ais.generation
    if desired.pending_models:
        waiting = ", ".join(
            f"{m} ({desired.revision_names.get(m, '?')})" for m in desired.pending_models
        )
        return condition(
            READY,
            "False",
            REASON_REVISION_PENDING,
            f"waiting for the revisions of models {waiting} to become ready",
            now=now,
            observed_generation=generation,
        )
    if not state.ready:
        detail = f"{state.reason}: {state.message}" if state.reason else "no Ready condition yet"
        return condition(
            READY,
            "False" if state.status == "False" else "Unknown",
            REASON_KNATIVE_NOT_READY,
            f"Knative Service {desired.service['metadata']['name']} is not ready ({detail})",
            now=now,
            observed_generation=generation,
        )
    return condition(
        READY,
        "True",
        REASON_READY,
        f"serving at {state.url}" if state.url else "serving",
        now=now,
        observed_generation=generation,
    )


def rollout_conditions(
    ais: AIService, rollout_status: Mapping[str, Any] | None, now: datetime, had_rollout: bool
) -> list[dict[str, Any]]:
    """`RolloutProgressing` and `Degraded` from the rollout state kept in `status.rollout`.

    Without a rollout in the spec, `RolloutProgressing` and `Degraded` turn False only if
    they were ever set (a removed rollout, e.g. after a failure, is no longer degraded);
    before the rollout records a phase, both are left as they are.
    """
    generation = ais.generation
    phase = str((rollout_status or {}).get("phase") or "")
    if ais.spec.rollout is not None and phase not in _ROLLOUT_PHASES:
        return []  # the rollout has not recorded a state yet
    if ais.spec.rollout is None:
        if not had_rollout:
            return []
        return [
            condition(
                ROLLOUT_PROGRESSING,
                "False",
                REASON_NO_ROLLOUT,
                "spec.rollout is not set",
                now=now,
                observed_generation=generation,
            ),
            condition(
                DEGRADED, "False", REASON_AS_EXPECTED, "", now=now, observed_generation=generation
            ),
        ]
    rollout = rollout_status or {}
    progressing, degraded = _ROLLOUT_PHASES[phase]
    detail = str(rollout.get("message") or "")
    where = f"step {rollout.get('step', 0)}, canary {ais.spec.rollout.canary} at " + (
        f"{rollout.get('weight', 0)}%"
    )
    message = f"{where}: {detail}" if detail else where
    return [
        condition(
            ROLLOUT_PROGRESSING,
            progressing,
            phase,
            message,
            now=now,
            observed_generation=generation,
        ),
        condition(
            DEGRADED,
            degraded,
            f"Rollout{phase}" if degraded == "True" else REASON_AS_EXPECTED,
            message if degraded == "True" else "",
            now=now,
            observed_generation=generation,
        ),
    ]


def _parse_time(value: Any) -> datetime | None:
    try:
        return datetime.strptime(str(value), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None


def startup_seconds(
    revisions: Iterable[Mapping[str, Any]], names: Iterable[str]
) -> dict[str, float]:
    """Revision name -> seconds from its creation to Ready, for the named revisions that
    became ready: Knative's own measure of a cold start (pod, image pull, model load)."""
    wanted = set(names)
    measured: dict[str, float] = {}
    for revision in revisions:
        meta = revision.get("metadata") or {}
        name = str(meta.get("name") or "")
        ready = find_condition((revision.get("status") or {}).get("conditions") or (), "Ready")
        if name not in wanted or ready is None or ready.get("status") != "True":
            continue
        created = _parse_time(meta.get("creationTimestamp"))
        became = _parse_time(ready.get("lastTransitionTime"))
        if created is not None and became is not None and became >= created:
            measured[name] = (became - created).total_seconds()
    return measured


def cold_start_condition(
    ais: AIService, desired: Desired, revisions: Iterable[Mapping[str, Any]], now: datetime
) -> dict[str, Any] | None:
    """`ColdStartWithinTimeout`, once a revision of the spec has been measured: False when
    it took longer to become ready than an event may wait (the revision's timeoutSeconds or
    a delivery attempt's timeout, the shorter) and minScale 0 lets the service scale to zero,
    so the first events after an idle period time out while the model loads."""
    measured = startup_seconds(revisions, desired.revision_names.values())
    if not measured:
        return None
    slowest, seconds = max(measured.items(), key=lambda item: item[1])
    spec = ais.spec
    limit = min(float(spec.function.timeout_seconds), parse_iso8601(spec.delivery.timeout))
    gen = ais.generation
    if spec.autoscaling.min_scale > 0:
        message = f"minScale {spec.autoscaling.min_scale}: no event waits for a cold start"
        return condition(COLD_START, "True", REASON_WARM, message, now=now, observed_generation=gen)
    if seconds <= limit:
        message = f"slowest cold start {seconds:.0f}s ({slowest}) is within {limit:.0f}s"
        return condition(
            COLD_START, "True", REASON_COLD_START_FITS, message, now=now, observed_generation=gen
        )
    message = (
        f"revision {slowest} took {seconds:.0f}s to become ready, longer than an event may wait "
        f"({limit:.0f}s: spec.function.timeoutSeconds / spec.delivery.timeout); with "
        "spec.autoscaling.minScale 0 events that arrive at zero pods time out: set minScale "
        "to 1 or raise the timeouts"
    )
    return condition(
        COLD_START, "False", REASON_SLOW_COLD_START, message, now=now, observed_generation=gen
    )


_DEFAULT_CHANNEL_CONFIG = "config-br-default-channel"


def broker_conditions(
    ais: AIService, live: Mapping[str, Any] | None, now: datetime
) -> list[dict[str, Any]]:
    """`BrokerDurable` from the class of the Broker the Triggers use, and with
    spec.managedBroker, `BrokerManaged` (False naming both classes on a conflict)."""
    gen = ais.generation
    where = f"Broker {ais.namespace}/{ais.spec.broker}"

    def cond(type_: str, status: ConditionStatus, reason: str, message: str) -> dict[str, Any]:
        return condition(type_, status, reason, message, now=now, observed_generation=gen)

    if live is None:
        return [
            cond(
                BROKER_DURABLE,
                "Unknown",
                "BrokerNotFound",
                f"{where} does not exist: its Triggers cannot become ready (create it, or set "
                "spec.managedBroker to have the operator create it)",
            )
        ]
    actual = broker_class(live)
    config = ((live.get("spec") or {}).get("config") or {}).get("name", "")
    if actual in DURABLE_CLASSES:
        store = "RabbitMQ queues" if actual == "RabbitMQBroker" else "Kafka topics"
        durable = cond(
            BROKER_DURABLE,
            "True",
            "DurableBroker",
            f"{where} is a {actual} Broker: events are kept in {store} and survive restarts",
        )
    elif actual == "MTChannelBasedBroker" and config in ("", _DEFAULT_CHANNEL_CONFIG):
        durable = cond(
            BROKER_DURABLE,
            "False",
            "InMemory",
            f"{where} is an MTChannelBasedBroker on the default channel (InMemoryChannel unless "
            "the cluster changed it): events in flight are lost when its dispatcher restarts; "
            "choose Kafka or RabbitMQBroker for durability",
        )
    else:
        durable = cond(
            BROKER_DURABLE,
            "Unknown",
            "ChannelBased" if actual == "MTChannelBasedBroker" else "UnknownClass",
            f"{where} is a {actual} Broker"
            + (f" with channel template {config}" if config else "")
            + ": durable only if its channel is (e.g. a KafkaChannel)",
        )
    out = [durable]
    managed = ais.spec.managed_broker
    if managed is not None:
        conflict = broker_conflict(ais, live)
        if conflict:
            out.append(cond(BROKER_MANAGED, "False", "BrokerClassConflict", conflict))
        elif is_managed_broker(live):
            out.append(
                cond(
                    BROKER_MANAGED,
                    "True",
                    "Managed",
                    f"{where} ({actual}) is managed: deleted once no AIService uses it",
                )
            )
        else:
            out.append(
                cond(
                    BROKER_MANAGED,
                    "True",
                    "ExistingBroker",
                    f"{where} ({actual}) existed already: used, never changed nor deleted",
                )
            )
    return out


def summarize_status(
    ais: AIService,
    desired: Desired,
    knative_service_status: Mapping[str, Any] | None,
    now: datetime,
    previous_status: Mapping[str, Any] | None = None,
    *,
    revisions: Iterable[Mapping[str, Any]] = (),
    extra_conditions: Iterable[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """The status fields the operator owns: observedGeneration, conditions, url, traffic.
    `extra_conditions` (e.g. `broker_conditions`) are merged in too.

    `Ready` comes from the revisions and Knative; `RolloutProgressing` and `Degraded` from
    the rollout state in `previous_status["rollout"]`. `rollout` and `deadLetters` are not
    touched: the caller merges this into the previous status."""
    previous = previous_status or {}
    state = knative_state(knative_service_status, revisions)
    old = previous.get("conditions") or ()
    had_rollout = find_condition(old, ROLLOUT_PROGRESSING) is not None
    revisions = list(revisions)
    updates = [
        _ready_condition(ais, desired, state, now),
        *rollout_conditions(ais, previous.get("rollout"), now, had_rollout),
    ]
    cold = cold_start_condition(ais, desired, revisions, now)
    if cold is not None:
        updates.append(cold)
    updates += [dict(c) for c in extra_conditions]
    conditions = merge_conditions(old, updates)
    return {
        "observedGeneration": ais.generation,
        "conditions": conditions,
        "url": state.url,
        "traffic": status_traffic(ais, desired, state),
    }


def invalid_spec_status(
    error: SpecError,
    generation: int,
    now: datetime,
    previous_status: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Status for an AIService that cannot be compiled: Ready False, InvalidSpec, and the
    offending fields in the message. What is running keeps running (url/traffic kept)."""
    message = "; ".join(f"{path}: {text}" for path, text in error.errors)
    return _not_ready_status(REASON_INVALID_SPEC, message, generation, now, previous_status)


def name_conflict_status(
    conflict: str,
    generation: int,
    now: datetime,
    previous_status: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Status for an AIService whose Knative Service name is taken by an object it does not
    own (`compile.ownership_conflict`): Ready False, NameConflict, nothing applied."""
    return _not_ready_status(REASON_NAME_CONFLICT, conflict, generation, now, previous_status)


def feature_disabled_status(
    message: str,
    generation: int,
    now: datetime,
    previous_status: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Status for an AIService whose pods need Knative feature flags that are off
    (`features.disabled`): Ready False, KnativeFeatureDisabled naming each flag; nothing
    applied, since Knative would refuse the revision."""
    return _not_ready_status(REASON_FEATURE_DISABLED, message, generation, now, previous_status)


def _not_ready_status(
    reason: str,
    message: str,
    generation: int,
    now: datetime,
    previous_status: Mapping[str, Any] | None,
) -> dict[str, Any]:
    previous = previous_status or {}
    ready = condition(READY, "False", reason, message, now=now, observed_generation=generation)
    return {
        "observedGeneration": generation,
        "conditions": merge_conditions(previous.get("conditions") or (), [ready]),
    }


# --- Kubernetes Events ---------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event to post about an AIService."""

    type: Literal["Normal", "Warning"]
    reason: str
    message: str


def _routed(status: Mapping[str, Any]) -> dict[str, int]:
    """Percent per model (or revision) that status.traffic routes, tags merged."""
    split: dict[str, int] = {}
    for target in status.get("traffic") or ():
        if target.get("percent"):
            key = str(target.get("model") or target.get("revisionName"))
            split[key] = split.get(key, 0) + int(target["percent"])
    return split


def transition_events(
    previous: Mapping[str, Any],
    status: Mapping[str, Any],
    *,
    service_action: str,
    trigger_actions: Mapping[str, str],
    knative_failed: bool = False,
) -> list[Event]:
    """The Events a user watches for, from one reconcile's before and after.

    Routine steps are left out, so a new AIService costs a few Events, not one per step:
    the creation (Service and Triggers in one Event), each revision once it is routable,
    a traffic change once traffic already flowed, and Ready changes that matter (Ready,
    or a failure; waiting for a revision or for Knative to catch up is not news).
    """
    events: list[Event] = []
    changed = sorted(n for n, action in trigger_actions.items() if action != "unchanged")
    if service_action == "created":
        made = f" and Triggers {', '.join(changed)}" if changed else ""
        events.append(Event("Normal", "Created", f"created the Knative Service{made}"))
    elif changed:
        summary = ", ".join(f"{n} {trigger_actions[n]}" for n in changed)
        events.append(Event("Normal", "TriggersApplied", summary))
    before = {t.get("revisionName") for t in previous.get("traffic") or ()}
    announced: set[str] = set()
    for target in status.get("traffic") or ():
        revision = target.get("revisionName")
        if revision and revision not in before and revision not in announced:
            announced.add(revision)
            events.append(
                Event(
                    "Normal",
                    "RevisionReady",
                    f"revision {revision} of model {target.get('model')} is ready and routable",
                )
            )
    old_split, split = _routed(previous), _routed(status)
    if old_split and split and split != old_split:
        shown = ", ".join(f"{m}: {p}%" for m, p in sorted(split.items()))
        events.append(Event("Normal", "TrafficShifted", shown))
    old = find_condition(previous.get("conditions") or (), READY) or {}
    new = find_condition(status.get("conditions") or (), READY) or {}
    if new and (old.get("status"), old.get("reason")) != (new.get("status"), new.get("reason")):
        routine = new.get("reason") == REASON_REVISION_PENDING or (
            new.get("reason") == REASON_KNATIVE_NOT_READY and not knative_failed
        )
        if new.get("status") == "True":
            events.append(Event("Normal", str(new.get("reason") or READY), str(new["message"])))
        elif not routine:
            events.append(
                Event("Warning", str(new.get("reason") or READY), str(new.get("message") or ""))
            )
    return events
