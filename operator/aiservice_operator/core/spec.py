"""The AIService API as frozen, validated Python values.

`parse()` turns a manifest (a plain mapping, as read from YAML or from the Kubernetes
API) into an `AIService`. Every rule the CRD's schema and CEL rules enforce is checked
here too, because the operator must not trust that the API server validated the object
(an older CRD, a `--validate=false` apply, a local run without any API server). Every
error names the field it is about, in the `spec.models[1].name` form `kubectl` uses.

Pure: no I/O, no clock.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast, get_args

API_GROUP = "aiservice.dev"
API_VERSION = "v1alpha1"
KIND = "AIService"
PLURAL = "aiservices"

DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
EVENT_TYPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MODEL_URI = re.compile(r"^(file|https?|pkg|s3)://.+$")
ATTRIBUTE_NAME = re.compile(r"^[a-z][a-z0-9]{0,19}$")
"""A CloudEvents attribute name as Knative's filters accept it."""
SHA256 = re.compile(r"^[0-9a-f]{64}$")
ISO8601_DURATION = re.compile(
    r"^P(?!$)(?:(?P<d>\d+(?:\.\d+)?)D)?"
    r"(?:T(?=\d)(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)
RETENTION = re.compile(r"^(?:(?P<d>[1-9][0-9]{0,3})d|(?P<h>[1-9][0-9]{0,4})h)$")
"""A retention period in days (1-9999d) or hours (1-99999h): `30d`, `12h`."""
REDACT_PATH = re.compile(r"^\$(?:\.[A-Za-z_][A-Za-z0-9_-]*|\[(?:\d+|\*)\])+$")
"""A JSON path into event data: `$.a.b`, `$.items[0]`, `$.items[*].text`."""
GO_DURATION = re.compile(r"^(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>\d+(?:\.\d+)?)s)?$")

BackoffPolicy = Literal["linear", "exponential"]
ScaleMetric = Literal["concurrency", "rps"]
RollbackMode = Literal["instant", "stepped"]
FilterDialect = Literal["exact", "prefix", "suffix", "all", "any", "not", "cesql"]
FILTER_DIALECTS: tuple[FilterDialect, ...] = get_args(FilterDialect)

MAX_NAME_LENGTH = 40
"""An AIService name leaves room in 63-character revision names for `-<model>-<hash>`."""
MAX_MODEL_NAME_LENGTH = 12
RESERVED_MODEL_NAMES = ("stable", "canary")
# List and string bounds, the same as the CRD's (which needs them to bound CEL cost).
MAX_CONSUMES = 16
MAX_FILTERS = 8
MAX_FILTER_ATTRIBUTES = 16
MAX_FILTER_DEPTH = 3
"""`filters[0].all[0].not` is depth 3: only exact, prefix, suffix and cesql there."""
MAX_MODELS = 8
MAX_STEPS = 10
MAX_ENV = 64
MAX_URI_LENGTH = 2048
MAX_TYPE_LENGTH = 253
MAX_REDACT = 16
DEFAULT_DECISION_RETENTION = "30d"
"""Model names double as traffic tags, next to the `stable` and `canary` tags."""


class SpecError(ValueError):
    """An AIService that cannot be served; `errors` lists (field path, message) pairs."""

    def __init__(self, errors: Sequence[tuple[str, str]]) -> None:
        self.errors = tuple(errors)
        super().__init__("; ".join(f"{path}: {message}" for path, message in self.errors))


# --- Values --------------------------------------------------------------------------


@dataclass(frozen=True)
class Filter:
    """One entry of Knative's `filters` dialect (exact, prefix, suffix, all, any, not, cesql)."""

    dialect: FilterDialect
    attributes: tuple[tuple[str, str], ...] = ()
    """For exact / prefix / suffix: sorted (attribute, value) pairs, all must hold."""
    children: tuple[Filter, ...] = ()
    """For all / any: the nested filters; for not: exactly one."""
    expression: str = ""
    """For cesql: the CESQL expression."""

    def to_knative(self) -> dict[str, Any]:
        """The filter in the Trigger's `spec.filters[]` shape."""
        if self.dialect in ("exact", "prefix", "suffix"):
            # Knative allows one attribute per exact/prefix/suffix entry: AND them with `all`.
            if len(self.attributes) == 1:
                return {self.dialect: dict(self.attributes)}
            return {"all": [{self.dialect: {k: v}} for k, v in self.attributes]}
        if self.dialect == "not":
            return {"not": self.children[0].to_knative()}
        if self.dialect == "cesql":
            return {"cesql": self.expression}
        return {self.dialect: [child.to_knative() for child in self.children]}


@dataclass(frozen=True)
class Consume:
    """An event type the service consumes; each becomes one Trigger."""

    type: str
    filters: tuple[Filter, ...] = ()


@dataclass(frozen=True)
class Batching:
    max_batch_size: int = 0
    """0: the function's own default."""
    max_wait_ms: int = 0


@dataclass(frozen=True)
class Function:
    image: str
    entrypoint: str
    env: tuple[tuple[str, str], ...] = ()
    resources: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    concurrency: int = 16
    """Knative `containerConcurrency`: events one pod serves at once (0 = unlimited)."""
    timeout_seconds: int = 60
    """Knative revision `timeoutSeconds`: how long one event may take."""
    batching: Batching = Batching()


@dataclass(frozen=True)
class Model:
    name: str
    uri: str
    sha256: str = ""


@dataclass(frozen=True)
class TrafficSplit:
    model: str
    percent: int


@dataclass(frozen=True)
class Traffic:
    stable: str
    split: tuple[TrafficSplit, ...] = ()
    """Fixed split across models (sums to 100); empty: all traffic to `stable`."""


@dataclass(frozen=True)
class Analysis:
    max_error_rate: float = 0.02
    max_p99_latency_ms: float = 500.0
    max_dead_letter_rate: float = 0.01
    min_events: int = 20
    failure_limit: int = 2


@dataclass(frozen=True)
class Rollout:
    canary: str
    steps: tuple[int, ...] = (10, 25, 50, 100)
    interval_seconds: float = 60.0
    analysis: Analysis = Analysis()
    shadow: bool = False
    rollback: RollbackMode = "instant"


@dataclass(frozen=True)
class Autoscaling:
    min_scale: int = 0
    max_scale: int = 10
    metric: ScaleMetric = "concurrency"
    target: int = 8


@dataclass(frozen=True)
class Delivery:
    retry: int = 3
    backoff_policy: BackoffPolicy = "exponential"
    backoff_delay: str = "PT0.2S"
    timeout: str = "PT30S"


@dataclass(frozen=True)
class SinkRef:
    api_version: str
    kind: str
    name: str
    namespace: str = ""


@dataclass(frozen=True)
class DeadLetter:
    """Where undeliverable events go; neither set: the operator's event store."""

    uri: str = ""
    ref: SinkRef | None = None

    @property
    def is_default(self) -> bool:
        return not self.uri and self.ref is None


@dataclass(frozen=True)
class DecisionLog:
    """`spec.decisionLog`: which consumed events and replies the event store keeps.

    Off unless asked for. Sampling is decided per chain (by `correlationid`), so a chain
    is either kept whole or not at all; without `include_data` only attributes and a hash
    of the data are kept; `redact` paths are removed before anything is stored."""

    enabled: bool = False
    sample_rate: float = 1.0
    include_data: bool = False
    redact: tuple[str, ...] = ()
    retention: str = DEFAULT_DECISION_RETENTION

    @property
    def retention_seconds(self) -> int:
        return retention_seconds(self.retention)


@dataclass(frozen=True)
class AIServiceSpec:
    consumes: tuple[Consume, ...]
    function: Function
    models: tuple[Model, ...]
    traffic: Traffic
    broker: str = "default"
    produces: str = ""
    rollout: Rollout | None = None
    autoscaling: Autoscaling = Autoscaling()
    delivery: Delivery = Delivery()
    dead_letter: DeadLetter = DeadLetter()
    decision_log: DecisionLog = DecisionLog()

    def model(self, name: str) -> Model:
        """The declared model called `name` (names are validated to exist)."""
        for model in self.models:
            if model.name == name:
                return model
        raise KeyError(name)


@dataclass(frozen=True)
class AIService:
    """An AIService: identity from `metadata`, desired state from `spec`."""

    name: str
    namespace: str
    spec: AIServiceSpec
    uid: str = ""
    generation: int = 0
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)


