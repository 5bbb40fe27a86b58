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
import math
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml
from aiservice_functions import contract

from aiservice_operator.core import names as naming
from aiservice_operator.core.spec import (
    API_GROUP,
    API_VERSION,
    CLAIM_CHECK_SECRET_KEYS,
    KIND,
    AIService,
    ClaimCheck,
    Consume,
    Filter,
    Function,
    Model,
)

MANAGED_BY = "aiservice-operator"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_NAME = "aiservice.dev/name"
LABEL_MODEL = "aiservice.dev/model"
LABEL_ROLE = "aiservice.dev/role"
"""On Triggers: `primary` for the one serving a consumes entry, `shadow` for its mirror,
`decision-inputs` / `decision-replies` / `decision-feedback` / `decision-shadow` (a shadow
canary's answers) for the ones feeding the decision log."""
ROLE_DECISION_INPUTS = "decision-inputs"
ROLE_DECISION_REPLIES = "decision-replies"
ROLE_DECISION_FEEDBACK = "decision-feedback"
ROLE_DECISION_SHADOW = "decision-shadow"
DECISION_ROLES = (
    ROLE_DECISION_INPUTS,
    ROLE_DECISION_REPLIES,
    ROLE_DECISION_FEEDBACK,
    ROLE_DECISION_SHADOW,
)
LABEL_MANAGED_BROKER = "aiservice.dev/managed-broker"
"""On a Broker the operator created: it is shared, so it carries no `aiservice.dev/name`."""
ANNOTATION_BROKER_CLASS = "eventing.knative.dev/broker.class"
DURABLE_CLASSES = ("Kafka", "KafkaNamespaced", "RabbitMQBroker")
"""Broker classes that keep events in a durable log or queue (Kafka topics, RabbitMQ)."""

SERVING_API = "serving.knative.dev/v1"
EVENTING_API = "eventing.knative.dev/v1"
CONTAINER_NAME = "function"
CONTAINER_PORT = contract.DEFAULT_PORT
DEFAULT_CPU = "2"
"""CPU request and limit of a function container whose spec names no CPU: the runtime
starts one worker process per CPU, and two workers are what the serving benchmark
measured (a batch per core; the HTTP work of a small model on both cores)."""
TAG_STABLE = "stable"
TAG_CANARY = "canary"
RESERVED_TAGS = (TAG_STABLE, TAG_CANARY)
HASH_LENGTH = 8

ANNOTATION_MIN_SCALE = "autoscaling.knative.dev/min-scale"
ANNOTATION_MAX_SCALE = "autoscaling.knative.dev/max-scale"
ANNOTATION_METRIC = "autoscaling.knative.dev/metric"
ANNOTATION_TARGET = "autoscaling.knative.dev/target"
ANNOTATION_PROGRESS_DEADLINE = "serving.knative.dev/progress-deadline"

TMP_VOLUME = "aisvc-tmp"
CACHE_VOLUME = "aisvc-model-cache"
TMP_DIR = contract.POD_TMP_DIR
MODEL_CACHE_DIR = contract.POD_MODEL_CACHE_DIR
STARTUP_PERIOD_SECONDS = 5
PROGRESS_MARGIN_SECONDS = 120
"""Beyond the model's startup time, the progress deadline leaves this for scheduling and
the image pull."""


@dataclass(frozen=True)
class CompileOptions:
    """Cluster facts the compiler cannot read from the AIService."""

    event_store_url: str = "http://aiservice-event-store.aiservice-system.svc.cluster.local"
    """Base URL of the event store; default dead-letter sinks point below it."""
    cluster_domain: str = "cluster.local"
    sink_key: bytes | None = field(default=None, repr=False)
    """Key of the ingest credential in default dead-letter sink URLs (see
    `contract.sink_credential`); without it the URLs carry none (an open store)."""


@dataclass(frozen=True)
class Desired:
    """Everything the executor applies for one AIService, in one consistent snapshot."""

    service: dict[str, Any]
    """serving.knative.dev/v1 Service; its template is the model being rolled now."""
    triggers: tuple[dict[str, Any], ...]
    """eventing.knative.dev/v1 Triggers: one per consumes entry, then the shadow ones, then
    the decision log's."""
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
    broker: dict[str, Any] | None = None
    """eventing.knative.dev/v1 Broker to create when missing (`spec.managedBroker`)."""

    def objects(self) -> list[dict[str, Any]]:
        """The objects to apply: the managed Broker, the Service, the Triggers."""
        return [*([self.broker] if self.broker else []), self.service, *self.triggers]


# --- Names, labels, owner ------------------------------------------------------------


