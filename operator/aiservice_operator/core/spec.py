"""Parsing an AIService manifest into the validated values of `resource`.

`parse()` turns a manifest (a plain mapping, as read from YAML or from the Kubernetes
API) into an `AIService`. Every rule the CRD's schema and CEL rules enforce is checked
here too, because the operator must not trust that the API server validated the object
(an older CRD, a `--validate=false` apply, a local run without any API server). Every
error names the field it is about, in the `spec.models[1].name` form `kubectl` uses.

The types themselves live in `resource`; they are re-exported here, so that
`from aiservice_operator.core.spec import AIService, parse` reads as one API.

Pure: no I/O, no clock.
"""

from __future__ import annotations

import ipaddress
import itertools
import re
from collections.abc import Mapping, Sequence
from typing import Any, cast

from aiservice_functions.durations import parse_duration

from aiservice_operator.core.manifest_reader import Reader
from aiservice_operator.core.resource import (
    ALLOW_HOST,
    API_GROUP,
    API_VERSION,
    ATTRIBUTE_NAME,
    BROKER_CLASSES,
    BROKER_CONFIG_KINDS,
    CLAIM_CHECK_SECRET_KEYS,
    COMPARE_PATH,
    CONFIG_KEY,
    CONTENT_TYPE,
    DEFAULT_CLAIM_CHECK_MAX_BYTES,
    DEFAULT_COMPARE,
    DEFAULT_DECISION_RETENTION,
    DNS_1123_LABEL,
    DNS_LABEL,
    DNS_SUBDOMAIN,
    ENV_NAME,
    EVENT_TYPE,
    FIELD_PATH,
    FILTER_DIALECTS,
    GPU_RESOURCES,
    IMAGE,
    IMAGE_HINT,
    KEY_PREFIX,
    KIND,
    LABEL_KEY,
    LABEL_VALUE,
    MAX_CONSUMES,
    MAX_ENV,
    MAX_FILTER_ATTRIBUTES,
    MAX_FILTER_DEPTH,
    MAX_FILTERS,
    MAX_MODEL_NAME_LENGTH,
    MAX_MODELS,
    MAX_NAME_LENGTH,
    MAX_POD_LIST,
    MAX_REDACT,
    MAX_STARTUP_SECONDS,
    MAX_STEPS,
    MAX_TYPE_LENGTH,
    MAX_URI_LENGTH,
    MIN_INTERVAL_SECONDS,
    MODEL_URI,
    MOUNT_PATH,
    NODE_OPERATORS,
    OPTIONAL_LABEL,
    OPTIONAL_SUBDOMAIN,
    PLURAL,
    POD_DIR,
    QUANTITY,
    REDACT_PATH,
    RESERVED_ENV,
    RESERVED_MODEL_NAMES,
    RESERVED_MOUNT_PATHS,
    RESERVED_VOLUME_PREFIX,
    S3_BUCKET,
    S3_ENDPOINT,
    SHA256,
    VOLUME_SOURCES,
    AIService,
    AIServiceSpec,
    Analysis,
    Autoscaling,
    BackoffPolicy,
    Batching,
    BrokerClass,
    ClaimCheck,
    Consume,
    DeadLetter,
    DecisionLog,
    Delivery,
    Filter,
    FilterDialect,
    Function,
    ManagedBroker,
    Model,
    RollbackMode,
    Rollout,
    ScaleMetric,
    SeccompProfile,
    SecurityContext,
    SinkRef,
    SpecError,
    Traffic,
    TrafficSplit,
    retention_seconds,
)

__all__ = [
    "API_GROUP",
    "API_VERSION",
    "ATTRIBUTE_NAME",
    "BROKER_CLASSES",
    "BROKER_CONFIG_KINDS",
    "CONFIG_KEY",
    "DEFAULT_DECISION_RETENTION",
    "DNS_1123_LABEL",
    "DNS_LABEL",
    "DNS_SUBDOMAIN",
    "ENV_NAME",
    "EVENT_TYPE",
    "FIELD_PATH",
    "FILTER_DIALECTS",
    "GPU_RESOURCES",
    "KIND",
    "LABEL_KEY",
    "LABEL_VALUE",
    "MAX_CONSUMES",
    "MAX_ENV",
    "MAX_FILTERS",
    "MAX_FILTER_ATTRIBUTES",
    "MAX_FILTER_DEPTH",
    "MAX_MODELS",
    "MAX_MODEL_NAME_LENGTH",
    "MAX_NAME_LENGTH",
    "MAX_POD_LIST",
    "MAX_REDACT",
    "MAX_STARTUP_SECONDS",
    "MAX_STEPS",
    "MAX_TYPE_LENGTH",
    "MAX_URI_LENGTH",
    "MODEL_URI",
    "MOUNT_PATH",
    "NODE_OPERATORS",
    "OPTIONAL_LABEL",
    "OPTIONAL_SUBDOMAIN",
    "PLURAL",
    "POD_DIR",
    "QUANTITY",
    "REDACT_PATH",
    "RESERVED_ENV",
    "RESERVED_MODEL_NAMES",
    "RESERVED_MOUNT_PATHS",
    "RESERVED_VOLUME_PREFIX",
    "SHA256",
    "VOLUME_SOURCES",
    "AIService",
    "AIServiceSpec",
    "Analysis",
    "Autoscaling",
    "BackoffPolicy",
    "Batching",
    "BrokerClass",
    "Consume",
    "DeadLetter",
    "DecisionLog",
    "Delivery",
    "Filter",
    "FilterDialect",
    "Function",
    "ManagedBroker",
    "Model",
    "RollbackMode",
    "Rollout",
    "ScaleMetric",
    "SeccompProfile",
    "SecurityContext",
    "SinkRef",
    "SpecError",
    "Traffic",
    "TrafficSplit",
    "parse",
    "parse_spec",
    "retention_seconds",
]


# --- Parsing -------------------------------------------------------------------------


