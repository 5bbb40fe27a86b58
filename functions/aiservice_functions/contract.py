"""The contract between the operator and the function runtime, in one place.

The operator's compiler writes these environment variables and CloudEvent
extensions into the Knative objects it emits; the runtime, the event store and the
local executor read them. Both sides import this module so a name is spelled once.
It must stay free of heavy imports: the pure core of the operator imports it.
"""

from __future__ import annotations

import hashlib
import hmac

# --- Environment of a function container (set by the compiler per revision) ---------
ENV_ENTRYPOINT = "AISVC_ENTRYPOINT"
"""Dotted module path of the function to serve, e.g. ``aiservice_functions.sentiment``."""
ENV_MODEL_URI = "AISVC_MODEL_URI"
"""Where the model of this revision is loaded from (file://, http(s)://, pkg://, s3://)."""
ENV_MODEL_SHA256 = "AISVC_MODEL_SHA256"
"""Optional sha256 the loaded model file must match (required for http(s)://)."""
ENV_MODEL_VERSION = "AISVC_MODEL_VERSION"
"""The AIService model name of this revision (``v1``); sent back as ``modelversion``."""
ENV_REPLY_TYPE = "AISVC_REPLY_TYPE"
"""CloudEvent ``type`` of reply events (the AIService's ``spec.produces``); empty: no reply."""
ENV_SERVICE_NAME = "AISVC_SERVICE"
"""Name of the AIService; the reply ``source`` is built from it and the revision."""
ENV_NAMESPACE = "AISVC_NAMESPACE"
ENV_CONCURRENCY = "AISVC_CONCURRENCY"
"""Events one container serves at once (Knative's containerConcurrency; 0 = unbounded).
Caps the default number of workers."""
ENV_WORKERS = "AISVC_WORKERS"
"""Worker processes per container (default: one per CPU of the container's cgroup quota)."""
ENV_HEADER_TIMEOUT_SECONDS = "AISVC_HEADER_TIMEOUT_SECONDS"
"""A connection that has not sent a request's headers within this time is closed (408)."""
ENV_BODY_TIMEOUT_SECONDS = "AISVC_BODY_TIMEOUT_SECONDS"
"""An event whose body has not arrived within this time after its headers is answered 408."""
ENV_MAX_BODY_BYTES = "AISVC_MAX_BODY_BYTES"
ENV_BATCH_MAX_SIZE = "AISVC_BATCH_MAX_SIZE"
ENV_BATCH_MAX_WAIT_MS = "AISVC_BATCH_MAX_WAIT_MS"
ENV_TIMEOUT_SECONDS = "AISVC_TIMEOUT_SECONDS"
"""Per-event inference deadline; past it the event is answered 500 so delivery retries."""
ENV_TORCH_THREADS = "AISVC_TORCH_THREADS"
"""torch intra-op threads per process (default 1: stable when other processes share the cores)."""
ENV_QUANTIZE = "AISVC_QUANTIZE"
"""``int8``: dynamically quantize the text encoder's linear layers (default ``none``)."""
ENV_DEVICE = "AISVC_DEVICE"
"""``auto`` (CUDA when torch sees a device, else CPU), ``cpu``, ``cuda`` or ``cuda:N``."""
DEFAULT_DEVICE = "auto"
ENV_PRECISION = "AISVC_PRECISION"
"""``fp32``, ``fp16`` or ``bf16`` (default: fp32 on CPU, fp16 on CUDA)."""
ENV_MODEL_CACHE_DIR = "AISVC_MODEL_CACHE_DIR"
"""Where models fetched over http(s)/s3 are kept, keyed by sha256."""
POD_TMP_DIR = "/aisvc/tmp"
"""In a pod (read-only root file system): the writable emptyDir `TMPDIR` points at."""
POD_MODEL_CACHE_DIR = "/aisvc/model-cache"
"""In a pod: where the model cache volume is mounted (`ENV_MODEL_CACHE_DIR`)."""
ENV_CLAIMCHECK_BUCKET = "AISVC_CLAIMCHECK_BUCKET"
"""The bucket of `spec.function.claimCheck`: ``s3://`` references must name it, and large
outputs are written to it. Unset (and no allow-listed hosts): references are refused."""
ENV_CLAIMCHECK_ENDPOINT = "AISVC_CLAIMCHECK_ENDPOINT"
"""The S3 endpoint of that bucket (default: ``AWS_ENDPOINT_URL``, else AWS)."""
ENV_CLAIMCHECK_PREFIX = "AISVC_CLAIMCHECK_PREFIX"
"""Key prefix of outputs written back (default ``<namespace>/<service>/``)."""
ENV_CLAIMCHECK_MAX_BYTES = "AISVC_CLAIMCHECK_MAX_BYTES"
"""The largest referenced object fetched (default `DEFAULT_CLAIMCHECK_MAX_BYTES`); 413 above."""
ENV_CLAIMCHECK_TIMEOUT_SECONDS = "AISVC_CLAIMCHECK_TIMEOUT_SECONDS"
"""Deadline for fetching one referenced object (default 30); 503 past it."""
ENV_CLAIMCHECK_ALLOW_HOSTS = "AISVC_CLAIMCHECK_ALLOW_HOSTS"
"""Comma-separated hosts, ``*.suffix`` patterns or CIDRs whose ``https://`` (or ``http://``)
references are fetched although internal; public ``https://`` needs no entry."""
ENV_CLAIMCHECK_CONTENT_TYPES = "AISVC_CLAIMCHECK_CONTENT_TYPES"
"""Comma-separated content types a referenced object may have (default: any); 415 else."""
DEFAULT_CLAIMCHECK_MAX_BYTES = 64 * 1024 * 1024
ENV_LOG_LEVEL = "AISVC_LOG_LEVEL"
ENV_LOG_FORMAT = "AISVC_LOG_FORMAT"
"""``json`` (default) or ``text``: the log format of runtime, event store and operator."""
ENV_HOST = "AISVC_HOST"
"""Address the runtime binds (default 127.0.0.1; the container image sets 0.0.0.0)."""

