"""One reconcile of an AIService, decided in one place: from what was read to what to write.

An executor reads, calls one function here and writes what it returns:

- the cluster handlers read the AIService, its Knative Service, Revisions and Triggers,
  its Broker and (when the spec needs one) Knative's feature flags, and call `plan`,
  which returns the objects to apply, the status to write and the Events to post (or,
  for a spec that cannot be served, only the status and Events saying why);
- the local run (`aisvc up`), which has no API server and no status, calls
  `desired_objects` for the objects alone, with the same weights and shadow rule.

The status describes the objects as they will stand once the plan is applied: the actions
on each child are predicted with the API client's own drift test (`drift`), and a Service
whose spec changes is not ready until Knative has observed the new generation.

Pure: no I/O, no clock (`now` comes in).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from aiservice_operator.core import compile as compiler
from aiservice_operator.core import conditions, features, rollout
from aiservice_operator.core.drift import contains, needs_update
from aiservice_operator.core.spec import AIService, SpecError, parse

Obj = dict[str, Any]


@dataclass(frozen=True)
class Read:
    """What a reconcile read: the AIService and the children that exist under its name."""

    body: Mapping[str, Any]
    service: Obj | None = None
    revisions: Sequence[Obj] = ()
    triggers: Sequence[Obj] = ()
    broker: Obj | None = None
    """The Broker `spec.broker` names, as it is (whether the operator manages it or not)."""
    features: Mapping[str, str] | None = None
    """Knative's `config-features` data (`None`: not there, Knative's defaults apply)."""
    features_known: bool = True
    """False when the flags could not be read: Knative's webhook judges the revision."""


@dataclass(frozen=True)
class Plan:
    """What to write for one AIService."""

    status: Obj
    """The status fields to write (only those that changed need a patch)."""
    events: tuple[conditions.Event, ...] = ()
    desired: compiler.Desired | None = None
    """The objects to apply; `None` when the AIService cannot be served as it is."""
    refusal: str | None = None
    """Why nothing is applied (an invalid spec, a name taken by another object); it stays
    so until the spec changes."""
    held: str | None = None
    """Why nothing is applied for now (a Knative feature flag that is off); a later
    reconcile reads the flags again."""
    invalid_spec: SpecError | None = None
    service_action: str = "unchanged"
    trigger_actions: Mapping[str, str] = field(default_factory=dict)


def child_selector(name: str) -> dict[str, str]:
    """Labels of every child of the AIService `name` (`compile.child_labels`), known
    before its spec is parsed, so that the reads can go out before anything is decided."""
    return {compiler.LABEL_MANAGED_BY: compiler.MANAGED_BY, compiler.LABEL_NAME: name}


def weights(ais: AIService, status_rollout: Any) -> dict[str, int] | None:
    """The traffic to compile with: the canary weight recorded in status (0 before the
    rollout starts), so that no reconcile moves traffic behind the rollout's back; without
    a rollout, the spec's (`None`)."""
    weight = rollout.canary_weight(ais.spec, status_rollout)
    return None if weight is None else compiler.intended_weights(ais, canary_weight=weight)


def desired_objects(
    ais: AIService,
    *,
    status_rollout: Any,
    ready_revisions: Collection[str],
    options: compiler.CompileOptions,
) -> compiler.Desired:
    """The Knative objects for `ais` given its rollout state: both executors call this."""
    return compiler.compile_aiservice(
        ais,
        weights=weights(ais, status_rollout),
        ready_revisions=ready_revisions,
        mirror=rollout.mirror_active(ais.spec, status_rollout),
        options=options,
    )


