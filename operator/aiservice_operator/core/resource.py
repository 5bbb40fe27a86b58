"""The AIService resource as frozen Python values: its fields, limits and names.

`spec.parse()` builds these from a manifest and is the only place that checks them;
everything else (the compiler, the rollout, both executors) reads these types.

Pure: no I/O, no clock.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, get_args

from aiservice_functions.durations import parse_duration

API_GROUP = "aiservice.dev"
API_VERSION = "v1alpha1"
KIND = "AIService"
PLURAL = "aiservices"

DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
EVENT_TYPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MODEL_URI = re.compile(r"^(file|https?|pkg|s3)://.+$")
IMAGE_PATTERN = (
    r"^((localhost|[a-zA-Z0-9-]+(\.[a-zA-Z0-9-]+)+(:[0-9]+)?|[a-zA-Z0-9-]+:[0-9]+)"
    r"/[a-z0-9_./-]{2,255}|[a-z0-9_.-]{2,255}|[a-z0-9_-]+/[a-z0-9_./-]+)"
    r"(:[a-zA-Z0-9_.-]{1,128})?(@sha256:[a-f0-9]{64})?$"
)
"""A container image as Knative's webhook parses it (go-containerregistry, weak validation):
`[registry/]repository[:tag][@sha256:digest]`. A first path segment with a dot or a port
(or `localhost`) is the registry; the repository after it is lowercase and at least 2
characters, so `registry.example/f:1` is refused. The CRD's CEL rule holds the same regex."""
IMAGE = re.compile(IMAGE_PATTERN)
IMAGE_HINT = (
    "an image such as registry.example/team/fn:1 ([registry/]repository[:tag][@sha256:...], "
    "the repository lowercase and at least 2 characters)"
)
ATTRIBUTE_NAME = re.compile(r"^[a-z][a-z0-9]{0,19}$")
"""A CloudEvents attribute name as Knative's filters accept it."""
SHA256 = re.compile(r"^[0-9a-f]{64}$")
REDACT_PATH = re.compile(r"^\$(?:\.[A-Za-z_][A-Za-z0-9_-]*|\[(?:\d+|\*)\])+$")
"""A JSON path into event data: `$.a.b`, `$.items[0]`, `$.items[*].text`."""

BackoffPolicy = Literal["linear", "exponential"]
ScaleMetric = Literal["concurrency", "rps"]
RollbackMode = Literal["instant", "stepped"]
FilterDialect = Literal["exact", "prefix", "suffix", "all", "any", "not", "cesql"]
FILTER_DIALECTS: tuple[FilterDialect, ...] = get_args(FilterDialect)

DNS_1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
MAX_NAME_LENGTH = 63
"""Longer derived names (revisions, tags, Triggers) are shortened by `core.names`."""
MAX_MODEL_NAME_LENGTH = 63
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
MAX_POD_LIST = 16
"""Bound of the pod-level lists and maps (volumes, tolerations, envFrom, nodeSelector, ...)."""
MAX_STARTUP_SECONDS = 3600
RESERVED_ENV = ("PORT", "TMPDIR")
GPU_RESOURCES = ("nvidia.com/gpu", "amd.com/gpu", "gpu.intel.com/i915")
"""Extended resources that cannot be overcommitted: requests, when given, equal limits."""
RESERVED_VOLUME_PREFIX = "aisvc-"
POD_DIR = "/aisvc"
"""The runtime's writable directories in the pod (temp files, model cache) live below it."""
RESERVED_MOUNT_PATHS = ("/", "/dev", "/dev/log", "/tmp", "/var", "/var/log")
"""Paths Knative refuses as mount paths."""
VOLUME_SOURCES = ("emptyDir", "persistentVolumeClaim", "secret", "configMap")
NODE_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt")
CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
OPTIONAL_SUBDOMAIN = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*)?$"
)
OPTIONAL_LABEL = re.compile(r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?)?$")
LABEL_KEY = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$")
MOUNT_PATH = re.compile(r"^/[^:]*$")
QUANTITY = re.compile(
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
FIELD_PATH = re.compile(
    r"^(metadata\.(name|namespace|uid|labels\['[^']+'\]|annotations\['[^']+'\])"
    r"|spec\.(nodeName|serviceAccountName)|status\.(hostIP|hostIPs|podIP|podIPs))$"
)
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


SeccompProfile = Literal["RuntimeDefault", "Unconfined"]


@dataclass(frozen=True)
class SecurityContext:
    """The function container's securityContext; the defaults meet the `restricted` Pod
    Security Standard (capabilities are always all dropped)."""

    run_as_non_root: bool = True
    run_as_user: int | None = None
    run_as_group: int | None = None
    read_only_root_filesystem: bool = True
    allow_privilege_escalation: bool = False
    seccomp_profile: SeccompProfile = "RuntimeDefault"


CLAIM_CHECK_SECRET_KEYS = {
    "AWS_ACCESS_KEY_ID": "access-key-id",
    "AWS_SECRET_ACCESS_KEY": "secret-access-key",
}
"""Environment variable <- key of `claimCheck.secretName` (the keys `s3-credentials.yaml` uses)."""
S3_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
S3_ENDPOINT = re.compile(r"^https?://[^\s/?#@]+(/[^\s?#]*)?$")
CONTENT_TYPE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*$")
ALLOW_HOST = re.compile(r"^(\*\.)?[a-z0-9]([a-z0-9.-]*[a-z0-9])?$|^[0-9a-f.:]+/[0-9]{1,3}$")
KEY_PREFIX = re.compile(r"^[A-Za-z0-9!_.*'()-]+(/[A-Za-z0-9!_.*'()-]+)*$")
DEFAULT_CLAIM_CHECK_MAX_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class ClaimCheck:
    """`spec.function.claimCheck`: where events may keep their data (``dataref``)."""

    bucket: str
    endpoint: str = ""
    """S3 endpoint of the bucket; empty: AWS (or the pod's ``AWS_ENDPOINT_URL``)."""
    secret_name: str = ""
    """A Secret with ``access-key-id``/``secret-access-key``; empty: set by `env` or IRSA."""
    prefix: str = ""
    """Key prefix of outputs written back; empty: ``<namespace>/<name>``."""
    max_bytes: int = DEFAULT_CLAIM_CHECK_MAX_BYTES
    timeout_seconds: int = 30
    content_types: tuple[str, ...] = ()
    allow_hosts: tuple[str, ...] = ()


@dataclass(frozen=True)
class Function:
    image: str
    entrypoint: str
    env: tuple[Mapping[str, Any], ...] = ()
    """Container `env` entries as written: `{name, value}` or `{name, valueFrom}`."""
    env_from: tuple[Mapping[str, Any], ...] = ()
    resources: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    concurrency: int = 16
    """Knative `containerConcurrency`: events one pod serves at once (0 = unlimited)."""
    timeout_seconds: int = 60
    """Knative revision `timeoutSeconds`: how long one event may take."""
    batching: Batching = Batching()
    service_account_name: str = ""
    image_pull_secrets: tuple[str, ...] = ()
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Mapping[str, Any], ...] = ()
    affinity: Mapping[str, Any] = field(default_factory=dict)
    runtime_class_name: str = ""
    volumes: tuple[Mapping[str, Any], ...] = ()
    volume_mounts: tuple[Mapping[str, Any], ...] = ()
    model_cache_volume: str = ""
    """A volume of `volumes` that keeps downloaded models; empty: a pod-lifetime emptyDir."""
    security_context: SecurityContext = SecurityContext()
    startup_timeout_seconds: int = 0
    """How long a new pod may take to load its model; 0: Knative's defaults."""
    claim_check: ClaimCheck | None = None


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