# --- Durations -----------------------------------------------------------------------


def iso8601_seconds(value: str) -> float:
    """Seconds in an ISO-8601 duration such as `PT0.2S` or `P1DT2H` (the Knative form)."""
    match = ISO8601_DURATION.match(value)
    if not match:
        raise ValueError(f"{value!r} is not an ISO-8601 duration such as PT0.5S")
    parts = {k: float(v) if v else 0.0 for k, v in match.groupdict().items()}
    return parts["d"] * 86400 + parts["h"] * 3600 + parts["m"] * 60 + parts["s"]


def retention_seconds(value: str) -> int:
    """Seconds in a retention period such as `30d` or `12h`."""
    match = RETENTION.match(value)
    if not match:
        raise ValueError(f"{value!r} is not a number of days or hours, such as 30d or 12h")
    days, hours = match.group("d"), match.group("h")
    return int(days) * 86400 if days else int(hours or 0) * 3600


def go_duration_seconds(value: str) -> float:
    """Seconds in a Go-style duration such as `1m`, `30s` or `1h30m` (the Flagger form)."""
    match = GO_DURATION.match(value)
    if not value or not match:
        raise ValueError(f"{value!r} is not a duration such as 30s, 1m or 1h30m")
    parts = {k: float(v) if v else 0.0 for k, v in match.groupdict().items()}
    return parts["h"] * 3600 + parts["m"] * 60 + parts["s"]


