"""Validate objects the way the Kubernetes API server and Knative's webhooks would.

- `to_json_schema`: a CRD's openAPIV3Schema as JSON Schema. Unknown fields are refused
  wherever the API server would prune or refuse them (every object without
  `x-kubernetes-preserve-unknown-fields`), so a field the compiler emits that Knative does
  not know fails here instead of vanishing silently on a cluster.
- `apply_defaults` and `cel_violations`: structural defaulting, then every
  `x-kubernetes-validations` rule compiled and run with cel-expr-python at its place.
- `knative_webhook_violations`: the rules Knative's admission webhooks add on top of
  their schemas (traffic percent sum, tags, revision names, delivery formats, ...).
"""

from __future__ import annotations

import copy
import functools
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from cel_expr_python import cel
from cel_expr_python.ext.ext_strings import ExtStrings

REPO_ROOT = Path(__file__).resolve().parents[2]
KNATIVE_SCHEMAS = Path(
    os.environ.get("AISVC_KNATIVE_SCHEMAS") or REPO_ROOT.parent / "shared" / "schemas" / "knative"
)
"""Knative's CRD schemas: `shared/` beside the repository, or `$AISVC_KNATIVE_SCHEMAS`."""
AISERVICE_CRD = REPO_ROOT / "crds" / "aiservice.dev_aiservices.yaml"

DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
DNS_1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
ISO8601 = re.compile(
    r"^P(?!$)(\d+(\.\d+)?D)?(T(?=\d)(\d+(\.\d+)?H)?(\d+(\.\d+)?M)?(\d+(\.\d+)?S)?)?$"
)
RESERVED_ENV = {"PORT", "K_SERVICE", "K_CONFIGURATION", "K_REVISION"}
SCALE_METRICS = {"concurrency", "rps", "cpu", "memory"}
TRIGGER_SPEC_FIELDS = {"broker", "brokerRef", "filter", "filters", "subscriber", "delivery"}
DELIVERY_FIELDS = {
    "retry",
    "backoffPolicy",
    "backoffDelay",
    "timeout",
    "deadLetterSink",
    "retryAfterMax",
    "format",
}


# --- CRD schemas ---------------------------------------------------------------------


def load_crd(path: Path) -> dict[str, Any]:
    return dict(yaml.safe_load(path.read_text(encoding="utf-8")))


def crd_schema(crd: Mapping[str, Any], version: str = "v1") -> dict[str, Any]:
    """The openAPIV3Schema of one served version of a CRD."""
    for entry in crd["spec"]["versions"]:
        if entry["name"] == version:
            return dict(entry["schema"]["openAPIV3Schema"])
    raise KeyError(f"{crd['metadata']['name']} has no version {version}")


def to_json_schema(node: Mapping[str, Any], *, root: bool = True) -> dict[str, Any]:
    """Convert a structural openAPIV3Schema node into JSON Schema (draft 7)."""
    out: dict[str, Any] = {}
    for key in (
        "type",
        "enum",
        "minimum",
        "maximum",
        "minLength",
        "maxLength",
        "minItems",
        "maxItems",
        "minProperties",
        "maxProperties",
        "pattern",
        "required",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "multipleOf",
        "uniqueItems",
    ):
        if key in node:
            out[key] = copy.deepcopy(node[key])
    if node.get("x-kubernetes-int-or-string"):
        out["type"] = ["integer", "string"]
    if node.get("nullable") and "type" in out:
        out["type"] = [*(out["type"] if isinstance(out["type"], list) else [out["type"]]), "null"]
    if "pattern" in out and out.get("type") != "string":
        # Kubernetes applies `pattern` to the string form only (int-or-string quantities).
        out = {**out, "if": {"type": "string"}, "then": {"pattern": out.pop("pattern")}}
    for key in ("anyOf", "allOf", "oneOf"):
        if key in node:
            out[key] = [to_json_schema(n, root=False) for n in node[key]]
    if "not" in node:
        out["not"] = to_json_schema(node["not"], root=False)
    if "items" in node:
        out["items"] = to_json_schema(node["items"], root=False)
    properties = node.get("properties")
    if properties is not None:
        out["properties"] = {
            name: (
                {"type": "object"}  # ObjectMeta: checked by the API server, not the CRD
                if root and name == "metadata"
                else to_json_schema(child, root=False)
            )
            for name, child in properties.items()
        }
    if root:
        # The API server always accepts these at the root, declared or not.
        props = out.setdefault("properties", {})
        props.setdefault("apiVersion", {"type": "string"})
        props.setdefault("kind", {"type": "string"})
        props["metadata"] = {"type": "object"}
    if isinstance(node.get("additionalProperties"), Mapping):
        out["additionalProperties"] = to_json_schema(node["additionalProperties"], root=False)
    elif node.get("type") == "object" or properties is not None:
        preserve = node.get("x-kubernetes-preserve-unknown-fields") or node.get(
            "x-kubernetes-embedded-resource"
        )
        if not preserve and node.get("additionalProperties") is not True:
            out["additionalProperties"] = False
    return out