def _digest(value: Any) -> str:
    """Short, stable hash of a JSON-able value (key order never matters)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()[:HASH_LENGTH]


def child_labels(ais: AIService) -> dict[str, str]:
    """Labels every child object carries, so it can be found from its AIService."""
    return {LABEL_MANAGED_BY: MANAGED_BY, LABEL_NAME: ais.name}


def service_name(ais: AIService) -> str:
    """The Knative Service's name: the AIService's, shortened past 40 characters."""
    return naming.service_name(ais.name)


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


def _resources(fn: Function) -> dict[str, dict[str, str]]:
    """The container's resources: the spec's, with ``DEFAULT_CPU`` when it names no CPU."""
    resources = {kind: dict(values) for kind, values in fn.resources.items() if values}
    if not any("cpu" in values for values in resources.values()):
        resources.setdefault("requests", {})["cpu"] = DEFAULT_CPU
        resources.setdefault("limits", {})["cpu"] = DEFAULT_CPU
    return resources


def _cpus(quantity: str) -> float | None:
    """A Kubernetes CPU quantity ("2", "1.5", "500m") in CPUs; None if unreadable."""
    text = quantity.strip()
    try:
        return float(text[:-1]) / 1000 if text.endswith("m") else float(text)
    except ValueError:
        return None


def _workers(fn: Function) -> int | None:
    """Worker processes for the runtime: the CPU limit (else request) rounded up, at most
    the container's concurrency. Set explicitly because without a limit the container
    cannot tell its share from the node's cores."""
    resources = _resources(fn)
    quantity = resources.get("limits", {}).get("cpu") or resources.get("requests", {}).get("cpu")
    cpus = _cpus(quantity) if quantity else None
    if cpus is None or cpus <= 0:
        return None
    workers = max(1, math.ceil(cpus - 1e-9))
    return min(workers, fn.concurrency) if fn.concurrency else workers


def _env(ais: AIService, model: Model) -> list[dict[str, Any]]:
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
    workers = _workers(fn)
    if workers is not None:
        runtime.append((contract.ENV_WORKERS, str(workers)))
    # The GPU the pod asks for (resources) is used when torch sees it, CPU otherwise:
    # nothing else in the manifest is device-specific.
    runtime.append((contract.ENV_DEVICE, contract.DEFAULT_DEVICE))
    runtime += _claim_check_env(fn.claim_check)
    # The root file system is read-only: temp files and downloads go to the emptyDirs.
    runtime += [("TMPDIR", TMP_DIR), (contract.ENV_MODEL_CACHE_DIR, MODEL_CACHE_DIR)]
    # User variables last and in their declared order: `$(VAR)` may refer to earlier ones.
    # An empty value is left out, as the API server stores it (else every read would differ
    # from what was written, and Knative refuses a template rewrite under the same name).
    runtime_env = [{"name": k, "value": v} if v else {"name": k} for k, v in runtime]
    user_env = [{k: v for k, v in e.items() if not (k == "value" and v == "")} for e in fn.env]
    secret_env: list[dict[str, Any]] = []
    if fn.claim_check is not None and fn.claim_check.secret_name:
        secret_env = [
            {"name": var, "valueFrom": {"secretKeyRef": {"name": fn.claim_check.secret_name,
                                                         "key": key}}}
            for var, key in CLAIM_CHECK_SECRET_KEYS.items()
        ]  # fmt: skip
    return runtime_env + secret_env + user_env


def _claim_check_env(cc: ClaimCheck | None) -> list[tuple[str, str]]:
    """`spec.function.claimCheck` as the runtime reads it (``AISVC_CLAIMCHECK_*``)."""
    if cc is None:
        return []
    env = [
        (contract.ENV_CLAIMCHECK_BUCKET, cc.bucket),
        (contract.ENV_CLAIMCHECK_MAX_BYTES, str(cc.max_bytes)),
        (contract.ENV_CLAIMCHECK_TIMEOUT_SECONDS, str(cc.timeout_seconds)),
    ]
    optional = (
        (contract.ENV_CLAIMCHECK_ENDPOINT, cc.endpoint),
        (contract.ENV_CLAIMCHECK_PREFIX, cc.prefix),
        (contract.ENV_CLAIMCHECK_CONTENT_TYPES, ",".join(cc.content_types)),
        (contract.ENV_CLAIMCHECK_ALLOW_HOSTS, ",".join(cc.allow_hosts)),
    )
    return env + [(name, value) for name, value in optional if value]