# Knative Serving sets these in every container it starts; the local executor does too.
ENV_K_SERVICE = "K_SERVICE"
ENV_K_REVISION = "K_REVISION"
ENV_PORT = "PORT"

DEFAULT_PORT = 8080
EVENT_STORE_DEFAULT_PORT = 8090
"""The event store's port when $PORT is unset: apart from a function's, so a client left
at the default never sends the store's token to a function."""
DEFAULT_MAX_BODY_BYTES = 1024 * 1024

# --- CloudEvent extensions -----------------------------------------------------------
EXT_MODEL_VERSION = "modelversion"
"""On every reply: the model version that produced it."""
EXT_TRACEPARENT = "traceparent"
"""W3C trace context, copied from the request to the reply."""
EXT_SHADOW = "aisvcshadow"
"""Set (``"true"``) on events mirrored to a canary in shadow mode: the reply is typed
`SHADOW_REPLY_TYPE`."""
SHADOW_REPLY_TYPE = "dev.aiservice.shadow.reply"
"""Type of a shadow canary's answer: the same reply as usual under a type only the
decision log subscribes to, so no consumer acts on it and the rollout can compare it."""
SHADOW_PATH = "/shadow"
"""Knative Triggers cannot add extensions, so the shadow Trigger posts to this path instead;
the runtime treats it exactly like an event carrying `EXT_SHADOW`."""
EXT_DATAREF = "dataref"
"""CloudEvents' claim-check extension: the event's data is at this URI (``s3://bucket/key``
or ``https://...``) instead of in the event; the runtime fetches it before ``decode``."""
EXT_DATASHA256 = "datasha256"
"""With `EXT_DATAREF`: the sha256 (64 hex digits) the referenced bytes must have."""
EXT_REPLAY = "aisvcreplay"
"""Set on events re-sent from the dead-letter store; its value is the replay count."""
EXT_HOPS = "aisvchops"
"""Reply-chain depth, incremented on every reply; the local broker drops loops past a limit."""
EXT_REVISION = "aisvcrevision"
"""Optional: the Knative revision an event was delivered to, for per-revision dead-letter
counts in the event store (set by senders that know it, e.g. the local dispatcher)."""
EXT_CAUSATION = "causationid"
"""On every reply: the event it answers, as `event_key(source, id)` of that event."""
EXT_CORRELATION = "correlationid"
"""Constant along a chain: kept from the input, else set to the input's `event_key`, so
a first event and all replies that follow from it share one value."""
EXT_LATENCY_MS = "aisvclatencyms"
"""On every reply: milliseconds the function took (decode and inference), for the log."""
EXT_CORRECTS = "aisvccorrects"
"""On a reply re-sent by `aisvc reprocess --publish`: the `event_key` of the reply it
replaces, so consumers can undo what the old decision did."""
FEEDBACK_TYPE = "dev.aiservice.feedback"
"""Feedback on a decision from any system: data ``{"decisionId": ..., "label": ...}``."""
EXT_FEEDBACK_FOR = "aiservice"
"""On a feedback event: the name of the AIService whose decision it labels. Knative
Triggers filter on attributes, not data, so this is how each AIService's feedback
Trigger picks out its own feedback from the Broker."""
EXT_ERROR_DEST = "knativeerrordest"
EXT_ERROR_CODE = "knativeerrorcode"
EXT_ERROR_DATA = "knativeerrordata"

# --- Health and metrics paths of the runtime ---------------------------------------
PATH_LIVENESS = "/health/liveness"
PATH_READINESS = "/health/readiness"
PATH_METRICS = "/metrics"