# --- Parsing -------------------------------------------------------------------------


class _Reader:
    """Collects errors with field paths while reading an untrusted mapping."""

    def __init__(self) -> None:
        self.errors: list[tuple[str, str]] = []

    def fail(self, path: str, message: str) -> None:
        self.errors.append((path, message))

    def mapping(self, value: Any, path: str, *, required: bool = False) -> Mapping[str, Any]:
        if value is None:
            if required:
                self.fail(path, "is required")
            return {}
        if not isinstance(value, Mapping):
            self.fail(path, f"must be an object, not {type(value).__name__}")
            return {}
        return value

    def sequence(self, value: Any, path: str, max_items: int | None = None) -> Sequence[Any]:
        if value is None:
            return ()
        if not isinstance(value, list | tuple):
            self.fail(path, f"must be a list, not {type(value).__name__}")
            return ()
        if max_items is not None and len(value) > max_items:
            self.fail(path, f"must hold at most {max_items} entries, not {len(value)}")
        return value

    def unknown(self, data: Mapping[str, Any], path: str, known: set[str]) -> None:
        for key in sorted(set(data) - known):
            self.fail(f"{path}.{key}", "is not a known field")

    def string(
        self,
        data: Mapping[str, Any],
        key: str,
        path: str,
        *,
        default: str | None = None,
        pattern: re.Pattern[str] | None = None,
        hint: str = "",
        max_length: int = 253,
    ) -> str:
        value = data.get(key, default)
        where = f"{path}.{key}"
        if value is None:
            self.fail(where, "is required")
            return ""
        if not isinstance(value, str):
            self.fail(where, f"must be a string, not {type(value).__name__}")
            return ""
        if len(value) > max_length:
            self.fail(where, f"must be at most {max_length} characters")
        elif pattern is not None and not pattern.match(value):
            self.fail(where, f"{value!r} is not valid{': ' + hint if hint else ''}")
        return value

    def integer(
        self,
        data: Mapping[str, Any],
        key: str,
        path: str,
        *,
        default: int,
        minimum: int | None = None,
        maximum: int | None = None,
    ) -> int:
        value = data.get(key, default)
        where = f"{path}.{key}"
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(where, f"must be an integer, not {type(value).__name__}")
            return default
        if minimum is not None and value < minimum:
            self.fail(where, f"must be at least {minimum}, not {value}")
        if maximum is not None and value > maximum:
            self.fail(where, f"must be at most {maximum}, not {value}")
        return value

    def number(
        self,
        data: Mapping[str, Any],
        key: str,
        path: str,
        *,
        default: float,
        minimum: float = 0.0,
        maximum: float | None = None,
    ) -> float:
        value = data.get(key, default)
        where = f"{path}.{key}"
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(where, f"must be a number, not {type(value).__name__}")
            return default
        if value < minimum or (maximum is not None and value > maximum):
            upper = f" and {maximum}" if maximum is not None else ""
            self.fail(where, f"must be between {minimum}{upper}, not {value}")
        return float(value)

    def boolean(self, data: Mapping[str, Any], key: str, path: str, *, default: bool) -> bool:
        value = data.get(key, default)
        if not isinstance(value, bool):
            self.fail(f"{path}.{key}", f"must be true or false, not {value!r}")
            return default
        return value

    def choice(
        self, data: Mapping[str, Any], key: str, path: str, *, default: str, choices: Sequence[str]
    ) -> Any:
        value = data.get(key, default)
        if value not in choices:
            self.fail(f"{path}.{key}", f"must be one of {', '.join(choices)}, not {value!r}")
            return default
        return value

    def iso_duration(self, data: Mapping[str, Any], key: str, path: str, *, default: str) -> str:
        value = self.string(data, key, path, default=default)
        if value:
            try:
                iso8601_seconds(value)
            except ValueError as err:
                self.fail(f"{path}.{key}", str(err))
        return value