def _security_context(fn: Function) -> dict[str, Any]:
    sc = fn.security_context
    out: dict[str, Any] = {
        "allowPrivilegeEscalation": sc.allow_privilege_escalation,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": sc.read_only_root_filesystem,
        "runAsNonRoot": sc.run_as_non_root,
        "seccompProfile": {"type": sc.seccomp_profile},
    }
    if sc.run_as_user is not None:
        out["runAsUser"] = sc.run_as_user
    if sc.run_as_group is not None:
        out["runAsGroup"] = sc.run_as_group
    return out


def _mount_read_only(volume: Mapping[str, Any], mount: Mapping[str, Any]) -> bool:
    """Knative lets only emptyDirs and writable claims be mounted read-write."""
    if "emptyDir" in volume:
        return bool(mount.get("readOnly", False))
    claim = volume.get("persistentVolumeClaim")
    if claim is not None and not claim.get("readOnly"):
        return bool(mount.get("readOnly", False))
    return True


def _volumes(fn: Function) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(pod volumes, container mounts): the runtime's writable directories, then the user's."""
    cache = fn.model_cache_volume or CACHE_VOLUME
    volumes: list[dict[str, Any]] = [{"name": TMP_VOLUME, "emptyDir": {}}]
    if not fn.model_cache_volume:
        volumes.append({"name": CACHE_VOLUME, "emptyDir": {}})
    volumes += [json.loads(json.dumps(v)) for v in fn.volumes]
    mounts: list[dict[str, Any]] = [
        {"name": TMP_VOLUME, "mountPath": TMP_DIR},
        {"name": cache, "mountPath": MODEL_CACHE_DIR},
    ]
    by_name = {v["name"]: v for v in fn.volumes}
    for mount in fn.volume_mounts:
        mounts.append(
            {
                "name": mount["name"],
                "mountPath": mount["mountPath"],
                "readOnly": _mount_read_only(by_name[mount["name"]], mount),
            }
        )
    return volumes, mounts


def _pod_fields(fn: Function) -> dict[str, Any]:
    """Identity and scheduling fields of the revision's pod spec, only those set."""
    out: dict[str, Any] = {}
    if fn.service_account_name:
        out["serviceAccountName"] = fn.service_account_name
    if fn.image_pull_secrets:
        out["imagePullSecrets"] = [{"name": n} for n in fn.image_pull_secrets]
    if fn.node_selector:
        out["nodeSelector"] = dict(fn.node_selector)
    if fn.tolerations:
        out["tolerations"] = [dict(t) for t in fn.tolerations]
    if fn.affinity:
        out["affinity"] = json.loads(json.dumps(fn.affinity))
    if fn.runtime_class_name:
        out["runtimeClassName"] = fn.runtime_class_name
    return out


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
    if fn.env_from:
        container["envFrom"] = [json.loads(json.dumps(e)) for e in fn.env_from]
    container["resources"] = _resources(fn)
    annotations = {
        ANNOTATION_MIN_SCALE: str(scale.min_scale),
        ANNOTATION_MAX_SCALE: str(scale.max_scale),
        ANNOTATION_METRIC: scale.metric,
        ANNOTATION_TARGET: str(scale.target),
    }
    if fn.startup_timeout_seconds:
        # A slow model load is neither killed by the liveness probe nor failed by Knative:
        # the startup probe holds the other probes back, the progress deadline waits.
        # Knative fills in the port of readiness and liveness probes, not of a startup
        # probe: the pod is refused with port 0 unless it is named (seen on Knative 1.22).
        container["startupProbe"] = {
            "httpGet": {"path": contract.PATH_LIVENESS, "port": CONTAINER_PORT},
            "periodSeconds": STARTUP_PERIOD_SECONDS,
            "failureThreshold": math.ceil(fn.startup_timeout_seconds / STARTUP_PERIOD_SECONDS),
        }
        deadline = fn.startup_timeout_seconds + PROGRESS_MARGIN_SECONDS
        annotations[ANNOTATION_PROGRESS_DEADLINE] = f"{deadline}s"
    volumes, mounts = _volumes(fn)
    container["securityContext"] = _security_context(fn)
    container["volumeMounts"] = mounts
    return {
        "metadata": {
            "labels": {**child_labels(ais), LABEL_MODEL: model.name},
            "annotations": annotations,
        },
        "spec": {
            **_pod_fields(fn),
            "containerConcurrency": fn.concurrency,
            "timeoutSeconds": fn.timeout_seconds,
            "containers": [container],
            "volumes": volumes,
        },
    }