def parse(manifest: Mapping[str, Any]) -> AIService:
    """Read and validate a whole AIService manifest; raise `SpecError` naming each bad field."""
    reader = Reader()
    api_version = manifest.get("apiVersion")
    if api_version != f"{API_GROUP}/{API_VERSION}":
        reader.fail("apiVersion", f"must be {API_GROUP}/{API_VERSION}, not {api_version!r}")
    if manifest.get("kind") != KIND:
        reader.fail("kind", f"must be {KIND}, not {manifest.get('kind')!r}")
    metadata = reader.mapping(manifest.get("metadata"), "metadata", required=True)
    name = reader.string(metadata, "name", "metadata", pattern=DNS_LABEL, hint="a DNS-1035 label")
    if len(name) > MAX_NAME_LENGTH:
        reader.fail("metadata.name", f"must be at most {MAX_NAME_LENGTH} characters")
    namespace = reader.string(metadata, "namespace", "metadata", default="default")
    spec = _parse_spec(reader, reader.mapping(manifest.get("spec"), "spec", required=True))
    labels = reader.string_map(metadata.get("labels"), "metadata.labels")
    annotations = reader.string_map(metadata.get("annotations"), "metadata.annotations")
    generation = metadata.get("generation", 0)
    if reader.errors or spec is None:
        raise SpecError(reader.errors)
    return AIService(
        name=name,
        namespace=namespace,
        spec=spec,
        uid=str(metadata.get("uid", "")),
        generation=generation if isinstance(generation, int) else 0,
        labels=labels,
        annotations=annotations,
    )


def parse_spec(spec: Mapping[str, Any]) -> AIServiceSpec:
    """Read and validate just the `spec` of an AIService."""
    reader = Reader()
    parsed = _parse_spec(reader, reader.mapping(spec, "spec", required=True))
    if reader.errors or parsed is None:
        raise SpecError(reader.errors)
    return parsed


_SPEC_FIELDS = {
    "broker",
    "consumes",
    "produces",
    "function",
    "models",
    "traffic",
    "rollout",
    "autoscaling",
    "delivery",
    "deadLetter",
    "decisionLog",
    "managedBroker",
}


def _parse_spec(r: Reader, data: Mapping[str, Any]) -> AIServiceSpec | None:
    if not data and any(path == "spec" for path, _ in r.errors):
        return None  # missing or not a mapping: said once, not once per required field
    r.unknown(data, "spec", _SPEC_FIELDS)
    broker = r.string(data, "broker", "spec", default="default", pattern=DNS_LABEL)
    produces = r.string(data, "produces", "spec", default="")
    if produces and not EVENT_TYPE.match(produces):
        r.fail("spec.produces", f"{produces!r} is not a valid CloudEvent type")
    consumes = _parse_consumes(r, data.get("consumes"))
    if produces and any(c.type == produces and not c.filters for c in consumes):
        r.fail("spec.produces", "equals a consumed type: every reply would loop back")
    function = _parse_function(r, r.mapping(data.get("function"), "spec.function", required=True))
    models = _parse_models(r, data.get("models"))
    names = [m.name for m in models]
    traffic = _parse_traffic(r, r.mapping(data.get("traffic"), "spec.traffic"), names)
    rollout_data = data.get("rollout")
    rollout = None
    if rollout_data is not None:
        rollout = _parse_rollout(r, r.mapping(rollout_data, "spec.rollout"), names, traffic)
    decision_log = _parse_decision_log(r, data.get("decisionLog"))
    _check_quality_log(r, rollout, decision_log)
    return AIServiceSpec(
        broker=broker,
        consumes=consumes,
        produces=produces,
        function=function,
        models=models,
        traffic=traffic,
        rollout=rollout,
        autoscaling=_parse_autoscaling(r, r.mapping(data.get("autoscaling"), "spec.autoscaling")),
        delivery=_parse_delivery(r, r.mapping(data.get("delivery"), "spec.delivery")),
        dead_letter=_parse_dead_letter(r, r.mapping(data.get("deadLetter"), "spec.deadLetter")),
        decision_log=decision_log,
        managed_broker=_parse_managed_broker(r, data.get("managedBroker")),
    )


def _parse_managed_broker(r: Reader, value: Any) -> ManagedBroker | None:
    if value is None:
        return None
    path = "spec.managedBroker"
    data = r.mapping(value, path)
    r.unknown(data, path, {"class", "config"})
    broker_class = r.choice(data, "class", path, default="", choices=BROKER_CLASSES)
    if "config" not in data:
        return ManagedBroker(broker_class=broker_class or "MTChannelBasedBroker")
    cp = f"{path}.config"
    ref = r.mapping(data.get("config"), cp)
    r.unknown(ref, cp, {"apiVersion", "kind", "name", "namespace"})
    config = SinkRef(
        api_version=r.string(ref, "apiVersion", cp, max_length=253),
        kind=r.string(ref, "kind", cp, max_length=63),
        name=r.string(ref, "name", cp, pattern=DNS_SUBDOMAIN),
        namespace=r.string(ref, "namespace", cp, default="", pattern=OPTIONAL_LABEL, max_length=63),
    )
    allowed = BROKER_CONFIG_KINDS.get(broker_class, ())
    if broker_class and (config.api_version, config.kind) not in allowed:
        shown = " or ".join(f"{a} {k}" for a, k in allowed)
        r.fail(cp, f"a {broker_class} Broker is configured by a {shown}")
    return ManagedBroker(broker_class=broker_class or "MTChannelBasedBroker", config=config)


def _parse_consumes(r: Reader, value: Any) -> tuple[Consume, ...]:
    items = r.sequence(value, "spec.consumes", MAX_CONSUMES)
    if not items:
        r.fail("spec.consumes", "must list at least one event type")
    consumes: list[Consume] = []
    for index, item in enumerate(items):
        path = f"spec.consumes[{index}]"
        data = r.mapping(item, path, required=True)
        r.unknown(data, path, {"type", "filters"})
        event_type = r.string(data, "type", path, pattern=EVENT_TYPE, hint="a CloudEvent type")
        filters = tuple(
            _parse_filter(r, f, f"{path}.filters[{i}]")
            for i, f in enumerate(r.sequence(data.get("filters"), f"{path}.filters", MAX_FILTERS))
        )
        consumes.append(Consume(type=event_type, filters=filters))
    seen: set[Consume] = set()
    for index, consume in enumerate(consumes):
        if consume in seen:
            r.fail(f"spec.consumes[{index}]", "repeats an earlier entry")
        seen.add(consume)
    return tuple(consumes)