# --- Event store HTTP API ------------------------------------------------------------
EVENT_STORE_DEAD_LETTERS_PATH = "/v1/namespaces/{namespace}/aiservices/{name}/dead-letters"
EVENT_STORE_AUDIT_PATH = "/v1/namespaces/{namespace}/aiservices/{name}/audit"


EVENT_STORE_DECISIONS_PATH = "/v1/namespaces/{namespace}/aiservices/{name}/decisions/{role}"
"""POST: decision-log ingest, ``role`` one of `DECISION_ROLES`; the compiled sink URL
carries the AIService's `spec.decisionLog` settings as its query (see the event store)."""
DECISION_ROLES = ("inputs", "replies", "reprocessed", "feedback", "shadow")
ROLLOUT_DECISION_TYPE = "dev.aiservice.rollout.decision"
"""CloudEvent type of a rollout decision in the audit log (the operator sends, the console
draws)."""
EVENT_STORE_STATS_PATH = "/v1/stats"
"""GET: dead-letter counts per AIService and per revision (canary analysis reads it)."""
EVENT_STORE_QUALITY_PATH = "/v1/namespaces/{namespace}/aiservices/{name}/quality"
"""GET: model-quality figures of two versions over a window, from the decision log."""
ENV_EVENT_STORE_URL = "AISVC_EVENT_STORE_URL"
"""Base URL of the event store, for clients (``aisvc dlq``, the rollout analysis)."""
ENV_EVENT_STORE_TOKEN = "AISVC_EVENT_STORE_TOKEN"
"""Bearer token for the event store's query and replay API (server and clients)."""
ENV_EVENT_STORE_TOKEN_FILE = "AISVC_EVENT_STORE_TOKEN_FILE"
"""A file holding that token (the chart mounts it from a Secret)."""


ENV_EVENT_STORE_SINK_KEY = "AISVC_EVENT_STORE_SINK_KEY"
"""Secret key of the ingest credentials (operator and event store; never in an object)."""
ENV_EVENT_STORE_SINK_KEY_FILE = "AISVC_EVENT_STORE_SINK_KEY_FILE"
"""A file holding that key (the chart mounts it from a Secret into both)."""
MIN_SINK_KEY_BYTES = 16

_CREDENTIAL_CONTEXT = b"aisvc-event-store-sink-v1"


def sink_credential(key: bytes, namespace: str, name: str) -> str:
    """The ingest credential of one AIService: HMAC-SHA256 of its namespace and name.

    Knative's dispatcher sends no credentials, so the operator puts this in every sink
    URL it compiles; the event store recomputes it, so only a sender that was given the
    URL can file records for that AIService, and for no other. One credential covers all
    ingest kinds (dead letters, audit, decisions) of the AIService.
    """
    message = _CREDENTIAL_CONTEXT + b"\n" + namespace.encode() + b"/" + name.encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def verify_sink_credential(key: bytes, namespace: str, name: str, credential: str) -> bool:
    """Whether ``credential`` is the ingest credential of ``namespace/name`` (constant time)."""
    expected = sink_credential(key, namespace, name)
    return hmac.compare_digest(expected.encode(), credential.encode("utf-8", "replace"))


def ingest_path(namespace: str, name: str, kind: str, key: bytes | None = None) -> str:
    """Path on the event store that ingests one kind of record (``dead-letters``,
    ``audit``, ...) of one AIService; with ``key``, its credential is the last segment."""
    path = f"/v1/namespaces/{namespace}/aiservices/{name}/{kind}"
    return f"{path}/{sink_credential(key, namespace, name)}" if key else path


def dead_letter_path(namespace: str, name: str, key: bytes | None = None) -> str:
    """Path on the event store that ingests the dead letters of one AIService."""
    return ingest_path(namespace, name, "dead-letters", key)


def audit_path(namespace: str, name: str, key: bytes | None = None) -> str:
    """Path on the event store that ingests the audit events of one AIService."""
    return ingest_path(namespace, name, "audit", key)


def quality_path(namespace: str, name: str) -> str:
    """Path of one AIService's quality query on the event store."""
    return EVENT_STORE_QUALITY_PATH.format(namespace=namespace, name=name)


def decisions_path(namespace: str, name: str, role: str, key: bytes | None = None) -> str:
    """Path on the event store that ingests one part of an AIService's decision log; with
    ``key``, its credential is the last segment (``reprocessed`` takes the bearer token
    instead, so it never carries one)."""
    if role not in DECISION_ROLES:
        raise ValueError(f"role must be one of {', '.join(DECISION_ROLES)}, not {role!r}")
    path = EVENT_STORE_DECISIONS_PATH.format(namespace=namespace, name=name, role=role)
    if key is None or role == "reprocessed":
        return path
    return f"{path}/{sink_credential(key, namespace, name)}"


def event_key(source: str, event_id: str) -> str:
    """One event's identity as `causationid` and `correlationid` carry it: source + id."""
    return f"{source}#{event_id}"