@functools.cache
def knative_validator(kind: str) -> jsonschema.Draft7Validator:
    """JSON Schema validator for a Knative kind, from the vendored Knative CRDs."""
    files = {
        "Service": "service.yaml",
        "Trigger": "trigger.yaml",
        "Revision": "revision.yaml",
        "Route": "route.yaml",
        "Configuration": "configuration.yaml",
        "Broker": "broker.yaml",
    }
    schema = crd_schema(load_crd(KNATIVE_SCHEMAS / files[kind]))
    return jsonschema.Draft7Validator(to_json_schema(schema))


def schema_errors(validator: jsonschema.Draft7Validator, obj: Any) -> list[str]:
    return sorted(
        f"{'.'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}"
        for e in validator.iter_errors(obj)
    )


# --- Defaulting and CEL --------------------------------------------------------------


def apply_defaults(schema: Mapping[str, Any], value: Any) -> Any:
    """Structural defaulting as the API server does it: missing fields with a default get
    it, recursively through objects, list items and map values."""
    if isinstance(value, dict):
        for name, child in (schema.get("properties") or {}).items():
            if name not in value and "default" in child:
                value[name] = copy.deepcopy(child["default"])
            if name in value:
                value[name] = apply_defaults(child, value[name])
        extra = schema.get("additionalProperties")
        if isinstance(extra, Mapping):
            for key in value:
                if key not in (schema.get("properties") or {}):
                    value[key] = apply_defaults(extra, value[key])
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        return [apply_defaults(schema["items"], item) for item in value]
    return value


@functools.cache
def _cel_env() -> Any:
    # The apiserver's CEL has the strings extension (split, indexOf, ...); so does this one.
    return cel.NewEnv(variables={"self": cel.Type.DYN}, extensions=[ExtStrings()])


@functools.cache
def compile_rule(rule: str) -> Any:
    return _cel_env().compile(rule)