def _parse_filter(r: Reader, value: Any, path: str, depth: int = 1) -> Filter:
    data = r.mapping(value, path, required=True)
    if len(data) != 1:
        r.fail(path, "must have exactly one of exact, prefix, suffix, all, any, not, cesql")
        return Filter("exact")
    ((dialect, body),) = data.items()
    where = f"{path}.{dialect}"
    if dialect in ("all", "any", "not") and depth >= MAX_FILTER_DEPTH:
        r.fail(where, f"filters nest at most {MAX_FILTER_DEPTH} levels deep")
        return Filter("exact")
    if dialect in ("exact", "prefix", "suffix"):
        attrs = r.mapping(body, where, required=True)
        if not attrs:
            r.fail(where, "must name at least one attribute")
        if len(attrs) > MAX_FILTER_ATTRIBUTES:
            r.fail(where, f"must name at most {MAX_FILTER_ATTRIBUTES} attributes")
        for key, val in attrs.items():
            if not isinstance(val, str):
                r.fail(f"{where}.{key}", "must be a string")
            if not ATTRIBUTE_NAME.match(str(key)):
                r.fail(f"{where}.{key}", "is not a CloudEvents attribute name")
        return Filter(
            cast(FilterDialect, dialect),
            attributes=tuple(sorted((str(k), str(v)) for k, v in attrs.items())),
        )
    if dialect in ("all", "any"):
        children = r.sequence(body, where, MAX_FILTERS)
        if not children:
            r.fail(where, "must hold at least one filter")
        return Filter(
            cast(FilterDialect, dialect),
            children=tuple(
                _parse_filter(r, c, f"{where}[{i}]", depth + 1) for i, c in enumerate(children)
            ),
        )
    if dialect == "not":
        return Filter("not", children=(_parse_filter(r, body, where, depth + 1),))
    if dialect == "cesql":
        if not isinstance(body, str) or not body.strip():
            r.fail(where, "must be a non-empty CESQL expression")
            return Filter("cesql")
        if len(body) > 1024:
            r.fail(where, "must be at most 1024 characters")
        return Filter("cesql", expression=body)
    r.fail(
        path, f"{dialect!r} is not a filter dialect (exact, prefix, suffix, all, any, not, cesql)"
    )
    return Filter("exact")


def _ref(r: Reader, data: Mapping[str, Any], path: str, *, key: bool) -> dict[str, Any]:
    """A secretKeyRef / configMapKeyRef (`key`) or a secretRef / configMapRef."""
    r.unknown(data, path, {"name", "key", "optional"} if key else {"name", "optional"})
    out: dict[str, Any] = {"name": r.string(data, "name", path, pattern=DNS_SUBDOMAIN)}
    if key:
        out["key"] = r.string(
            data, "key", path, pattern=CONFIG_KEY, hint="a Secret or ConfigMap key"
        )
    if "optional" in data:
        out["optional"] = r.boolean(data, "optional", path, default=False)
    return out


def _parse_env(r: Reader, value: Any, path: str) -> tuple[Mapping[str, Any], ...]:
    env: list[Mapping[str, Any]] = []
    for index, item in enumerate(r.sequence(value, path, MAX_ENV)):
        where = f"{path}[{index}]"
        entry = r.mapping(item, where, required=True)
        r.unknown(entry, where, {"name", "value", "valueFrom"})
        name = r.string(entry, "name", where, pattern=ENV_NAME)
        if name.startswith(("AISVC_", "K_")) or name in RESERVED_ENV:
            r.fail(f"{where}.name", f"{name} is reserved for the runtime")
        if "valueFrom" not in entry:
            env.append(
                {
                    "name": name,
                    "value": r.string(entry, "value", where, default="", max_length=4096),
                }
            )
            continue
        if "value" in entry:
            r.fail(where, "must set value or valueFrom, not both")
        source = r.mapping(entry.get("valueFrom"), f"{where}.valueFrom", required=True)
        if len(source) != 1:
            r.fail(
                f"{where}.valueFrom",
                "must set exactly one of secretKeyRef, configMapKeyRef, fieldRef",
            )
            continue
        ((kind, body),) = source.items()
        sp = f"{where}.valueFrom.{kind}"
        ref = r.mapping(body, sp, required=True)
        if kind in ("secretKeyRef", "configMapKeyRef"):
            env.append({"name": name, "valueFrom": {kind: _ref(r, ref, sp, key=True)}})
        elif kind == "fieldRef":
            r.unknown(ref, sp, {"fieldPath"})
            field_path = r.string(
                ref, "fieldPath", sp, pattern=FIELD_PATH, hint="a pod field such as metadata.name"
            )
            env.append({"name": name, "valueFrom": {"fieldRef": {"fieldPath": field_path}}})
        else:
            r.fail(
                f"{where}.valueFrom", f"{kind!r} is not secretKeyRef, configMapKeyRef or fieldRef"
            )
    return tuple(env)


def _parse_env_from(r: Reader, value: Any, path: str) -> tuple[Mapping[str, Any], ...]:
    sources: list[Mapping[str, Any]] = []
    for index, item in enumerate(r.sequence(value, path, MAX_POD_LIST)):
        where = f"{path}[{index}]"
        entry = r.mapping(item, where, required=True)
        r.unknown(entry, where, {"prefix", "secretRef", "configMapRef"})
        refs = [k for k in ("secretRef", "configMapRef") if k in entry]
        if len(refs) != 1:
            r.fail(where, "must set exactly one of secretRef and configMapRef")
            continue
        out: dict[str, Any] = {
            refs[0]: _ref(
                r, r.mapping(entry[refs[0]], f"{where}.{refs[0]}"), f"{where}.{refs[0]}", key=False
            )
        }
        if "prefix" in entry:
            out["prefix"] = r.string(entry, "prefix", where, pattern=ENV_NAME, max_length=64)
        sources.append(out)
    return tuple(sources)