def parse(manifest: Mapping[str, Any]) -> AIService:
    """Read and validate a whole AIService manifest; raise `SpecError` naming each bad field."""
    reader = _Reader()
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
    generation = metadata.get("generation", 0)
    if reader.errors or spec is None:
        raise SpecError(reader.errors)
    return AIService(
        name=name,
        namespace=namespace,
        spec=spec,
        uid=str(metadata.get("uid", "")),
        generation=generation if isinstance(generation, int) else 0,
        labels=dict(metadata.get("labels") or {}),
        annotations=dict(metadata.get("annotations") or {}),
    )


def parse_spec(spec: Mapping[str, Any]) -> AIServiceSpec:
    """Read and validate just the `spec` of an AIService."""
    reader = _Reader()
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
}


def _parse_spec(r: _Reader, data: Mapping[str, Any]) -> AIServiceSpec | None:
    if not data:
        return None
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
        decision_log=_parse_decision_log(r, data.get("decisionLog")),
    )


def _parse_consumes(r: _Reader, value: Any) -> tuple[Consume, ...]:
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


def _parse_filter(r: _Reader, value: Any, path: str, depth: int = 1) -> Filter:
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


def _parse_function(r: _Reader, data: Mapping[str, Any]) -> Function:
    path = "spec.function"
    r.unknown(
        data,
        path,
        {"image", "entrypoint", "env", "resources", "concurrency", "timeoutSeconds", "batching"},
    )
    env: list[tuple[str, str]] = []
    for index, item in enumerate(r.sequence(data.get("env"), f"{path}.env", MAX_ENV)):
        entry = r.mapping(item, f"{path}.env[{index}]", required=True)
        r.unknown(entry, f"{path}.env[{index}]", {"name", "value"})
        env.append(
            (
                r.string(entry, "name", f"{path}.env[{index}]", pattern=ENV_NAME),
                r.string(entry, "value", f"{path}.env[{index}]", default="", max_length=4096),
            )
        )
    for index, (env_name, _) in enumerate(env):
        if env_name.startswith(("AISVC_", "K_")) or env_name == "PORT":
            r.fail(f"{path}.env[{index}].name", f"{env_name} is reserved for the runtime")
    resources = r.mapping(data.get("resources"), f"{path}.resources")
    r.unknown(resources, f"{path}.resources", {"requests", "limits"})
    batching = r.mapping(data.get("batching"), f"{path}.batching")
    r.unknown(batching, f"{path}.batching", {"maxBatchSize", "maxWaitMs"})
    return Function(
        image=r.string(data, "image", path, max_length=512),
        entrypoint=r.string(
            data,
            "entrypoint",
            path,
            pattern=re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$"),
            hint="a dotted Python module path",
        ),
        env=tuple(env),
        resources={
            kind: {
                str(k): str(v) for k, v in r.mapping(resources.get(kind), f"{path}.{kind}").items()
            }
            for kind in ("requests", "limits")
            if kind in resources
        },
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
    )