def revision_name(ais: AIService, model_name: str) -> str:
    """`<service>-<model>-<hash8 of the pod template>`: a new name exactly when the pod
    changes (`names.revision_name` cuts a model name too long for 63 characters)."""
    body = _template_body(ais, ais.spec.model(model_name))
    return naming.revision_name(service_name(ais), model_name, _digest(body))


def model_tag(model: str) -> str:
    """The traffic tag that routes to one model's revision."""
    return naming.model_tag(model)


def revision_template(ais: AIService, model_name: str) -> dict[str, Any]:
    """The full, named revision template of one model version."""
    body = _template_body(ais, ais.spec.model(model_name))
    name = naming.revision_name(service_name(ais), model_name, _digest(body))
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
        targets.append(
            {"revisionName": names[model.name], "percent": percent, "tag": model_tag(model.name)}
        )
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
    """`<service>-<hash8 of type+filters>`: reordering filters keeps the name."""
    return naming.trigger_name(service_name(ais), _digest(_trigger_filters(consume)))


def shadow_trigger_name(ais: AIService, consume: Consume) -> str:
    """`<service>-shadow-<hash8>`: the mirror of `trigger_name`'s Trigger. The role is hashed
    too, so it never equals the primary Trigger of an AIService called `<name>-shadow`."""
    digest = _digest({"shadow": _trigger_filters(consume)})
    return naming.trigger_name(service_name(ais), digest, "shadow")


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
    return {"uri": base + contract.dead_letter_path(ais.namespace, ais.name, options.sink_key)}


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
    return f"http://{TAG_CANARY}-{service_name(ais)}.{ais.namespace}.svc.{options.cluster_domain}"


