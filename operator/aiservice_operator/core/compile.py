"""Compile an AIService into the Knative objects that serve it.

One Knative Service per AIService; one immutable Revision per model version, named after a
hash of its pod template, so any change to what a version runs yields a new revision name
and nothing else does; traffic routed by revision name with tags; one Trigger per consumed
event type. The compiler never asks the cluster anything: the caller tells it which
revisions are ready, and it points traffic only at those (revision-before-traffic), rolling
the Service template through the versions that still need a revision.

Pure: no I/O, no clock. Same input, byte-identical output (`to_yaml` sorts keys).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml
from aiservice_functions import contract

from aiservice_operator.core.spec import (
    API_GROUP,
    API_VERSION,
    KIND,
    AIService,
    Consume,
    Filter,
    Model,
)

MANAGED_BY = "aiservice-operator"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_NAME = "aiservice.dev/name"
LABEL_MODEL = "aiservice.dev/model"
LABEL_ROLE = "aiservice.dev/role"
"""On Triggers: `primary` for the one serving a consumes entry, `shadow` for its mirror."""

SERVING_API = "serving.knative.dev/v1"
EVENTING_API = "eventing.knative.dev/v1"
CONTAINER_NAME = "function"
CONTAINER_PORT = contract.DEFAULT_PORT
TAG_STABLE = "stable"
TAG_CANARY = "canary"
RESERVED_TAGS = (TAG_STABLE, TAG_CANARY)
HASH_LENGTH = 8

ANNOTATION_MIN_SCALE = "autoscaling.knative.dev/min-scale"
ANNOTATION_MAX_SCALE = "autoscaling.knative.dev/max-scale"
ANNOTATION_METRIC = "autoscaling.knative.dev/metric"
ANNOTATION_TARGET = "autoscaling.knative.dev/target"


@dataclass(frozen=True)
class CompileOptions:
    """Cluster facts the compiler cannot read from the AIService."""

    event_store_url: str = "http://aiservice-event-store.aiservice-system.svc.cluster.local"
    """Base URL of the event store; default dead-letter sinks point below it."""
    cluster_domain: str = "cluster.local"


@dataclass(frozen=True)
class Desired:
    """Everything the executor applies for one AIService, in one consistent snapshot."""

    service: dict[str, Any]
    """serving.knative.dev/v1 Service; its template is the model being rolled now."""
    triggers: tuple[dict[str, Any], ...]
    """eventing.knative.dev/v1 Triggers: one per consumes entry, then the shadow ones."""
    revisions: Mapping[str, dict[str, Any]]
    """Revision name -> full template (metadata + spec) of every declared model."""
    weights: Mapping[str, int]
    """Model name -> percent that `service.spec.traffic` actually routes to it."""
    template_model: str
    """The model whose template `service.spec.template` carries."""
    pending_models: tuple[str, ...]
    """Models whose revision is not ready yet, in the order the template rolls them."""
    revision_names: Mapping[str, str] = field(default_factory=dict)
    """Model name -> revision name (the inverse of `revisions`)."""

    def objects(self) -> list[dict[str, Any]]:
        """The objects to apply, Service first."""
        return [self.service, *self.triggers]


# --- Names, labels, owner ------------------------------------------------------------


def _digest(value: Any) -> str:
    """Short, stable hash of a JSON-able value (key order never matters)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()[:HASH_LENGTH]


def child_labels(ais: AIService) -> dict[str, str]:
    """Labels every child object carries, so it can be found from its AIService."""
    return {LABEL_MANAGED_BY: MANAGED_BY, LABEL_NAME: ais.name}


def owner_reference(ais: AIService) -> dict[str, Any]:
    """The controller ownerReference: children are garbage-collected with the AIService."""
    return {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": KIND,
        "name": ais.name,
        "uid": ais.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def ownership_conflict(ais: AIService, kind: str, live: Mapping[str, Any] | None) -> str:
    """Why an existing object under a child's name is not this AIService's to manage ('' when
    it is): controlled by another owner, or made by someone else (without this operator's
    labels for this AIService). Taking it over would overwrite it, and the ownerReference
    would have it garbage-collected with the AIService. An orphan of this operator's (its
    labels, no controller, e.g. after `kubectl delete --cascade=orphan`) is adopted."""
    if live is None:
        return ""
    meta = live.get("metadata") or {}
    name = meta.get("name", "")
    refs = [r for r in meta.get("ownerReferences") or [] if isinstance(r, Mapping)]
    if ais.uid and any(r.get("uid") == ais.uid for r in refs):
        return ""
    controller = next((r for r in refs if r.get("controller")), None)
    if controller is not None:
        return (
            f"{kind} {name} exists and is controlled by {controller.get('kind', '?')} "
            f"{controller.get('name', '?')} (uid {controller.get('uid', '?')}): "
            "delete it or rename the AIService"
        )
    labels = meta.get("labels") or {}
    if not all(labels.get(k) == v for k, v in child_labels(ais).items()):
        return (
            f"{kind} {name} exists and is not managed by {MANAGED_BY}: "
            "delete it or rename the AIService"
        )
    return ""


def _metadata(ais: AIService, name: str, extra_labels: Mapping[str, str] = {}) -> dict[str, Any]:
    """Child metadata; an AIService read from a file has no uid yet, so it owns nothing."""
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": ais.namespace,
        "labels": {**child_labels(ais), **extra_labels},
    }
    if ais.uid:
        metadata["ownerReferences"] = [owner_reference(ais)]
    return metadata