def _parse_resources(r: Reader, value: Any, path: str) -> dict[str, dict[str, str]]:
    resources = r.mapping(value, path)
    r.unknown(resources, path, {"requests", "limits"})
    out: dict[str, dict[str, str]] = {}
    for kind in ("requests", "limits"):
        if kind not in resources:
            continue
        values = r.mapping(resources.get(kind), f"{path}.{kind}")
        if len(values) > MAX_POD_LIST:
            r.fail(f"{path}.{kind}", f"must hold at most {MAX_POD_LIST} entries")
        out[kind] = {}
        for name, quantity in values.items():
            if (
                isinstance(quantity, bool)
                or not isinstance(quantity, int | str)
                or not QUANTITY.match(str(quantity))
            ):
                r.fail(
                    f"{path}.{kind}.{name}", f"{quantity!r} is not a quantity such as 500m or 2Gi"
                )
            out[kind][str(name)] = str(quantity)
    for name in GPU_RESOURCES:
        requested = out.get("requests", {}).get(name)
        if requested is not None and out.get("limits", {}).get(name) != requested:
            r.fail(
                f"{path}.limits", f"{name}: requests must equal limits (it cannot be overcommitted)"
            )
    return out


def _parse_tolerations(r: Reader, value: Any, path: str) -> tuple[Mapping[str, Any], ...]:
    out: list[Mapping[str, Any]] = []
    for index, item in enumerate(r.sequence(value, path, MAX_POD_LIST)):
        where = f"{path}[{index}]"
        entry = r.mapping(item, where, required=True)
        r.unknown(entry, where, {"key", "operator", "value", "effect", "tolerationSeconds"})
        toleration: dict[str, Any] = {}
        if "key" in entry:
            toleration["key"] = r.string(entry, "key", where, pattern=LABEL_KEY, hint="a label key")
        operator = r.choice(entry, "operator", where, default="Equal", choices=("Equal", "Exists"))
        toleration["operator"] = operator
        if "value" in entry:
            toleration["value"] = r.string(entry, "value", where, max_length=63)
            if operator == "Exists" and toleration["value"]:
                r.fail(f"{where}.value", "must be empty when operator is Exists")
        if "effect" in entry:
            toleration["effect"] = r.choice(
                entry,
                "effect",
                where,
                default="",
                choices=("NoSchedule", "PreferNoSchedule", "NoExecute"),
            )
        if "tolerationSeconds" in entry:
            toleration["tolerationSeconds"] = r.integer(
                entry, "tolerationSeconds", where, default=0, minimum=0
            )
            if toleration.get("effect") != "NoExecute":
                r.fail(f"{where}.tolerationSeconds", "applies only with effect NoExecute")
        out.append(toleration)
    return tuple(out)


def _parse_selector_terms(r: Reader, value: Any, path: str) -> list[dict[str, Any]]:
    terms: list[dict[str, Any]] = []
    for index, item in enumerate(r.sequence(value, path, MAX_POD_LIST)):
        where = f"{path}[{index}]"
        term = r.mapping(item, where, required=True)
        r.unknown(term, where, {"matchExpressions"})
        expressions = []
        for e_index, e_item in enumerate(
            r.sequence(term.get("matchExpressions"), f"{where}.matchExpressions", MAX_POD_LIST)
        ):
            ep = f"{where}.matchExpressions[{e_index}]"
            expr = r.mapping(e_item, ep, required=True)
            r.unknown(expr, ep, {"key", "operator", "values"})
            operator = r.choice(expr, "operator", ep, default="", choices=NODE_OPERATORS)
            values = [str(v) for v in r.sequence(expr.get("values"), f"{ep}.values", MAX_POD_LIST)]
            if operator in ("In", "NotIn") and not values:
                r.fail(f"{ep}.values", f"must not be empty with operator {operator}")
            if operator in ("Exists", "DoesNotExist") and values:
                r.fail(f"{ep}.values", f"must be empty with operator {operator}")
            if operator in ("Gt", "Lt") and (len(values) != 1 or not values[0].isdigit()):
                r.fail(f"{ep}.values", f"must be one integer with operator {operator}")
            entry: dict[str, Any] = {
                "key": r.string(expr, "key", ep, pattern=LABEL_KEY, hint="a label key"),
                "operator": operator,
            }
            if values:
                entry["values"] = values
            expressions.append(entry)
        if not expressions:
            r.fail(f"{where}.matchExpressions", "must hold at least one expression")
        terms.append({"matchExpressions": expressions})
    return terms


def _parse_affinity(r: Reader, value: Any, path: str) -> dict[str, Any]:
    """Node affinity (required and preferred); pod (anti-)affinity is not offered."""
    data = r.mapping(value, path)
    r.unknown(data, path, {"nodeAffinity"})
    if "nodeAffinity" not in data:
        return {}
    np = f"{path}.nodeAffinity"
    node = r.mapping(data.get("nodeAffinity"), np)
    required_key = "requiredDuringSchedulingIgnoredDuringExecution"
    preferred_key = "preferredDuringSchedulingIgnoredDuringExecution"
    r.unknown(node, np, {required_key, preferred_key})
    out: dict[str, Any] = {}
    if required_key in node:
        rp = f"{np}.{required_key}"
        required = r.mapping(node.get(required_key), rp)
        r.unknown(required, rp, {"nodeSelectorTerms"})
        terms = _parse_selector_terms(
            r, required.get("nodeSelectorTerms"), f"{rp}.nodeSelectorTerms"
        )
        if not terms:
            r.fail(f"{rp}.nodeSelectorTerms", "must hold at least one term")
        out[required_key] = {"nodeSelectorTerms": terms}
    if preferred_key in node:
        pp = f"{np}.{preferred_key}"
        preferred = []
        for index, item in enumerate(r.sequence(node.get(preferred_key), pp, MAX_POD_LIST)):
            where = f"{pp}[{index}]"
            entry = r.mapping(item, where, required=True)
            r.unknown(entry, where, {"weight", "preference"})
            weight = r.integer(entry, "weight", where, default=0, minimum=1, maximum=100)
            (term,) = _parse_selector_terms(
                r, [entry.get("preference")], f"{where}.preference"
            ) or [{}]
            preferred.append({"weight": weight, "preference": term})
        out[preferred_key] = preferred
    return {"nodeAffinity": out} if out else {}