DEFAULT_COMPARE: Final = "$.label"
"""The output the quality checks compare by default: the reply's `label`, which the
decision log keeps for every decision, with or without its data."""
COMPARE_PATH: Final = re.compile(r"^\$(\.[A-Za-z_][A-Za-z0-9_]*){1,8}$")
"""`spec.rollout.analysis.compare`: a dotted JSON path into the reply's data."""


@dataclass(frozen=True)
class Analysis:
    max_error_rate: float = 0.02
    max_p99_latency_ms: float = 500.0
    max_dead_letter_rate: float = 0.01
    min_events: int = 20
    failure_limit: int = 2
    # Model-quality checks, read from the decision log (None: not checked).
    min_agreement: float | None = None
    """Share of the inputs both versions answered on which the canary agrees with the stable."""
    max_output_drift: float | None = None
    """Jensen-Shannon distance (base 2, 0..1) between the two versions' output distributions."""
    min_accuracy: float | None = None
    """The canary's share of correct answers among the decisions that received feedback."""
    max_accuracy_drop: float | None = None
    """How far the canary's accuracy may fall below the stable's over the same window."""
    min_feedback: int = 20
    """Below this many labelled answers of the canary, the accuracy checks hold."""
    compare: str = DEFAULT_COMPARE
    """The output compared and bucketed: `$.label` (kept for every decision) or a path
    into the reply's data (needs `spec.decisionLog.includeData`)."""
    tolerance: float | None = None
    """When set, `compare` is numeric: two answers agree within this distance, and drift
    buckets the values by the stable's deciles."""

    @property
    def quality(self) -> bool:
        """Whether any check reads the decision log."""
        return self.agreement_or_drift or self.accuracy

    @property
    def agreement_or_drift(self) -> bool:
        return self.min_agreement is not None or self.max_output_drift is not None

    @property
    def accuracy(self) -> bool:
        return self.min_accuracy is not None or self.max_accuracy_drop is not None


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


BrokerClass = Literal["MTChannelBasedBroker", "Kafka", "RabbitMQBroker"]
BROKER_CLASSES: tuple[BrokerClass, ...] = get_args(BrokerClass)
BROKER_CONFIG_KINDS: Mapping[str, tuple[tuple[str, str], ...]] = {
    "MTChannelBasedBroker": (("v1", "ConfigMap"),),
    "Kafka": (("v1", "ConfigMap"),),
    "RabbitMQBroker": (
        ("eventing.knative.dev/v1alpha1", "RabbitmqBrokerConfig"),
        ("rabbitmq.com/v1beta1", "RabbitmqCluster"),
    ),
}
"""The configuration each Broker class reads: a channel template or Kafka ConfigMap, a
RabbitmqBrokerConfig (or, older, the RabbitmqCluster itself)."""


@dataclass(frozen=True)
class ManagedBroker:
    """A Broker the operator creates when missing, shared by the AIServices naming it."""

    broker_class: BrokerClass
    config: SinkRef | None = None


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
    managed_broker: ManagedBroker | None = None

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


# --- Durations (the grammar itself is aiservice_functions.durations) ------------------

MIN_INTERVAL_SECONDS = 1
MIN_RETENTION_SECONDS = 3600


def retention_seconds(value: str) -> int:
    """Whole seconds in a retention period such as `30d`, `12h` or `1d12h` (at least 1h)."""
    seconds = parse_duration(value)
    if seconds < MIN_RETENTION_SECONDS:
        raise ValueError(f"{value!r} is shorter than 1h")
    return int(seconds)