def iter_rules(schema: Mapping[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every x-kubernetes-validations rule with the schema path it sits at."""
    for rule in schema.get("x-kubernetes-validations") or ():
        yield path or "<root>", rule
    for name, child in (schema.get("properties") or {}).items():
        yield from iter_rules(child, f"{path}.{name}" if path else name)
    if isinstance(schema.get("items"), Mapping):
        yield from iter_rules(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), Mapping):
        yield from iter_rules(schema["additionalProperties"], f"{path}{{}}")


def cel_violations(schema: Mapping[str, Any], value: Any, path: str = "") -> list[str]:
    """Messages of every CEL rule that does not hold (or fails to evaluate) on `value`."""
    found: list[str] = []
    for rule in schema.get("x-kubernetes-validations") or ():
        try:
            result = compile_rule(rule["rule"]).eval(data={"self": value}).value()
        except Exception as err:  # an evaluation error refuses the object, like the API server
            found.append(f"{path or '<root>'}: {rule['message']} (error: {err})")
            continue
        if result is not True:
            found.append(f"{path or '<root>'}: {rule['message']}")
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        for name, child in props.items():
            if name in value:
                found += cel_violations(child, value[name], f"{path}.{name}" if path else name)
        extra = schema.get("additionalProperties")
        if isinstance(extra, Mapping):
            for key, item in value.items():
                if key not in props:
                    found += cel_violations(extra, item, f"{path}.{key}")
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for index, item in enumerate(value):
            found += cel_violations(schema["items"], item, f"{path}[{index}]")
    return found


# --- Knative webhook rules -----------------------------------------------------------


def _object_meta(obj: Mapping[str, Any]) -> list[str]:
    meta = obj.get("metadata") or {}
    problems = []
    name = str(meta.get("name", ""))
    if not name or len(name) > 63 or not DNS_1035.match(name):
        problems.append(f"metadata.name {name!r} is not a DNS-1035 label of at most 63 chars")
    if not meta.get("namespace"):
        problems.append("metadata.namespace is missing")
    for key, val in (meta.get("labels") or {}).items():
        if not isinstance(val, str) or len(val) > 63:
            problems.append(f"metadata.labels.{key} is not a label value")
    for owner in meta.get("ownerReferences") or ():
        for field in ("apiVersion", "kind", "name", "uid"):
            if not owner.get(field):
                problems.append(f"metadata.ownerReferences[].{field} is empty")
    return problems


def _service_rules(obj: Mapping[str, Any]) -> list[str]:
    problems = _object_meta(obj)
    name = obj["metadata"]["name"]
    spec = obj.get("spec") or {}
    template = spec.get("template") or {}
    tmeta = template.get("metadata") or {}
    tspec = template.get("spec") or {}
    rev = tmeta.get("name")
    if rev is not None and (
        not rev.startswith(f"{name}-") or len(rev) > 63 or not DNS_1035.match(rev)
    ):
        problems.append(f"spec.template.metadata.name {rev!r} must be <service>-..., ≤ 63 chars")
    annotations = tmeta.get("annotations") or {}
    scale: dict[str, int] = {}
    for key in ("min-scale", "max-scale", "target", "initial-scale"):
        raw = annotations.get(f"autoscaling.knative.dev/{key}")
        if raw is None:
            continue
        if not isinstance(raw, str) or not raw.isdigit():
            problems.append(f"annotation autoscaling.knative.dev/{key}={raw!r} is not an integer")
        else:
            scale[key] = int(raw)
    if scale.get("max-scale", 0) and scale.get("min-scale", 0) > scale["max-scale"]:
        problems.append("autoscaling min-scale exceeds max-scale")
    if "target" in scale and scale["target"] < 1:
        problems.append("autoscaling target must be ≥ 1")
    metric = annotations.get("autoscaling.knative.dev/metric")
    if metric is not None and metric not in SCALE_METRICS:
        problems.append(f"autoscaling metric {metric!r} is not one of {sorted(SCALE_METRICS)}")
    if not 0 <= int(tspec.get("containerConcurrency", 0)) <= 1000:
        problems.append("containerConcurrency must be in 0..1000")
    if not 0 <= int(tspec.get("timeoutSeconds", 300)) <= 600:
        problems.append("timeoutSeconds must be in 0..600")
    containers = tspec.get("containers") or []
    if len(containers) != 1:
        problems.append("a revision serves exactly one container here")
    for container in containers:
        if not container.get("image"):
            problems.append("container image is empty")
        ports = container.get("ports") or []
        if len(ports) > 1:
            problems.append("Knative allows one container port")
        for env in container.get("env") or ():
            if env.get("name") in RESERVED_ENV:
                problems.append(f"env {env['name']} is reserved by Knative")
    traffic = spec.get("traffic") or []
    if traffic and sum(int(t.get("percent", 0)) for t in traffic) != 100:
        problems.append("spec.traffic percents must sum to 100")
    tags = [t["tag"] for t in traffic if t.get("tag")]
    if len(tags) != len(set(tags)):
        problems.append(f"spec.traffic tags repeat: {tags}")
    for t in traffic:
        has_rev = bool(t.get("revisionName"))
        latest = t.get("latestRevision")
        if has_rev == bool(latest) or (not has_rev and latest is not True):
            problems.append(f"traffic target {t}: revisionName xor latestRevision: true")
        if has_rev and not str(t["revisionName"]).startswith(f"{name}-"):
            problems.append(f"traffic revisionName {t['revisionName']} is not {name}-...")
        if "configurationName" in t:
            problems.append("traffic on a Service must not set configurationName")
        if not 0 <= int(t.get("percent", 0)) <= 100:
            problems.append("traffic percent must be in 0..100")
        tag = t.get("tag")
        if tag and (not DNS_1035.match(tag) or len(f"{tag}-{name}") > 63):
            problems.append(f"traffic tag {tag!r} does not make a DNS label with the service")
    return problems


def _destination(dest: Any, where: str) -> list[str]:
    if not isinstance(dest, Mapping) or (("ref" in dest) == ("uri" in dest) and "ref" in dest):
        return [f"{where} must set ref or uri"]
    if "ref" not in dest and "uri" not in dest:
        return [f"{where} must set ref or uri"]
    problems = []
    if "ref" in dest:
        for field in ("apiVersion", "kind", "name"):
            if not dest["ref"].get(field):
                problems.append(f"{where}.ref.{field} is required")
    if "uri" in dest and not re.match(r"^https?://[^/\s]+", str(dest["uri"])):
        problems.append(f"{where}.uri {dest['uri']!r} is not an absolute http(s) URL")
    return problems


def _filter_rules(entry: Any, where: str) -> list[str]:
    dialects = {"exact", "prefix", "suffix", "all", "any", "not", "cesql"}
    if not isinstance(entry, Mapping) or len(entry) != 1 or next(iter(entry)) not in dialects:
        return [f"{where} must have exactly one filter dialect"]
    ((dialect, body),) = entry.items()
    if dialect in ("exact", "prefix", "suffix"):
        if not isinstance(body, Mapping) or len(body) != 1:
            # Knative's webhook: exact/prefix/suffix hold exactly one attribute each.
            return [f"{where}.{dialect} must hold exactly one attribute"]
        return [] if all(isinstance(v, str) for v in body.values()) else [f"{where} non-string"]
    if dialect in ("all", "any"):
        return [p for i, c in enumerate(body) for p in _filter_rules(c, f"{where}.{dialect}[{i}]")]
    if dialect == "not":
        return _filter_rules(body, f"{where}.not")
    return [] if isinstance(body, str) and body.strip() else [f"{where}.cesql is empty"]


def _trigger_rules(obj: Mapping[str, Any]) -> list[str]:
    problems = _object_meta(obj)
    spec = obj.get("spec") or {}
    # The schema keeps unknown fields here, but the webhook decodes strictly.
    problems += [f"spec.{k} is an unknown field" for k in sorted(set(spec) - TRIGGER_SPEC_FIELDS)]
    problems += [
        f"spec.delivery.{k} is an unknown field"
        for k in sorted(set(spec.get("delivery") or {}) - DELIVERY_FIELDS)
    ]
    if not spec.get("broker"):
        problems.append("spec.broker is required")
    problems += _destination(spec.get("subscriber"), "spec.subscriber")
    for index, entry in enumerate(spec.get("filters") or ()):
        problems += _filter_rules(entry, f"spec.filters[{index}]")
    delivery = spec.get("delivery") or {}
    if "retry" in delivery and int(delivery["retry"]) < 0:
        problems.append("spec.delivery.retry must be ≥ 0")
    if "backoffPolicy" in delivery and delivery["backoffPolicy"] not in ("linear", "exponential"):
        problems.append(f"spec.delivery.backoffPolicy {delivery['backoffPolicy']!r}")
    for key in ("backoffDelay", "timeout"):
        if key in delivery and not ISO8601.match(str(delivery[key])):
            problems.append(f"spec.delivery.{key} {delivery[key]!r} is not ISO-8601")
    if "deadLetterSink" in delivery:
        problems += _destination(delivery["deadLetterSink"], "spec.delivery.deadLetterSink")
    return problems


BROKER_CLASSES = {"MTChannelBasedBroker", "Kafka", "KafkaNamespaced", "RabbitMQBroker"}


def _broker_rules(obj: Mapping[str, Any]) -> list[str]:
    """Eventing's Broker validation: a known class, a complete `spec.config` reference."""
    problems = _object_meta(obj)
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    broker_class = annotations.get("eventing.knative.dev/broker.class")
    if broker_class is not None and broker_class not in BROKER_CLASSES:
        problems.append(f"broker class {broker_class!r} is not installed here")
    config = (obj.get("spec") or {}).get("config")
    if config is not None:
        for field in ("apiVersion", "kind", "name"):
            if not config.get(field):
                problems.append(f"spec.config.{field} is required")
    return problems


def knative_webhook_violations(obj: Mapping[str, Any]) -> list[str]:
    """What Knative's admission webhooks would refuse in an object (Service, Trigger,
    Broker)."""
    if obj.get("kind") == "Service":
        return _service_rules(obj)
    if obj.get("kind") == "Trigger":
        return _trigger_rules(obj)
    if obj.get("kind") == "Broker":
        return _broker_rules(obj)
    return [f"unexpected kind {obj.get('kind')}"]


def knative_violations(obj: Mapping[str, Any]) -> list[str]:
    """Schema errors plus webhook rule violations of one emitted Knative object."""
    expected_api = {
        "Service": "serving.knative.dev/v1",
        "Trigger": "eventing.knative.dev/v1",
        "Broker": "eventing.knative.dev/v1",
    }
    kind = str(obj.get("kind"))
    if expected_api.get(kind) != obj.get("apiVersion"):
        return [f"unexpected {obj.get('apiVersion')}/{kind}"]
    return schema_errors(knative_validator(kind), obj) + knative_webhook_violations(obj)