def _trigger(ais: AIService, consume: Consume, options: CompileOptions) -> dict[str, Any]:
    return {
        "apiVersion": EVENTING_API,
        "kind": "Trigger",
        "metadata": _metadata(ais, trigger_name(ais, consume), {LABEL_ROLE: "primary"}),
        "spec": {
            "broker": ais.spec.broker,
            "filters": _trigger_filters(consume),
            "subscriber": {
                "ref": {"apiVersion": SERVING_API, "kind": "Service", "name": service_name(ais)}
            },
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


def reply_source_prefix(ais: AIService) -> str:
    """The `source` prefix of every reply this AIService's revisions send."""
    return f"/aiservices/{ais.namespace}/{ais.name}/"


def decision_sink(ais: AIService, role: str, options: CompileOptions) -> str:
    """The event store URL one part of the decision log is delivered to. The AIService's
    `spec.decisionLog` settings travel in the query, so the store needs no other config
    and the local executor and a cluster store the same records."""
    log = ais.spec.decision_log
    query: list[tuple[str, str]] = [
        ("sample", repr(log.sample_rate)),
        ("data", "true" if log.include_data else "false"),
        ("retention", str(log.retention_seconds)),
        *(("redact", path) for path in log.redact),
    ]
    base = options.event_store_url.rstrip("/")
    encoded = "&".join(f"{key}={_query_value(value)}" for key, value in query)
    path = contract.decisions_path(ais.namespace, ais.name, role, options.sink_key)
    return f"{base}{path}?{encoded}"


_QUERY_ESCAPES = str.maketrans({"$": "%24", "[": "%5B", "]": "%5D", "*": "%2A"})


def _query_value(value: str) -> str:
    """Percent-encode a query value. Values here are numbers, booleans and JSON paths
    (`spec.REDACT_PATH`), so only `$`, `[`, `]` and `*` need it (the core does no I/O,
    so no urllib)."""
    return value.translate(_QUERY_ESCAPES)


def _decision_delivery() -> dict[str, Any]:
    """Retried, never dead-lettered: a decision-log delivery that fails must not count as
    a dead letter of the service (canary analysis reads those)."""
    return {
        "retry": 5,
        "backoffPolicy": "exponential",
        "backoffDelay": "PT0.5S",
        "timeout": "PT10S",
    }


def _decision_trigger(
    ais: AIService, part: str, role: str, filters: list[dict[str, Any]], options: CompileOptions
) -> dict[str, Any]:
    """One Trigger delivering what ``filters`` select to the decision ingest's ``part``."""
    return {
        "apiVersion": EVENTING_API,
        "kind": "Trigger",
        "metadata": _metadata(
            ais,
            naming.trigger_name(service_name(ais), _digest({part: filters}), "log"),
            {LABEL_ROLE: role},
        ),
        "spec": {
            "broker": ais.spec.broker,
            "filters": filters,
            "subscriber": {"uri": decision_sink(ais, part, options)},
            "delivery": _decision_delivery(),
        },
    }


def _decision_triggers(ais: AIService, options: CompileOptions) -> list[dict[str, Any]]:
    """Copies of what the service consumes, of its replies and of the feedback on them,
    off the broker, to the event store's decision ingest: nothing is added to the
    function's own path."""
    if not ais.spec.decision_log.enabled:
        return []
    triggers = [
        _decision_trigger(ais, "inputs", ROLE_DECISION_INPUTS, _trigger_filters(c), options)
        for c in ais.spec.consumes
    ]
    if ais.spec.produces:
        replies = [
            {"exact": {"type": ais.spec.produces}},
            {"prefix": {"source": reply_source_prefix(ais)}},
        ]
        triggers.append(_decision_trigger(ais, "replies", ROLE_DECISION_REPLIES, replies, options))
        if ais.spec.rollout is not None and ais.spec.rollout.shadow:
            # A shadow canary's answers, under a type no consumer subscribes to: the
            # rollout's agreement and drift checks compare them with the stable's.
            shadow = [
                {"exact": {"type": contract.SHADOW_REPLY_TYPE}},
                {"prefix": {"source": reply_source_prefix(ais)}},
            ]
            triggers.append(_decision_trigger(ais, "shadow", ROLE_DECISION_SHADOW, shadow, options))
    feedback = [  # Knative allows one attribute per `exact`
        {"exact": {"type": contract.FEEDBACK_TYPE}},
        {"exact": {contract.EXT_FEEDBACK_FOR: ais.name}},
    ]
    triggers.append(_decision_trigger(ais, "feedback", ROLE_DECISION_FEEDBACK, feedback, options))
    return triggers


# --- The managed Broker --------------------------------------------------------------


def broker_owner_reference(ais: AIService) -> dict[str, Any]:
    """A non-controller ownerReference: the garbage collector deletes the shared Broker once
    every AIService using it is gone, and never while one remains."""
    return {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": KIND,
        "name": ais.name,
        "uid": ais.uid,
        "controller": False,
        "blockOwnerDeletion": False,
    }


def managed_broker(ais: AIService) -> dict[str, Any] | None:
    """The Broker `spec.managedBroker` asks for (None without one)."""
    managed = ais.spec.managed_broker
    if managed is None:
        return None
    metadata: dict[str, Any] = {
        "name": ais.spec.broker,
        "namespace": ais.namespace,
        "labels": {LABEL_MANAGED_BY: MANAGED_BY, LABEL_MANAGED_BROKER: "true"},
        "annotations": {ANNOTATION_BROKER_CLASS: managed.broker_class},
    }
    if ais.uid:
        metadata["ownerReferences"] = [broker_owner_reference(ais)]
    spec: dict[str, Any] = {}
    if managed.config is not None:
        config = {
            "apiVersion": managed.config.api_version,
            "kind": managed.config.kind,
            "name": managed.config.name,
        }
        if managed.config.namespace:
            config["namespace"] = managed.config.namespace
        spec["config"] = config
    return {"apiVersion": EVENTING_API, "kind": "Broker", "metadata": metadata, "spec": spec}


def broker_class(broker: Mapping[str, Any]) -> str:
    """A live Broker's class; without the annotation, Knative's default class."""
    annotations = (broker.get("metadata") or {}).get("annotations") or {}
    return str(annotations.get(ANNOTATION_BROKER_CLASS) or "MTChannelBasedBroker")


def broker_conflict(ais: AIService, live: Mapping[str, Any] | None) -> str:
    """Why an existing Broker does not match `spec.managedBroker` ('' when it does, or when
    nothing is asked): another class. It is used as it is and never changed."""
    managed = ais.spec.managed_broker
    if managed is None or live is None:
        return ""
    actual = broker_class(live)
    if actual == managed.broker_class:
        return ""
    return (
        f"Broker {ais.namespace}/{ais.spec.broker} exists with class {actual}, but "
        f"spec.managedBroker asks for {managed.broker_class}: it is left as it is (delete it "
        "to have it recreated, or name another broker in spec.broker)"
    )


def is_managed_broker(live: Mapping[str, Any]) -> bool:
    labels = (live.get("metadata") or {}).get("labels") or {}
    return labels.get(LABEL_MANAGED_BROKER) == "true" and labels.get(LABEL_MANAGED_BY) == MANAGED_BY


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
        "metadata": _metadata(ais, service_name(ais)),
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
    triggers += _decision_triggers(ais, options)
    return Desired(
        service=service,
        triggers=tuple(triggers),
        revisions={names[m.name]: templates[m.name] for m in ais.spec.models},
        weights=routed,
        template_model=template_model,
        pending_models=pending,
        revision_names=names,
        broker=managed_broker(ais),
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