def _parse_volumes(r: Reader, value: Any, path: str) -> tuple[Mapping[str, Any], ...]:
    volumes: list[Mapping[str, Any]] = []
    for index, item in enumerate(r.sequence(value, path, MAX_POD_LIST)):
        where = f"{path}[{index}]"
        entry = r.mapping(item, where, required=True)
        r.unknown(entry, where, {"name", *VOLUME_SOURCES})
        name = r.string(entry, "name", where, pattern=DNS_1123_LABEL, max_length=63)
        if name.startswith(RESERVED_VOLUME_PREFIX):
            r.fail(f"{where}.name", f"names starting with {RESERVED_VOLUME_PREFIX} are reserved")
        kinds = [k for k in VOLUME_SOURCES if k in entry]
        if len(kinds) != 1:
            r.fail(where, f"must set exactly one of {', '.join(VOLUME_SOURCES)}")
            continue
        (kind,) = kinds
        sp = f"{where}.{kind}"
        source = r.mapping(entry[kind], sp)
        out: dict[str, Any] = {}
        if kind == "emptyDir":
            r.unknown(source, sp, {"medium", "sizeLimit"})
            if "medium" in source:
                out["medium"] = r.choice(source, "medium", sp, default="", choices=("", "Memory"))
            if "sizeLimit" in source:
                out["sizeLimit"] = r.string(
                    source, "sizeLimit", sp, pattern=QUANTITY, hint="a quantity such as 10Gi"
                )
        elif kind == "persistentVolumeClaim":
            r.unknown(source, sp, {"claimName", "readOnly"})
            out["claimName"] = r.string(source, "claimName", sp, pattern=DNS_SUBDOMAIN)
            out["readOnly"] = r.boolean(source, "readOnly", sp, default=False)
        elif kind == "secret":
            r.unknown(source, sp, {"secretName", "optional"})
            out["secretName"] = r.string(source, "secretName", sp, pattern=DNS_SUBDOMAIN)
            if "optional" in source:
                out["optional"] = r.boolean(source, "optional", sp, default=False)
        else:
            out = _ref(r, source, sp, key=False)
        volumes.append({"name": name, kind: out})
    names = [v["name"] for v in volumes]
    for index, name in enumerate(names):
        if name in names[:index]:
            r.fail(f"{path}[{index}].name", f"{name!r} is declared twice")
    return tuple(volumes)


def _parse_mounts(
    r: Reader, value: Any, path: str, volumes: Sequence[Mapping[str, Any]]
) -> tuple[Mapping[str, Any], ...]:
    declared = {v["name"] for v in volumes}
    mounts: list[Mapping[str, Any]] = []
    for index, item in enumerate(r.sequence(value, path, MAX_POD_LIST)):
        where = f"{path}[{index}]"
        entry = r.mapping(item, where, required=True)
        r.unknown(entry, where, {"name", "mountPath", "readOnly"})
        name = r.string(entry, "name", where, max_length=63)
        if name and name not in declared:
            r.fail(f"{where}.name", f"{name!r} is not a volume of spec.function.volumes")
        mount_path = r.string(
            entry, "mountPath", where, pattern=MOUNT_PATH, hint="an absolute path", max_length=512
        )
        if mount_path in RESERVED_MOUNT_PATHS or mount_path.startswith(POD_DIR):
            r.fail(f"{where}.mountPath", f"{mount_path} is reserved (Knative or the runtime)")
        mount: dict[str, Any] = {"name": name, "mountPath": mount_path}
        if "readOnly" in entry:
            mount["readOnly"] = r.boolean(entry, "readOnly", where, default=False)
        mounts.append(mount)
    paths = [m["mountPath"] for m in mounts]
    for index, mount_path in enumerate(paths):
        if mount_path in paths[:index]:
            r.fail(f"{path}[{index}].mountPath", f"{mount_path} is mounted twice")
    return tuple(mounts)


def _parse_security(r: Reader, value: Any, path: str) -> SecurityContext:
    data = r.mapping(value, path)
    r.unknown(
        data,
        path,
        {"runAsNonRoot", "runAsUser", "runAsGroup", "readOnlyRootFilesystem",
         "allowPrivilegeEscalation", "seccompProfile"},
    )  # fmt: skip
    seccomp = r.mapping(data.get("seccompProfile"), f"{path}.seccompProfile")
    r.unknown(seccomp, f"{path}.seccompProfile", {"type"})
    user = group = None
    if "runAsUser" in data:
        user = r.integer(data, "runAsUser", path, default=0, minimum=0, maximum=2147483647)
    if "runAsGroup" in data:
        group = r.integer(data, "runAsGroup", path, default=0, minimum=0, maximum=2147483647)
    result = SecurityContext(
        run_as_non_root=r.boolean(data, "runAsNonRoot", path, default=True),
        run_as_user=user,
        run_as_group=group,
        read_only_root_filesystem=r.boolean(data, "readOnlyRootFilesystem", path, default=True),
        allow_privilege_escalation=r.boolean(data, "allowPrivilegeEscalation", path, default=False),
        seccomp_profile=r.choice(
            seccomp, "type", f"{path}.seccompProfile", default="RuntimeDefault",
            choices=("RuntimeDefault", "Unconfined"),
        ),
    )  # fmt: skip
    if result.run_as_non_root and user == 0:
        r.fail(f"{path}.runAsUser", "must not be 0 while runAsNonRoot is true")
    return result


_FUNCTION_FIELDS = {
    "image", "entrypoint", "env", "envFrom", "resources", "concurrency", "timeoutSeconds",
    "batching", "serviceAccountName", "imagePullSecrets", "nodeSelector", "tolerations",
    "affinity", "runtimeClassName", "volumes", "volumeMounts", "modelCacheVolume",
    "securityContext", "startupTimeoutSeconds", "claimCheck",
}  # fmt: skip
_CLAIM_CHECK_FIELDS = {
    "bucket", "endpoint", "secretName", "prefix", "maxBytes", "timeoutSeconds",
    "contentTypes", "allowHosts",
}  # fmt: skip