# --- Revisions -----------------------------------------------------------------------


def _env(ais: AIService, model: Model) -> list[dict[str, str]]:
    spec = ais.spec
    fn = spec.function
    runtime: list[tuple[str, str]] = [
        (contract.ENV_ENTRYPOINT, fn.entrypoint),
        (contract.ENV_MODEL_URI, model.uri),
        (contract.ENV_MODEL_VERSION, model.name),
        (contract.ENV_REPLY_TYPE, spec.produces),
        (contract.ENV_SERVICE_NAME, ais.name),
        (contract.ENV_NAMESPACE, ais.namespace),
        (contract.ENV_CONCURRENCY, str(fn.concurrency)),
        (contract.ENV_TIMEOUT_SECONDS, str(fn.timeout_seconds)),
    ]
    if model.sha256:
        runtime.insert(2, (contract.ENV_MODEL_SHA256, model.sha256))
    # Batching left at 0 is left out: the function's own default applies (on for MiniLM,
    # off for a tiny tabular model, where batching costs more than it saves).
    if fn.batching.max_batch_size:
        runtime.append((contract.ENV_BATCH_MAX_SIZE, str(fn.batching.max_batch_size)))
    if fn.batching.max_wait_ms:
        runtime.append((contract.ENV_BATCH_MAX_WAIT_MS, str(fn.batching.max_wait_ms)))
    # User variables last and in their declared order: `$(VAR)` may refer to earlier ones.
    # An empty value is left out, as the API server stores it (else every read would differ
    # from what was written, and Knative refuses a template rewrite under the same name).
    return [{"name": k, "value": v} if v else {"name": k} for k, v in (*runtime, *fn.env)]


def _template_body(ais: AIService, model: Model) -> dict[str, Any]:
    """The revision template without its name: exactly what the revision hash covers."""
    spec = ais.spec
    fn = spec.function
    scale = spec.autoscaling
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": fn.image,
        "env": _env(ais, model),
        "ports": [{"name": "http1", "containerPort": CONTAINER_PORT}],
        "readinessProbe": {"httpGet": {"path": contract.PATH_READINESS}},
        "livenessProbe": {"httpGet": {"path": contract.PATH_LIVENESS}},
    }
    resources = {kind: dict(values) for kind, values in fn.resources.items() if values}
    if resources:
        container["resources"] = resources
    return {
        "metadata": {
            "labels": {**child_labels(ais), LABEL_MODEL: model.name},
            "annotations": {
                ANNOTATION_MIN_SCALE: str(scale.min_scale),
                ANNOTATION_MAX_SCALE: str(scale.max_scale),
                ANNOTATION_METRIC: scale.metric,
                ANNOTATION_TARGET: str(scale.target),
            },
        },
        "spec": {
            "containerConcurrency": fn.concurrency,
            "timeoutSeconds": fn.timeout_seconds,
            "containers": [container],
        },
    }


def revision_name(ais: AIService, model_name: str) -> str:
    """`<name>-<model>-<hash8 of the pod template>`: a new name exactly when the pod changes."""
    body = _template_body(ais, ais.spec.model(model_name))
    return f"{ais.name}-{model_name}-{_digest(body)}"


def revision_template(ais: AIService, model_name: str) -> dict[str, Any]:
    """The full, named revision template of one model version."""
    body = _template_body(ais, ais.spec.model(model_name))
    name = f"{ais.name}-{model_name}-{_digest(body)}"
    return {"metadata": {"name": name, **body["metadata"]}, "spec": body["spec"]}


# --- Traffic -------------------------------------------------------------------------


def intended_weights(ais: AIService, canary_weight: int | None = None) -> dict[str, int]:
    """Percent per model the spec asks for; with a rollout weight w: stable 100-w, canary w."""
    spec = ais.spec
    if canary_weight is not None:
        if spec.rollout is None:
            raise ValueError(f"{ais.name} has no spec.rollout, so no canary weight applies")
        if not 0 <= canary_weight <= 100:
            raise ValueError(f"canary weight must be in 0..100, not {canary_weight}")
        return {spec.traffic.stable: 100 - canary_weight, spec.rollout.canary: canary_weight}
    if spec.traffic.split:
        return {s.model: s.percent for s in spec.traffic.split}
    return {spec.traffic.stable: 100}