def plan(
    read: Read,
    *,
    now: datetime,
    options: compiler.CompileOptions,
    serving_namespace: str = features.NAMESPACE,
) -> Plan:
    """Everything one reconcile writes, from what it read."""
    meta = read.body.get("metadata") or {}
    previous: Obj = dict(read.body.get("status") or {})
    try:
        ais = parse(read.body)
    except SpecError as err:
        status = conditions.invalid_spec_status(err, meta.get("generation", 0), now, previous)
        return _refused(previous, status, f"invalid spec: {err}", invalid=err)
    conflict = compiler.ownership_conflict(ais, "Knative Service", read.service)
    if conflict:
        status = conditions.name_conflict_status(conflict, ais.generation, now, previous)
        return _refused(previous, status, conflict)
    blocked = (
        features.disabled(ais, read.features, serving_namespace) if read.features_known else ""
    )
    if blocked:
        # Knative would refuse the revision; the resync re-reads the flags once enabled.
        status = conditions.feature_disabled_status(blocked, ais.generation, now, previous)
        return replace(_refused(previous, status, ""), refusal=None, held=blocked)
    ready = conditions.knative_state(
        conditions.current_knative_status(read.service), read.revisions
    ).ready_revisions
    desired = desired_objects(
        ais, status_rollout=previous.get("rollout"), ready_revisions=ready, options=options
    )
    service_action = _service_action(read.service, desired.service)
    trigger_actions = _trigger_actions(read.triggers, desired.triggers)
    after = conditions.current_knative_status(_service_after(read.service, desired.service))
    broker = read.broker if read.broker is not None or desired.broker is None else desired.broker
    status = conditions.summarize_status(
        ais,
        desired,
        after,
        now,
        previous,
        revisions=read.revisions,
        extra_conditions=conditions.broker_conditions(ais, broker, now),
    )
    events = _broker_events(ais, read.broker, broker, desired, previous)
    events += conditions.transition_events(
        previous,
        status,
        service_action=service_action,
        trigger_actions=trigger_actions,
        knative_failed=_ready(after or {}).get("status") == "False",
    )
    return Plan(
        status=status,
        events=tuple(events),
        desired=desired,
        service_action=service_action,
        trigger_actions=trigger_actions,
    )


def _refused(
    previous: Mapping[str, Any], status: Obj, reason: str, invalid: SpecError | None = None
) -> Plan:
    """A status that stops the reconcile; a Warning Event when its Ready changed."""
    before, after = _ready(previous), _ready(status)
    events: tuple[conditions.Event, ...] = ()
    if (before.get("reason"), before.get("message")) != (after["reason"], after["message"]):
        events = (conditions.Event("Warning", after["reason"], after["message"]),)
    return Plan(status=status, events=events, refusal=reason, invalid_spec=invalid)


def _broker_events(
    ais: AIService,
    live: Obj | None,
    after: Obj | None,
    desired: compiler.Desired,
    previous: Mapping[str, Any],
) -> list[conditions.Event]:
    """A managed Broker created now, and a Broker of another class (said once, when the
    `BrokerManaged` condition turns False)."""
    events: list[conditions.Event] = []
    managed = ais.spec.managed_broker
    if live is None and desired.broker is not None and managed is not None:
        note = (
            f"created the {managed.broker_class} Broker {ais.spec.broker}, shared by the "
            "AIServices naming it"
        )
        events.append(conditions.Event("Normal", "BrokerCreated", note))
    conflict = compiler.broker_conflict(ais, after)
    before = conditions.find_condition(previous.get("conditions") or (), conditions.BROKER_MANAGED)
    if conflict and (before or {}).get("status") != "False":
        events.append(conditions.Event("Warning", "BrokerClassConflict", conflict))
    return events


def _service_action(live: Obj | None, desired: Obj) -> str:
    if live is None:
        return "created"
    return "updated" if needs_update(live, desired) else "unchanged"


def _trigger_actions(live: Sequence[Obj], desired: Sequence[Obj]) -> dict[str, str]:
    """What applying `desired` does to each Trigger, as `kube.apply_triggers` does it."""
    current = {t["metadata"]["name"]: t for t in live}
    actions: dict[str, str] = {}
    for trigger in desired:
        name = trigger["metadata"]["name"]
        found = current.get(name)
        if found is None:
            actions[name] = "created"
        elif (found.get("spec") or {}).get("broker") != trigger["spec"].get("broker"):
            actions[name] = "recreated"  # the broker of a Trigger is immutable
        else:
            actions[name] = "updated" if needs_update(found, trigger) else "unchanged"
    for name in current:
        actions.setdefault(name, "deleted")
    return actions


def _service_after(live: Obj | None, desired: Obj) -> Obj:
    """The Knative Service as the write leaves it: a new one at generation 1 without a
    status (Knative has not seen it), the next generation when its spec changes, else as
    it is."""
    if live is None:
        return {**desired, "metadata": {**desired["metadata"], "generation": 1}}
    if contains(live.get("spec"), desired.get("spec")):
        return live
    meta = dict(live.get("metadata") or {})
    meta["generation"] = int(meta.get("generation") or 0) + 1
    return {**live, "metadata": meta}


def _ready(status: Mapping[str, Any]) -> Mapping[str, Any]:
    return conditions.find_condition(status.get("conditions") or (), conditions.READY) or {}