def _parse_claim_check(
    r: Reader, value: Any, path: str, env: Sequence[Mapping[str, Any]]
) -> ClaimCheck | None:
    if value is None:
        return None
    data = r.mapping(value, path)
    r.unknown(data, path, _CLAIM_CHECK_FIELDS)
    secret = r.string(data, "secretName", path, default="", pattern=OPTIONAL_SUBDOMAIN)
    if secret:
        for entry in env:
            if entry.get("name") in CLAIM_CHECK_SECRET_KEYS:
                r.fail(
                    f"{path}.secretName",
                    f"spec.function.env sets {entry.get('name')} already; keep one of the two",
                )
    lists: dict[str, tuple[str, ...]] = {}
    for key, pattern in (("contentTypes", CONTENT_TYPE), ("allowHosts", ALLOW_HOST)):
        items: list[str] = []
        for index, item in enumerate(r.sequence(data.get(key), f"{path}.{key}", MAX_POD_LIST)):
            where = f"{path}.{key}[{index}]"
            if not isinstance(item, str) or len(item) > 253 or not pattern.match(item):
                r.fail(where, f"{item!r} is not valid")
                continue
            if "/" in item and key == "allowHosts":
                try:
                    ipaddress.ip_network(item, strict=False)
                except ValueError:
                    r.fail(where, f"{item!r} is not a network (CIDR)")
            items.append(item)
        lists[key] = tuple(items)
    return ClaimCheck(
        bucket=r.string(data, "bucket", path, pattern=S3_BUCKET, hint="an S3 bucket name"),
        endpoint=r.string(
            data, "endpoint", path, default="", pattern=S3_ENDPOINT if data.get("endpoint")
            else None, hint="http(s)://host[:port][/path]", max_length=512,
        ),
        secret_name=secret,
        prefix=r.string(data, "prefix", path, default="", max_length=200,
                        pattern=KEY_PREFIX if data.get("prefix") else None,
                        hint="key segments joined by /"),
        max_bytes=r.integer(
            data, "maxBytes", path, default=DEFAULT_CLAIM_CHECK_MAX_BYTES, minimum=1,
            maximum=1 << 40,
        ),
        timeout_seconds=r.integer(data, "timeoutSeconds", path, default=30, minimum=1, maximum=600),
        content_types=lists["contentTypes"],
        allow_hosts=lists["allowHosts"],
    )  # fmt: skip


def _parse_function(r: Reader, data: Mapping[str, Any]) -> Function:
    path = "spec.function"
    r.unknown(data, path, _FUNCTION_FIELDS)
    batching = r.mapping(data.get("batching"), f"{path}.batching")
    r.unknown(batching, f"{path}.batching", {"maxBatchSize", "maxWaitMs"})
    pull_secrets: list[str] = []
    for index, item in enumerate(
        r.sequence(data.get("imagePullSecrets"), f"{path}.imagePullSecrets", MAX_POD_LIST)
    ):
        where = f"{path}.imagePullSecrets[{index}]"
        entry = r.mapping(item, where, required=True)
        r.unknown(entry, where, {"name"})
        pull_secrets.append(r.string(entry, "name", where, pattern=DNS_SUBDOMAIN))
    selector = r.mapping(data.get("nodeSelector"), f"{path}.nodeSelector")
    if len(selector) > MAX_POD_LIST:
        r.fail(f"{path}.nodeSelector", f"must hold at most {MAX_POD_LIST} entries")
    for key, val in selector.items():
        if not LABEL_KEY.match(str(key)) or len(str(key)) > 253:
            r.fail(f"{path}.nodeSelector.{key}", "is not a label key")
        if not isinstance(val, str) or not LABEL_VALUE.match(val):
            r.fail(f"{path}.nodeSelector.{key}", f"{val!r} is not a label value")
    volumes = _parse_volumes(r, data.get("volumes"), f"{path}.volumes")
    cache = r.string(data, "modelCacheVolume", path, default="", max_length=63)
    if cache and cache not in {v["name"] for v in volumes}:
        r.fail(f"{path}.modelCacheVolume", f"{cache!r} is not a volume of spec.function.volumes")
    mounts = _parse_mounts(r, data.get("volumeMounts"), f"{path}.volumeMounts", volumes)
    mounted = {m["name"] for m in mounts} | {cache}
    for index, volume in enumerate(volumes):
        if volume["name"] not in mounted:
            # Knative refuses a revision with a volume nothing mounts.
            r.fail(f"{path}.volumes[{index}]", "is neither mounted nor the modelCacheVolume")
    env = _parse_env(r, data.get("env"), f"{path}.env")
    return Function(
        image=r.string(data, "image", path, max_length=512, pattern=IMAGE, hint=IMAGE_HINT),
        entrypoint=r.string(
            data,
            "entrypoint",
            path,
            pattern=re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$"),
            hint="a dotted Python module path",
        ),
        env=env,
        env_from=_parse_env_from(r, data.get("envFrom"), f"{path}.envFrom"),
        resources=_parse_resources(r, data.get("resources"), f"{path}.resources"),
        concurrency=r.integer(data, "concurrency", path, default=16, minimum=0, maximum=1000),
        timeout_seconds=r.integer(data, "timeoutSeconds", path, default=60, minimum=1, maximum=600),
        batching=Batching(
            max_batch_size=r.integer(
                batching, "maxBatchSize", f"{path}.batching", default=0, minimum=0, maximum=1024
            ),
            max_wait_ms=r.integer(
                batching, "maxWaitMs", f"{path}.batching", default=0, minimum=0, maximum=1000
            ),
        ),
        service_account_name=r.string(
            data, "serviceAccountName", path, default="", pattern=OPTIONAL_SUBDOMAIN
        ),
        image_pull_secrets=tuple(pull_secrets),
        node_selector={str(k): str(v) for k, v in selector.items()},
        tolerations=_parse_tolerations(r, data.get("tolerations"), f"{path}.tolerations"),
        affinity=_parse_affinity(r, data.get("affinity"), f"{path}.affinity"),
        runtime_class_name=r.string(
            data, "runtimeClassName", path, default="", pattern=OPTIONAL_SUBDOMAIN
        ),
        volumes=volumes,
        volume_mounts=mounts,
        model_cache_volume=cache,
        security_context=_parse_security(r, data.get("securityContext"), f"{path}.securityContext"),
        startup_timeout_seconds=r.integer(
            data, "startupTimeoutSeconds", path, default=0, minimum=0, maximum=MAX_STARTUP_SECONDS
        ),
        claim_check=_parse_claim_check(r, data.get("claimCheck"), f"{path}.claimCheck", env),
    )