def _parse_models(r: _Reader, value: Any) -> tuple[Model, ...]:
    items = r.sequence(value, "spec.models", MAX_MODELS)
    if not items:
        r.fail("spec.models", "must list at least one model version")
    models: list[Model] = []
    for index, item in enumerate(items):
        path = f"spec.models[{index}]"
        data = r.mapping(item, path, required=True)
        r.unknown(data, path, {"name", "uri", "sha256"})
        name = r.string(data, "name", path, pattern=DNS_LABEL, hint="a DNS-1035 label")
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


def _parse_traffic(r: _Reader, data: Mapping[str, Any], names: Sequence[str]) -> Traffic:
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
    r: _Reader, data: Mapping[str, Any], names: Sequence[str], traffic: Traffic
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
        interval = go_duration_seconds(interval_text)
        if interval < 1:
            r.fail(f"{path}.interval", "must be at least 1s")
    except ValueError as err:
        r.fail(f"{path}.interval", str(err))
    a = r.mapping(data.get("analysis"), f"{path}.analysis")
    ap = f"{path}.analysis"
    r.unknown(
        a,
        ap,
        {"maxErrorRate", "maxP99LatencyMs", "maxDeadLetterRate", "minEvents", "failureLimit"},
    )
    analysis = Analysis(
        max_error_rate=r.number(a, "maxErrorRate", ap, default=0.02, maximum=1.0),
        max_p99_latency_ms=r.number(a, "maxP99LatencyMs", ap, default=500.0, minimum=1.0),
        max_dead_letter_rate=r.number(a, "maxDeadLetterRate", ap, default=0.01, maximum=1.0),
        min_events=r.integer(a, "minEvents", ap, default=20, minimum=1),
        failure_limit=r.integer(a, "failureLimit", ap, default=2, minimum=1),
    )
    return Rollout(
        canary=canary,
        steps=tuple(steps),
        interval_seconds=interval,
        analysis=analysis,
        shadow=r.boolean(data, "shadow", path, default=False),
        rollback=r.choice(
            data, "rollback", path, default="instant", choices=("instant", "stepped")
        ),
    )


def _parse_autoscaling(r: _Reader, data: Mapping[str, Any]) -> Autoscaling:
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


def _parse_delivery(r: _Reader, data: Mapping[str, Any]) -> Delivery:
    path = "spec.delivery"
    r.unknown(data, path, {"retry", "backoffPolicy", "backoffDelay", "timeout"})
    return Delivery(
        retry=r.integer(data, "retry", path, default=3, minimum=0, maximum=100),
        backoff_policy=r.choice(
            data, "backoffPolicy", path, default="exponential", choices=("linear", "exponential")
        ),
        backoff_delay=r.iso_duration(data, "backoffDelay", path, default="PT0.2S"),
        timeout=r.iso_duration(data, "timeout", path, default="PT30S"),
    )


def _parse_dead_letter(r: _Reader, data: Mapping[str, Any]) -> DeadLetter:
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


def _parse_decision_log(r: _Reader, value: Any) -> DecisionLog:
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