def _roll_order(ais: AIService) -> list[str]:
    """Stable first, then the canary, then the remaining models in declared order."""
    spec = ais.spec
    order = [spec.traffic.stable]
    if spec.rollout is not None:
        order.append(spec.rollout.canary)
    order += [m.name for m in spec.models if m.name not in order]
    return order


def _check_weights(ais: AIService, weights: Mapping[str, int]) -> None:
    declared = {m.name for m in ais.spec.models}
    unknown = sorted(set(weights) - declared)
    if unknown:
        raise ValueError(f"weights name undeclared models: {', '.join(unknown)}")
    if any(w < 0 for w in weights.values()) or sum(weights.values()) != 100:
        raise ValueError(f"weights must be non-negative and sum to 100, not {dict(weights)}")


def _traffic(
    ais: AIService,
    weights: Mapping[str, int],
    names: Mapping[str, str],
    ready: Collection[str],
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Traffic targets by revision name, only ready revisions; pending weight goes to stable."""
    spec = ais.spec
    stable = spec.traffic.stable
    if names[stable] not in ready:
        # Knative routes `latestRevision` to the latest *ready* revision: whatever served
        # before keeps serving until the stable revision is up.
        return [{"latestRevision": True, "percent": 100}], {stable: 100}
    routed = {m: w for m, w in weights.items() if w > 0 and names[m] in ready}
    routed[stable] = routed.get(stable, 0) + 100 - sum(routed.values())
    targets: list[dict[str, Any]] = [
        {"revisionName": names[stable], "percent": routed[stable], "tag": TAG_STABLE}
    ]
    role_models = {stable}
    if spec.rollout is not None and names[spec.rollout.canary] in ready:
        canary = spec.rollout.canary
        targets.append(
            {"revisionName": names[canary], "percent": routed.get(canary, 0), "tag": TAG_CANARY}
        )
        role_models.add(canary)
    for model in spec.models:
        if names[model.name] not in ready:
            continue
        percent = 0 if model.name in role_models else routed.get(model.name, 0)
        targets.append({"revisionName": names[model.name], "percent": percent, "tag": model.name})
    for target in targets:
        target["latestRevision"] = False
    actual = {m: routed.get(m, 0) for m in _roll_order(ais) if names[m] in ready}
    return targets, {m: w for m, w in actual.items() if w > 0 or m == stable}


# --- Triggers ------------------------------------------------------------------------


def _canonical_filter(f: Filter) -> dict[str, Any]:
    """A filter with and/or children in a fixed order: their order does not change meaning."""
    if f.dialect in ("all", "any"):
        children = [_canonical_filter(c) for c in f.children]
        if f.dialect == "all":  # all(all(a, b), c) is all(a, b, c)
            children = [g for c in children for g in (c["all"] if set(c) == {"all"} else [c])]
        unique = {json.dumps(c, sort_keys=True): c for c in children}
        return {f.dialect: [unique[k] for k in sorted(unique)]}
    if f.dialect == "not":
        return {"not": _canonical_filter(f.children[0])}
    return f.to_knative()  # leaves: attributes sorted, one per entry


def _trigger_filters(consume: Consume) -> list[dict[str, Any]]:
    """`spec.filters`: the type first, then the user's filters in canonical order."""
    user: list[dict[str, Any]] = []
    for f in consume.filters:
        canonical = _canonical_filter(f)
        # Top-level entries are ANDed already: an `all` there adds nothing but nesting.
        user += canonical["all"] if set(canonical) == {"all"} else [canonical]
    unique = {json.dumps(c, sort_keys=True): c for c in user}
    return [{"exact": {"type": consume.type}}, *(unique[k] for k in sorted(unique))]


def trigger_name(ais: AIService, consume: Consume) -> str:
    """`<name>-<hash8 of type+filters>`: reordering filters keeps the name."""
    return f"{ais.name}-{_digest(_trigger_filters(consume))}"


def shadow_trigger_name(ais: AIService, consume: Consume) -> str:
    """`<name>-shadow-<hash8>`: the mirror of `trigger_name`'s Trigger. The role is hashed
    too, so it never equals the primary Trigger of an AIService called `<name>-shadow`."""
    return f"{ais.name}-shadow-{_digest({'shadow': _trigger_filters(consume)})}"


def dead_letter_sink(ais: AIService, options: CompileOptions) -> dict[str, Any]:
    """The Knative Destination undeliverable events go to."""
    dead = ais.spec.dead_letter
    if dead.uri:
        return {"uri": dead.uri}
    if dead.ref is not None:
        ref = {"apiVersion": dead.ref.api_version, "kind": dead.ref.kind, "name": dead.ref.name}
        if dead.ref.namespace:
            ref["namespace"] = dead.ref.namespace
        return {"ref": ref}
    base = options.event_store_url.rstrip("/")
    return {"uri": base + contract.dead_letter_path(ais.namespace, ais.name)}


def _delivery(ais: AIService, options: CompileOptions) -> dict[str, Any]:
    d = ais.spec.delivery
    return {
        "retry": d.retry,
        "backoffPolicy": d.backoff_policy,
        "backoffDelay": d.backoff_delay,
        "timeout": d.timeout,
        "deadLetterSink": dead_letter_sink(ais, options),
    }


def canary_url(ais: AIService, options: CompileOptions) -> str:
    """Cluster-local URL of the canary tag's route."""
    return f"http://{TAG_CANARY}-{ais.name}.{ais.namespace}.svc.{options.cluster_domain}"


def _trigger(ais: AIService, consume: Consume, options: CompileOptions) -> dict[str, Any]:
    return {
        "apiVersion": EVENTING_API,
        "kind": "Trigger",
        "metadata": _metadata(ais, trigger_name(ais, consume), {LABEL_ROLE: "primary"}),
        "spec": {
            "broker": ais.spec.broker,
            "filters": _trigger_filters(consume),
            "subscriber": {"ref": {"apiVersion": SERVING_API, "kind": "Service", "name": ais.name}},
            "delivery": _delivery(ais, options),
        },
    }


def _shadow_trigger(ais: AIService, consume: Consume, options: CompileOptions) -> dict[str, Any]:
    """Mirror of a consumes entry to the canary's `/shadow` path; failures are not retried
    or dead-lettered (the canary's own error metrics count them)."""
    d = ais.spec.delivery
    return {
        "apiVersion": EVENTING_API,
        "kind": "Trigger",
        "metadata": _metadata(ais, shadow_trigger_name(ais, consume), {LABEL_ROLE: "shadow"}),
        "spec": {
            "broker": ais.spec.broker,
            "filters": _trigger_filters(consume),
            "subscriber": {"uri": canary_url(ais, options) + contract.SHADOW_PATH},
            "delivery": {"retry": 0, "timeout": d.timeout},
        },
    }


# --- The whole AIService -------------------------------------------------------------


def compile_aiservice(
    ais: AIService,
    *,
    weights: Mapping[str, int] | None = None,
    ready_revisions: Collection[str] = (),
    mirror: bool = True,
    options: CompileOptions = CompileOptions(),
) -> Desired:
    """The desired Knative objects for `ais`, given the percent per model the caller wants
    (default: `intended_weights(ais)`) and the revisions that are ready now.

    `mirror=False` drops a shadow rollout's mirror Triggers: the rollout state decides
    when mirroring ends (`rollout.mirror_active`), e.g. after a rolled-back canary."""
    wanted = dict(intended_weights(ais) if weights is None else weights)
    _check_weights(ais, wanted)
    ready = frozenset(ready_revisions)
    templates = {m.name: revision_template(ais, m.name) for m in ais.spec.models}
    names = {model: t["metadata"]["name"] for model, t in templates.items()}
    order = _roll_order(ais)
    pending = tuple(m for m in order if names[m] not in ready)
    template_model = pending[0] if pending else ais.spec.traffic.stable
    traffic, routed = _traffic(ais, wanted, names, ready)
    service = {
        "apiVersion": SERVING_API,
        "kind": "Service",
        "metadata": _metadata(ais, ais.name),
        "spec": {"template": templates[template_model], "traffic": traffic},
    }
    triggers = [_trigger(ais, c, options) for c in ais.spec.consumes]
    rollout = ais.spec.rollout
    if (
        rollout is not None
        and rollout.shadow
        and mirror
        and names[rollout.canary] in ready
        and routed.get(rollout.canary, 0) < 100
    ):
        triggers += [_shadow_trigger(ais, c, options) for c in ais.spec.consumes]
    return Desired(
        service=service,
        triggers=tuple(triggers),
        revisions={names[m.name]: templates[m.name] for m in ais.spec.models},
        weights=routed,
        template_model=template_model,
        pending_models=pending,
        revision_names=names,
    )


def steady_state(ais: AIService, options: CompileOptions = CompileOptions()) -> Desired:
    """The objects once every revision is ready and the spec's traffic is in place."""
    names = [revision_name(ais, m.name) for m in ais.spec.models]
    return compile_aiservice(ais, ready_revisions=names, options=options)


def to_yaml(objects: Iterable[Mapping[str, Any]]) -> str:
    """Objects as a multi-document YAML stream with sorted keys (byte-stable)."""
    return yaml.safe_dump_all(
        [dict(o) for o in objects], sort_keys=True, default_flow_style=False, width=100
    )