def _parse_models(r: Reader, value: Any) -> tuple[Model, ...]:
    items = r.sequence(value, "spec.models", MAX_MODELS)
    if not items:
        r.fail("spec.models", "must list at least one model version")
    models: list[Model] = []
    for index, item in enumerate(items):
        path = f"spec.models[{index}]"
        data = r.mapping(item, path, required=True)
        r.unknown(data, path, {"name", "uri", "sha256"})
        name = r.string(data, "name", path, pattern=DNS_1123_LABEL, hint="a DNS-1123 label")
        if len(name) > MAX_MODEL_NAME_LENGTH:
            r.fail(f"{path}.name", f"must be at most {MAX_MODEL_NAME_LENGTH} characters")
        if name in RESERVED_MODEL_NAMES:
            r.fail(f"{path}.name", f"{name!r} is reserved for a traffic tag")
        uri = r.string(
            data,
            "uri",
            path,
            pattern=MODEL_URI,
            hint="file://, http(s)://, pkg:// or s3://",
            max_length=MAX_URI_LENGTH,
        )
        sha = r.string(data, "sha256", path, default="")
        if sha and not SHA256.match(sha):
            r.fail(f"{path}.sha256", "must be 64 lowercase hex digits")
        if uri.startswith("http") and not sha:
            r.fail(f"{path}.sha256", "is required for http(s):// model URIs")
        models.append(Model(name=name, uri=uri, sha256=sha))
    seen: set[str] = set()
    for index, model in enumerate(models):
        if model.name in seen:
            r.fail(f"spec.models[{index}].name", f"{model.name!r} is declared twice")
        seen.add(model.name)
    return tuple(models)


def _parse_traffic(r: Reader, data: Mapping[str, Any], names: Sequence[str]) -> Traffic:
    path = "spec.traffic"
    r.unknown(data, path, {"stable", "split"})
    default = names[0] if names else ""
    stable = r.string(data, "stable", path, default=default)
    if stable and names and stable not in names:
        r.fail(f"{path}.stable", f"{stable!r} is not a declared model ({', '.join(names)})")
    split: list[TrafficSplit] = []
    for index, item in enumerate(r.sequence(data.get("split"), f"{path}.split", MAX_MODELS)):
        where = f"{path}.split[{index}]"
        entry = r.mapping(item, where, required=True)
        r.unknown(entry, where, {"model", "percent"})
        model = r.string(entry, "model", where)
        if model and model not in names:
            r.fail(f"{where}.model", f"{model!r} is not a declared model")
        percent = r.integer(entry, "percent", where, default=0, minimum=0, maximum=100)
        split.append(TrafficSplit(model=model, percent=percent))
    if split:
        if sum(s.percent for s in split) != 100:
            r.fail(f"{path}.split", "percentages must sum to 100")
        models = [s.model for s in split]
        if len(set(models)) != len(models):
            r.fail(f"{path}.split", "names a model more than once")
        if stable not in models:
            r.fail(f"{path}.split", f"must include the stable model {stable!r}")
    return Traffic(stable=stable, split=tuple(split))


def _parse_rollout(
    r: Reader, data: Mapping[str, Any], names: Sequence[str], traffic: Traffic
) -> Rollout:
    path = "spec.rollout"
    r.unknown(data, path, {"canary", "steps", "interval", "analysis", "shadow", "rollback"})
    canary = r.string(data, "canary", path)
    if canary and names and canary not in names:
        r.fail(f"{path}.canary", f"{canary!r} is not a declared model ({', '.join(names)})")
    if canary and canary == traffic.stable:
        r.fail(f"{path}.canary", "must differ from spec.traffic.stable")
    if traffic.split:
        r.fail("spec.traffic.split", "cannot be combined with spec.rollout")
    steps_raw = r.sequence(data.get("steps", [10, 25, 50, 100]), f"{path}.steps", MAX_STEPS)
    steps: list[int] = []
    for index, step in enumerate(steps_raw):
        if isinstance(step, bool) or not isinstance(step, int) or not 1 <= step <= 100:
            r.fail(f"{path}.steps[{index}]", f"must be an integer percent in 1..100, not {step!r}")
        else:
            steps.append(step)
    if not steps_raw:
        r.fail(f"{path}.steps", "must hold at least one step")
    elif len(steps) == len(steps_raw):
        if any(b <= a for a, b in itertools.pairwise(steps)):
            r.fail(f"{path}.steps", "must be strictly increasing")
        if steps[-1] != 100:
            r.fail(f"{path}.steps", "must end at 100")
    interval_text = r.string(data, "interval", path, default="1m")
    interval = 60.0
    try:
        interval = parse_duration(interval_text)
        if interval < MIN_INTERVAL_SECONDS:
            r.fail(f"{path}.interval", "must be at least 1s")
    except ValueError as err:
        r.fail(f"{path}.interval", str(err))
    analysis = _parse_analysis(r, r.mapping(data.get("analysis"), f"{path}.analysis"))
    shadow = r.boolean(data, "shadow", path, default=False)
    if analysis.min_agreement is not None and not shadow:
        r.fail(f"{path}.analysis.minAgreement", "needs spec.rollout.shadow: true (only then "
               "does the canary answer the inputs the stable answers)")  # fmt: skip
    return Rollout(
        canary=canary,
        steps=tuple(steps),
        interval_seconds=interval,
        analysis=analysis,
        shadow=shadow,
        rollback=r.choice(
            data, "rollback", path, default="instant", choices=("instant", "stepped")
        ),
    )


_ANALYSIS_FIELDS = {
    "maxErrorRate", "maxP99LatencyMs", "maxDeadLetterRate", "minEvents", "failureLimit",
    "minAgreement", "maxOutputDrift", "minAccuracy", "maxAccuracyDrop", "minFeedback",
    "compare", "tolerance",
}  # fmt: skip


def _parse_analysis(r: Reader, a: Mapping[str, Any]) -> Analysis:
    ap = "spec.rollout.analysis"
    r.unknown(a, ap, _ANALYSIS_FIELDS)

    def share(key: str) -> float | None:
        return r.number(a, key, ap, default=0.0, maximum=1.0) if key in a else None

    compare = r.string(a, "compare", ap, default=DEFAULT_COMPARE, max_length=256)
    if not COMPARE_PATH.match(compare):
        r.fail(f"{ap}.compare", f"{compare[:80]!r} is not a JSON path such as $.label or $.score")
    tolerance = r.number(a, "tolerance", ap, default=0.0) if "tolerance" in a else None
    analysis = Analysis(
        max_error_rate=r.number(a, "maxErrorRate", ap, default=0.02, maximum=1.0),
        max_p99_latency_ms=r.number(a, "maxP99LatencyMs", ap, default=500.0, minimum=1.0),
        max_dead_letter_rate=r.number(a, "maxDeadLetterRate", ap, default=0.01, maximum=1.0),
        min_events=r.integer(a, "minEvents", ap, default=20, minimum=1),
        failure_limit=r.integer(a, "failureLimit", ap, default=2, minimum=1),
        min_agreement=share("minAgreement"),
        max_output_drift=share("maxOutputDrift"),
        min_accuracy=share("minAccuracy"),
        max_accuracy_drop=share("maxAccuracyDrop"),
        min_feedback=r.integer(a, "minFeedback", ap, default=20, minimum=1),
        compare=compare,
        tolerance=tolerance,
    )
    if tolerance is not None and compare == DEFAULT_COMPARE:
        r.fail(f"{ap}.tolerance", "needs compare: a numeric output path such as $.score")
    return analysis


def _check_quality_log(r: Reader, rollout: Rollout | None, log: DecisionLog) -> None:
    """The quality checks read the decision log: it must be on (with data for a path
    other than the label, which is kept without it)."""
    if rollout is None or not rollout.analysis.quality:
        return
    ap = "spec.rollout.analysis"
    if not log.enabled:
        r.fail(ap, "minAgreement, maxOutputDrift, minAccuracy and maxAccuracyDrop read the "
               "decision log: set spec.decisionLog (enabled)")  # fmt: skip
    elif rollout.analysis.compare != DEFAULT_COMPARE and not log.include_data:
        needs = "a path other than $.label needs spec.decisionLog.includeData: true"
        r.fail(f"{ap}.compare", needs)


def _parse_autoscaling(r: Reader, data: Mapping[str, Any]) -> Autoscaling:
    path = "spec.autoscaling"
    r.unknown(data, path, {"minScale", "maxScale", "metric", "target"})
    result = Autoscaling(
        min_scale=r.integer(data, "minScale", path, default=0, minimum=0),
        max_scale=r.integer(data, "maxScale", path, default=10, minimum=1),
        metric=r.choice(
            data, "metric", path, default="concurrency", choices=("concurrency", "rps")
        ),
        target=r.integer(data, "target", path, default=8, minimum=1),
    )
    if result.min_scale > result.max_scale:
        r.fail(f"{path}.minScale", "must not exceed spec.autoscaling.maxScale")
    return result


def _parse_delivery(r: Reader, data: Mapping[str, Any]) -> Delivery:
    path = "spec.delivery"
    r.unknown(data, path, {"retry", "backoffPolicy", "backoffDelay", "timeout"})
    return Delivery(
        retry=r.integer(data, "retry", path, default=3, minimum=0, maximum=100),
        backoff_policy=r.choice(
            data, "backoffPolicy", path, default="exponential", choices=("linear", "exponential")
        ),
        backoff_delay=r.knative_duration(data, "backoffDelay", path, default="PT0.2S"),
        timeout=r.knative_duration(data, "timeout", path, default="PT30S"),
    )


def _parse_dead_letter(r: Reader, data: Mapping[str, Any]) -> DeadLetter:
    path = "spec.deadLetter"
    r.unknown(data, path, {"sink"})
    if data.get("sink") is None:
        return DeadLetter()
    sink = r.mapping(data.get("sink"), f"{path}.sink")
    r.unknown(sink, f"{path}.sink", {"uri", "ref"})
    if ("uri" in sink) == ("ref" in sink):
        r.fail(f"{path}.sink", "must set exactly one of uri and ref")
        return DeadLetter()
    if "uri" in sink:
        uri = r.string(
            sink,
            "uri",
            f"{path}.sink",
            pattern=re.compile(r"^https?://.+"),
            max_length=MAX_URI_LENGTH,
        )
        return DeadLetter(uri=uri)
    rp = f"{path}.sink.ref"
    ref = r.mapping(sink.get("ref"), rp, required=True)
    r.unknown(ref, rp, {"apiVersion", "kind", "name", "namespace"})
    return DeadLetter(
        ref=SinkRef(
            api_version=r.string(ref, "apiVersion", rp),
            kind=r.string(ref, "kind", rp),
            name=r.string(ref, "name", rp, pattern=DNS_LABEL),
            namespace=r.string(ref, "namespace", rp, default=""),
        )
    )


def _parse_decision_log(r: Reader, value: Any) -> DecisionLog:
    """`spec.decisionLog`; present means enabled unless `enabled: false`."""
    path = "spec.decisionLog"
    if value is None:
        return DecisionLog()
    data = r.mapping(value, path)
    r.unknown(data, path, {"enabled", "sampleRate", "includeData", "redact", "retention"})
    rate = r.number(data, "sampleRate", path, default=1.0, maximum=1.0)
    if rate <= 0:
        r.fail(f"{path}.sampleRate", "must be greater than 0 and at most 1")
    include_data = r.boolean(data, "includeData", path, default=False)
    redact: list[str] = []
    for index, item in enumerate(r.sequence(data.get("redact"), f"{path}.redact", MAX_REDACT)):
        where = f"{path}.redact[{index}]"
        if not isinstance(item, str):
            r.fail(where, f"must be a string, not {type(item).__name__}")
        elif len(item) > 256 or not REDACT_PATH.match(item):
            r.fail(where, f"{item[:80]!r} is not a JSON path such as $.customer.email")
        else:
            redact.append(item)
    if redact and not include_data:
        r.fail(f"{path}.redact", "applies only with includeData: true (else no data is kept)")
    retention = r.string(data, "retention", path, default=DEFAULT_DECISION_RETENTION, max_length=32)
    if retention:
        try:
            retention_seconds(retention)
        except ValueError as err:
            r.fail(f"{path}.retention", str(err))
    return DecisionLog(
        enabled=r.boolean(data, "enabled", path, default=True),
        sample_rate=rate,
        include_data=include_data,
        redact=tuple(redact),
        retention=retention,
    )
