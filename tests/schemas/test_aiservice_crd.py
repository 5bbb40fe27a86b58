"""The AIService CRD as the API server would apply it: a valid CRD object (strict), its
structural schema with defaults, and every CEL rule compiled and evaluated with
cel-expr-python. Each invalid manifest is refused by the CRD, by the rule whose message
names the field, and by `spec.parse` with an error on the same field."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from aiservice_operator.core.spec import SpecError, parse

from tests.support.schemas import (
    AISERVICE_CRD,
    REPO_ROOT,
    apply_defaults,
    cel_violations,
    compile_rule,
    crd_schema,
    iter_rules,
    load_crd,
    schema_errors,
    to_json_schema,
)

KUBERNETES_VERSION = "1.33.0"
CRD = load_crd(AISERVICE_CRD)
SCHEMA = crd_schema(CRD, "v1alpha1")
VALIDATOR = jsonschema.Draft7Validator(to_json_schema(SCHEMA))


def crd_refusals(manifest: dict[str, Any]) -> list[str]:
    """What the API server would say about a manifest: schema errors, else CEL rules."""
    obj = apply_defaults(SCHEMA, copy.deepcopy(manifest))
    errors = schema_errors(VALIDATOR, obj)
    # The API server runs CEL rules only on objects that pass the schema, except where
    # they do not depend on the failing part; run them anyway and report both.
    return errors + cel_violations(SCHEMA, obj)


def spec_fields(manifest: dict[str, Any]) -> list[str]:
    try:
        parse(manifest)
    except SpecError as err:
        return [path for path, _ in err.errors]
    return []


def base() -> dict[str, Any]:
    return dict(yaml.safe_load((REPO_ROOT / "examples" / "canary.yaml").read_text()))


def minimal() -> dict[str, Any]:
    return {
        "apiVersion": "aiservice.dev/v1alpha1",
        "kind": "AIService",
        "metadata": {"name": "minimal", "namespace": "default"},
        "spec": {
            "consumes": [{"type": "com.example.a"}],
            "function": {"image": "registry.example/f:1", "entrypoint": "pkg.fn"},
            "models": [{"name": "v1", "uri": "file:///models/a.pt"}],
        },
    }


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(manifest: dict[str, Any]) -> None:
        node: Any = manifest
        keys = [int(k) if k.isdigit() else k for k in path.split(".")]
        for key in keys[:-1]:
            node = node[key]
        if value is _DELETE:
            del node[keys[-1]]
        else:
            node[keys[-1]] = copy.deepcopy(value)

    return mutate


_DELETE = object()


def _all(*mutations: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    def mutate(manifest: dict[str, Any]) -> None:
        for m in mutations:
            m(manifest)

    return mutate


NO_ROLLOUT = _set("spec.rollout", _DELETE)
SPLIT = _all(
    NO_ROLLOUT,
    _set("spec.traffic.split", [{"model": "v1", "percent": 90}, {"model": "v2", "percent": 10}]),
)
HTTP_MODEL = "https://models.example/a.pt"
RESERVED_ENV = "spec.function.env[].name: AISVC_*, K_*, PORT and TMPDIR are reserved"
GPU_LIMITS = "spec.function.resources.limits: GPU requests must equal limits"
SHA = "a" * 64

# (id, mutation, expected words in a CRD refusal, expected spec.parse field prefix)
INVALID: list[tuple[str, Callable[[dict[str, Any]], None], str, str]] = [
    ("model-names-unique", _set("spec.models.1.name", "v1"),
     "spec.models[].name must be unique", "spec.models[1].name"),
    ("stable-undeclared", _set("spec.traffic.stable", "v9"),
     "spec.traffic.stable must name", "spec.traffic.stable"),
    ("canary-undeclared", _set("spec.rollout.canary", "v9"),
     "spec.rollout.canary must name", "spec.rollout.canary"),
    ("canary-is-stable", _set("spec.rollout.canary", "v1"),
     "spec.rollout.canary must differ", "spec.rollout.canary"),
    ("canary-is-default-stable",
     _all(_set("spec.traffic", _DELETE), _set("spec.rollout.canary", "v1")),
     "spec.rollout.canary must differ", "spec.rollout.canary"),
    ("split-sum", _all(SPLIT, _set("spec.traffic.split.1.percent", 20)),
     "spec.traffic.split[].percent must sum to 100", "spec.traffic.split"),
    ("split-undeclared", _all(SPLIT, _set("spec.traffic.split.1.model", "v9")),
     "spec.traffic.split[].model must name", "spec.traffic.split[1].model"),
    ("split-without-stable", _all(SPLIT, _set("spec.traffic.stable", "v2"),
                                  _set("spec.traffic.split", [{"model": "v1", "percent": 100}])),
     "spec.traffic.split must include the stable model", "spec.traffic.split"),
    ("split-repeats-model", _all(SPLIT, _set("spec.traffic.split.1.model", "v1")),
     "spec.traffic.split[].model names a model more than once", "spec.traffic.split"),
    ("split-with-rollout",
     _set("spec.traffic.split", [{"model": "v1", "percent": 90}, {"model": "v2", "percent": 10}]),
     "spec.traffic.split cannot be combined with spec.rollout", "spec.traffic.split"),
    ("steps-not-increasing", _set("spec.rollout.steps", [10, 10, 100]),
     "spec.rollout.steps must be strictly increasing", "spec.rollout.steps"),
    ("steps-decreasing", _set("spec.rollout.steps", [50, 25, 100]),
     "spec.rollout.steps must be strictly increasing", "spec.rollout.steps"),
    ("steps-not-ending-at-100", _set("spec.rollout.steps", [10, 50]),
     "spec.rollout.steps must end at 100", "spec.rollout.steps"),
    ("step-zero", _set("spec.rollout.steps", [0, 100]),
     "spec.rollout.steps.0", "spec.rollout.steps[0]"),
    ("steps-empty", _set("spec.rollout.steps", []), "spec.rollout.steps", "spec.rollout.steps"),
    ("min-over-max-scale", _set("spec.autoscaling", {"minScale": 5, "maxScale": 2}),
     "spec.autoscaling.minScale must not exceed", "spec.autoscaling.minScale"),
    ("min-over-default-max-scale", _set("spec.autoscaling", {"minScale": 11}),
     "spec.autoscaling.minScale must not exceed", "spec.autoscaling.minScale"),
    ("backoff-delay-go-style", _set("spec.delivery", {"backoffDelay": "200ms"}),
     "spec.delivery.backoffDelay must be an ISO-8601", "spec.delivery.backoffDelay"),
    ("backoff-delay-bare-p", _set("spec.delivery", {"backoffDelay": "P"}),
     "spec.delivery.backoffDelay must be an ISO-8601", "spec.delivery.backoffDelay"),
    ("timeout-bare-pt", _set("spec.delivery", {"timeout": "PT"}),
     "spec.delivery.timeout must be an ISO-8601", "spec.delivery.timeout"),
    ("timeout-dangling-t", _set("spec.delivery", {"timeout": "P1DT"}),
     "spec.delivery.timeout must be an ISO-8601", "spec.delivery.timeout"),
    ("backoff-policy", _set("spec.delivery", {"backoffPolicy": "cubic"}),
     "spec.delivery.backoffPolicy", "spec.delivery.backoffPolicy"),
    ("no-consumes", _set("spec.consumes", []), "spec.consumes", "spec.consumes"),
    ("consumes-repeat",
     _set("spec.consumes", [{"type": "com.example.a"}, {"type": "com.example.a"}]),
     "spec.consumes lists an event type without filters more than once", "spec.consumes[1]"),
    ("sink-uri-and-ref", _set("spec.deadLetter", {"sink": {
        "uri": "http://dlq.example", "ref": {"apiVersion": "v1", "kind": "Service", "name": "d"}}}),
     "spec.deadLetter.sink must set exactly one of uri and ref", "spec.deadLetter.sink"),
    ("sink-empty", _set("spec.deadLetter", {"sink": {}}),
     "spec.deadLetter.sink must set exactly one of uri and ref", "spec.deadLetter.sink"),
    ("http-model-without-sha", _set("spec.models.0.uri", HTTP_MODEL),
     "spec.models[].sha256 is required for http(s)", "spec.models[0].sha256"),
    ("http-model-empty-sha", _all(_set("spec.models.0.uri", HTTP_MODEL),
                                  _set("spec.models.0.sha256", "")),
     "spec.models[].sha256 is required for http(s)", "spec.models[0].sha256"),
    ("bad-sha", _set("spec.models.0.sha256", "ABC"), "spec.models.0.sha256",
     "spec.models[0].sha256"),
    ("model-named-stable", _all(_set("spec.models.0.name", "stable"),
                                _set("spec.traffic.stable", "stable")),
     "spec.models[].name: stable and canary are reserved", "spec.models[0].name"),
    ("model-name-too-long", _set("spec.models.1.name", "v" * 64), "spec.models.1.name",
     "spec.models[1].name"),
    ("model-uri-scheme", _set("spec.models.0.uri", "ftp://x/a.pt"), "spec.models.0.uri",
     "spec.models[0].uri"),
    ("interval-too-short", _set("spec.rollout.interval", "0.5s"),
     "spec.rollout.interval must be a duration of at least 1s", "spec.rollout.interval"),
    ("interval-words", _set("spec.rollout.interval", "1 minute"),
     "spec.rollout.interval must be a duration", "spec.rollout.interval"),
    ("interval-empty", _set("spec.rollout.interval", ""),
     "spec.rollout.interval must be a duration", "spec.rollout.interval"),
    ("reply-loop", _set("spec.produces", "com.example.review.submitted"),
     "spec.produces must differ from every unfiltered spec.consumes[].type", "spec.produces"),
    ("reserved-env-prefix", _set("spec.function.env", [{"name": "AISVC_MODEL_URI", "value": "x"}]),
     RESERVED_ENV, "spec.function.env[0].name"),
    ("reserved-env-port", _set("spec.function.env", [{"name": "PORT", "value": "1"}]),
     RESERVED_ENV, "spec.function.env[0].name"),
    ("too-many-filters",
     _set("spec.consumes.0.filters", [{"exact": {"source": f"/{i}"}} for i in range(9)]),
     "spec.consumes.0.filters", "spec.consumes[0].filters"),
    ("filter-two-dialects",
     _set("spec.consumes.0.filters", [{"exact": {"source": "x"}, "prefix": {"subject": "y"}}]),
     "spec.consumes.0.filters.0", "spec.consumes[0].filters[0]"),
    ("filter-too-deep", _set("spec.consumes.0.filters", [
        {"all": [{"any": [{"not": {"exact": {"source": "x"}}}]}]}]),
     "spec.consumes.0.filters.0.all.0.any.0", "spec.consumes[0].filters[0].all[0].any[0].not"),
    ("filter-empty-cesql", _set("spec.consumes.0.filters", [{"cesql": ""}]),
     "spec.consumes.0.filters.0.cesql", "spec.consumes[0].filters[0].cesql"),
    ("name-too-long", _set("metadata.name", "a" * 64),
     "metadata.name must be a DNS-1035 label of at most 63", "metadata.name"),
    ("name-not-dns", _set("metadata.name", "Sentiment"),
     "metadata.name must be a DNS-1035 label", "metadata.name"),
    ("unknown-spec-field", _set("spec.replicas", 3), "replicas", "spec.replicas"),
    ("concurrency-too-high", _set("spec.function.concurrency", 2000),
     "spec.function.concurrency", "spec.function.concurrency"),
    ("timeout-seconds-too-high", _set("spec.function.timeoutSeconds", 601),
     "spec.function.timeoutSeconds", "spec.function.timeoutSeconds"),
    ("rollback-mode", _set("spec.rollout.rollback", "slow"), "spec.rollout.rollback",
     "spec.rollout.rollback"),
    ("error-rate-over-one", _set("spec.rollout.analysis.maxErrorRate", 1.5),
     "spec.rollout.analysis.maxErrorRate", "spec.rollout.analysis.maxErrorRate"),
    ("reserved-env-tmpdir", _set("spec.function.env", [{"name": "TMPDIR", "value": "/x"}]),
     RESERVED_ENV, "spec.function.env[0].name"),
    ("env-value-and-value-from", _set("spec.function.env", [{"name": "A", "value": "x",
        "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]),
     "spec.function.env[] must set value or valueFrom, not both", "spec.function.env[0]"),
    ("env-two-sources", _set("spec.function.env", [{"name": "A", "valueFrom": {
        "secretKeyRef": {"name": "s", "key": "k"}, "configMapKeyRef": {"name": "c", "key": "k"}}}]),
     "spec.function.env.0.valueFrom", "spec.function.env[0].valueFrom"),
    ("env-secret-without-key", _set("spec.function.env", [
        {"name": "A", "valueFrom": {"secretKeyRef": {"name": "s"}}}]),
     "spec.function.env.0.valueFrom.secretKeyRef", "spec.function.env[0].valueFrom.secretKeyRef"),
    ("env-bad-field-path", _set("spec.function.env", [
        {"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "spec.containers"}}}]),
     "spec.function.env.0.valueFrom.fieldRef.fieldPath",
     "spec.function.env[0].valueFrom.fieldRef.fieldPath"),
    ("env-from-both", _set("spec.function.envFrom", [
        {"secretRef": {"name": "s"}, "configMapRef": {"name": "c"}}]),
     "spec.function.envFrom[] must set exactly one of secretRef and configMapRef",
     "spec.function.envFrom[0]"),
    ("env-from-none", _set("spec.function.envFrom", [{"prefix": "S3_"}]),
     "spec.function.envFrom[] must set exactly one of secretRef and configMapRef",
     "spec.function.envFrom[0]"),
    ("gpu-requests-without-limits", _set("spec.function.resources", {
        "requests": {"nvidia.com/gpu": 1}}),
     GPU_LIMITS, "spec.function.resources.limits"),
    ("gpu-requests-differ", _set("spec.function.resources", {
        "requests": {"nvidia.com/gpu": 1}, "limits": {"nvidia.com/gpu": "2"}}),
     GPU_LIMITS, "spec.function.resources.limits"),
    ("bad-quantity", _set("spec.function.resources", {"limits": {"memory": "lots"}}),
     "spec.function.resources.limits.memory", "spec.function.resources.limits.memory"),
    ("service-account-not-dns", _set("spec.function.serviceAccountName", "My_SA"),
     "spec.function.serviceAccountName", "spec.function.serviceAccountName"),
    ("pull-secret-without-name", _set("spec.function.imagePullSecrets", [{}]),
     "spec.function.imagePullSecrets.0", "spec.function.imagePullSecrets[0].name"),
    ("node-selector-bad-value", _set("spec.function.nodeSelector", {"gpu": "a b"}),
     "spec.function.nodeSelector.gpu", "spec.function.nodeSelector.gpu"),
    ("toleration-exists-with-value", _set("spec.function.tolerations", [
        {"key": "nvidia.com/gpu", "operator": "Exists", "value": "true"}]),
     "spec.function.tolerations[].value must be empty when operator is Exists",
     "spec.function.tolerations[0].value"),
    ("toleration-seconds-without-no-execute", _set("spec.function.tolerations", [
        {"key": "k", "operator": "Exists", "effect": "NoSchedule", "tolerationSeconds": 5}]),
     "spec.function.tolerations[].tolerationSeconds applies only with effect NoExecute",
     "spec.function.tolerations[0].tolerationSeconds"),
    ("toleration-bad-effect", _set("spec.function.tolerations", [{"key": "k", "effect": "Never"}]),
     "spec.function.tolerations.0.effect", "spec.function.tolerations[0].effect"),
    ("affinity-in-without-values", _set("spec.function.affinity", {"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "gpu", "operator": "In"}]}]}}}),
     "spec.function.affinity.nodeAffinity matchExpressions[].values",
     "spec.function.affinity.nodeAffinity"),
    ("affinity-gt-not-integer", _set("spec.function.affinity", {"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "mem", "operator": "Gt", "values": ["x"]}]}]}}}),
     "spec.function.affinity.nodeAffinity matchExpressions[].values",
     "spec.function.affinity.nodeAffinity"),
    ("pod-anti-affinity", _set("spec.function.affinity", {"podAntiAffinity": {}}),
     "podAntiAffinity", "spec.function.affinity.podAntiAffinity"),
    ("runtime-class-not-dns", _set("spec.function.runtimeClassName", "NVIDIA"),
     "spec.function.runtimeClassName", "spec.function.runtimeClassName"),
    ("volume-two-sources", _all(
        _set("spec.function.volumes", [
            {"name": "v", "emptyDir": {}, "secret": {"secretName": "s"}}]),
        _set("spec.function.volumeMounts", [{"name": "v", "mountPath": "/v"}])),
     "spec.function.volumes[] must set exactly one of", "spec.function.volumes[0]"),
    ("volume-reserved-name", _all(
        _set("spec.function.volumes", [{"name": "aisvc-tmp", "emptyDir": {}}]),
        _set("spec.function.volumeMounts", [{"name": "aisvc-tmp", "mountPath": "/v"}])),
     "spec.function.volumes[].name: names starting with aisvc- are reserved",
     "spec.function.volumes[0].name"),
    ("volume-twice", _all(
        _set("spec.function.volumes", [
            {"name": "v", "emptyDir": {}}, {"name": "v", "emptyDir": {}}]),
        _set("spec.function.volumeMounts", [{"name": "v", "mountPath": "/v"}])),
     "spec.function.volumes[].name must be unique", "spec.function.volumes[1].name"),
    ("volume-not-mounted", _set("spec.function.volumes", [{"name": "v", "emptyDir": {}}]),
     "spec.function.volumes[] must each be mounted", "spec.function.volumes[0]"),
    ("mount-of-undeclared-volume", _set("spec.function.volumeMounts", [
        {"name": "nope", "mountPath": "/data"}]),
     "spec.function.volumeMounts[].name must name a volume", "spec.function.volumeMounts[0].name"),
    ("mount-at-tmp", _all(
        _set("spec.function.volumes", [{"name": "v", "emptyDir": {}}]),
        _set("spec.function.volumeMounts", [{"name": "v", "mountPath": "/tmp"}])),
     "spec.function.volumeMounts[].mountPath: /, /dev, /dev/log, /tmp, /var, /var/log and /aisvc",
     "spec.function.volumeMounts[0].mountPath"),
    ("mount-path-twice", _all(
        _set("spec.function.volumes", [
            {"name": "v", "emptyDir": {}}, {"name": "w", "emptyDir": {}}]),
        _set("spec.function.volumeMounts", [{"name": "v", "mountPath": "/d"},
                                            {"name": "w", "mountPath": "/d"}])),
     "spec.function.volumeMounts[].mountPath must be unique",
     "spec.function.volumeMounts[1].mountPath"),
    ("mount-path-relative", _all(
        _set("spec.function.volumes", [{"name": "v", "emptyDir": {}}]),
        _set("spec.function.volumeMounts", [{"name": "v", "mountPath": "data"}])),
     "spec.function.volumeMounts.0.mountPath", "spec.function.volumeMounts[0].mountPath"),
    ("model-cache-undeclared", _set("spec.function.modelCacheVolume", "cache"),
     "spec.function.modelCacheVolume must name a volume", "spec.function.modelCacheVolume"),
    ("run-as-root", _set("spec.function.securityContext", {"runAsUser": 0}),
     "spec.function.securityContext.runAsUser must not be 0 while runAsNonRoot",
     "spec.function.securityContext.runAsUser"),
    ("seccomp-localhost", _set("spec.function.securityContext", {
        "seccompProfile": {"type": "Localhost"}}),
     "spec.function.securityContext.seccompProfile.type",
     "spec.function.securityContext.seccompProfile.type"),
    ("startup-too-long", _set("spec.function.startupTimeoutSeconds", 3601),
     "spec.function.startupTimeoutSeconds", "spec.function.startupTimeoutSeconds"),
    ("broker-config-of-another-class", _set("spec.managedBroker", {"class": "Kafka", "config": {
        "apiVersion": "eventing.knative.dev/v1alpha1", "kind": "RabbitmqBrokerConfig",
        "name": "r"}}),
     "spec.managedBroker.config must be a v1 ConfigMap", "spec.managedBroker.config"),
    ("rabbitmq-broker-with-configmap", _set("spec.managedBroker", {"class": "RabbitMQBroker",
        "config": {"apiVersion": "v1", "kind": "ConfigMap", "name": "c"}}),
     "spec.managedBroker.config must be a v1 ConfigMap", "spec.managedBroker.config"),
    ("broker-class-unknown", _set("spec.managedBroker", {"class": "Redis"}),
     "spec.managedBroker.class", "spec.managedBroker.class"),
    ("broker-class-missing", _set("spec.managedBroker", {}),
     "spec.managedBroker", "spec.managedBroker.class"),
    ("broker-config-without-name", _set("spec.managedBroker", {"class": "Kafka", "config": {
        "apiVersion": "v1", "kind": "ConfigMap"}}),
     "spec.managedBroker.config", "spec.managedBroker.config.name"),
    ("too-many-models", _set("spec.models", [
        {"name": f"m{i}", "uri": f"file:///m{i}.pt"} for i in range(9)]),
     "spec.models", "spec.models"),
]  # fmt: skip

VALID: list[tuple[str, Callable[[dict[str, Any]], None]]] = [
    ("canary-example", lambda m: None),
    ("no-traffic-block", _all(NO_ROLLOUT, _set("spec.traffic", _DELETE))),
    ("split", SPLIT),
    ("shadow-stepped-ref-sink", _all(
        _set("spec.rollout.shadow", True), _set("spec.rollout.rollback", "stepped"),
        _set("spec.rollout.interval", "1h30m"), _set("spec.rollout.steps", [100]),
        _set("spec.deadLetter", {"sink": {"ref": {
            "apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": "dlq"}}}))),
    ("uri-sink-and-iso-durations", _set("spec.delivery", {
        "retry": 0, "backoffPolicy": "linear", "backoffDelay": "PT0.5S", "timeout": "P1DT2H"})),
    ("http-model-with-sha", _all(_set("spec.models.0.uri", HTTP_MODEL),
                                 _set("spec.models.0.sha256", SHA))),
    ("nested-filters", _set("spec.consumes.0.filters", [
        {"exact": {"source": "/a", "subject": "b"}},
        {"all": [{"any": [{"prefix": {"source": "/x"}}, {"cesql": "subject = 'y'"}]}]},
        {"not": {"not": {"suffix": {"type": ".v1"}}}}])),
    ("reply-type-filtered-loop-guard", _all(
        _set("spec.produces", "com.example.review.submitted"),
        _set("spec.consumes.0.filters", [{"prefix": {"source": "/shop/"}}]))),
    ("env-and-resources", _set("spec.function", {
        "image": "registry.example/f:1", "entrypoint": "pkg.fn",
        "env": [{"name": "LOG_LEVEL", "value": "debug"}, {"name": "EMPTY"}],
        "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": 2}}})),
    ("production-pod", _set("spec.function", {
        "image": "registry.example/f:1", "entrypoint": "pkg.fn",
        "serviceAccountName": "model-reader", "imagePullSecrets": [{"name": "registry"}],
        "env": [{"name": "AWS_ACCESS_KEY_ID", "valueFrom": {"secretKeyRef": {
                    "name": "s3", "key": "access-key", "optional": False}}},
                {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "mode"}}},
                {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "ZONE", "valueFrom": {"fieldRef": {
                    "fieldPath": "metadata.labels['topology.kubernetes.io/zone']"}}}],
        "envFrom": [{"secretRef": {"name": "s3"}, "prefix": "S3_"},
                    {"configMapRef": {"name": "cfg"}}],
        "resources": {"requests": {"nvidia.com/gpu": 1, "cpu": "2"},
                      "limits": {"nvidia.com/gpu": "1"}},
        "nodeSelector": {"nvidia.com/gpu.present": "true"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
                        {"key": "spot", "value": "yes", "effect": "NoExecute",
                         "tolerationSeconds": 30}],
        "affinity": {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "gpu", "operator": "In", "values": ["a100", "h100"]},
                                      {"key": "spot", "operator": "DoesNotExist"}]}]},
            "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 10, "preference": {
                "matchExpressions": [{"key": "mem", "operator": "Gt", "values": ["64"]}]}}]}},
        "runtimeClassName": "nvidia",
        "volumes": [{"name": "cache", "persistentVolumeClaim": {"claimName": "models"}},
                    {"name": "scratch", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}},
                    {"name": "certs", "secret": {"secretName": "ca"}},
                    {"name": "labels", "configMap": {"name": "labels", "optional": True}}],
        "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"},
                         {"name": "certs", "mountPath": "/etc/certs", "readOnly": True},
                         {"name": "labels", "mountPath": "/etc/labels"}],
        "modelCacheVolume": "cache",
        "securityContext": {"runAsUser": 10001, "runAsGroup": 10001},
        "startupTimeoutSeconds": 900})),
    ("root-opt-out", _set("spec.function.securityContext", {
        "runAsNonRoot": False, "runAsUser": 0, "readOnlyRootFilesystem": False,
        "allowPrivilegeEscalation": True, "seccompProfile": {"type": "Unconfined"}})),
    ("long-names", _all(
        _set("metadata.name", "fraud-scoring-for-the-europe-west-payments-platform-team-prod"),
        _set("spec.models.0.name", "distilled-multilingual-2026-11-01"),
        _set("spec.models.1.name", "2026-11-20-int8"),
        _set("spec.traffic.stable", "distilled-multilingual-2026-11-01"),
        _set("spec.rollout.canary", "2026-11-20-int8"))),
    ("managed-kafka-broker", _set("spec.managedBroker", {"class": "Kafka", "config": {
        "apiVersion": "v1", "kind": "ConfigMap", "name": "kafka-broker-config",
        "namespace": "knative-eventing"}})),
    ("managed-rabbitmq-cluster-broker", _set("spec.managedBroker", {"class": "RabbitMQBroker",
        "config": {"apiVersion": "rabbitmq.com/v1beta1", "kind": "RabbitmqCluster", "name": "r"}})),
    ("managed-channel-broker", _set("spec.managedBroker", {"class": "MTChannelBasedBroker"})),
    ("eight-models-split", _all(NO_ROLLOUT, _set("spec.models", [
        {"name": f"m{i}", "uri": f"file:///m{i}.pt"} for i in range(8)]),
        _set("spec.traffic", {"stable": "m0", "split": [
            {"model": f"m{i}", "percent": 30 if i == 0 else 10} for i in range(8)]}))),
]  # fmt: skip


def test_crd_is_a_valid_kubernetes_object() -> None:
    assert kubernetes_validate.validate(CRD, KUBERNETES_VERSION, strict=True) is not None


def test_crd_names_and_columns() -> None:
    assert CRD["spec"]["names"]["shortNames"] == ["ais"]
    assert CRD["spec"]["scope"] == "Namespaced"
    (version,) = CRD["spec"]["versions"]
    assert version["subresources"] == {"status": {}}
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert columns == ["Ready", "Stable", "Canary", "Weight", "URL", "Age"]


def _nodes(schema: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found = [(path, schema)]
    for name, child in (schema.get("properties") or {}).items():
        found += _nodes(child, f"{path}.{name}")
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            found += _nodes(schema[key], f"{path}[{key}]")
    return found


def test_spec_schema_is_structural_and_bounded() -> None:
    """No unknown fields kept under spec; every string, list and map under spec is bounded,
    which keeps the API server's CEL cost estimate low."""
    problems = []
    for path, node in _nodes(SCHEMA["properties"]["spec"], ".spec"):
        if node.get("x-kubernetes-preserve-unknown-fields"):
            problems.append(f"{path} keeps unknown fields")
        if "type" not in node and not node.get("x-kubernetes-int-or-string"):
            problems.append(f"{path} has no type")
        kind = node.get("type")
        if kind == "string" and "maxLength" not in node and "enum" not in node:
            problems.append(f"{path} has no maxLength")
        if kind == "array" and "maxItems" not in node:
            problems.append(f"{path} has no maxItems")
        if kind == "object" and "additionalProperties" in node and "maxProperties" not in node:
            problems.append(f"{path} has no maxProperties")
    assert problems == []


def test_every_rule_compiles_and_names_its_field() -> None:
    rules = list(iter_rules(SCHEMA))
    assert len(rules) >= 20
    for path, rule in rules:
        compile_rule(rule["rule"])
        assert rule["message"].startswith(("spec.", "metadata.")), (path, rule["message"])


def test_every_rule_refuses_some_invalid_case() -> None:
    """No rule is dead: each one's message shows up for at least one invalid manifest."""
    seen: set[str] = set()
    for _, mutate, _, _ in INVALID:
        manifest = base()
        mutate(manifest)
        seen.update(crd_refusals(manifest))
    messages = {rule["message"] for _, rule in iter_rules(SCHEMA)}
    untested = sorted(m for m in messages if not any(m in s for s in seen))
    assert untested == []


@pytest.mark.parametrize(("mutate"), [v[1] for v in VALID], ids=[v[0] for v in VALID])
def test_valid_manifests_pass_the_crd_and_the_parser(mutate: Any) -> None:
    manifest = base()
    mutate(manifest)
    assert crd_refusals(manifest) == []
    assert spec_fields(manifest) == []


@pytest.mark.parametrize(
    "document",
    [
        pytest.param(doc, id=f"{path.stem}-{doc['metadata']['name']}")
        for path in sorted((REPO_ROOT / "examples").glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ],
)
def test_examples_pass_the_crd_and_the_parser(document: dict[str, Any]) -> None:
    assert crd_refusals(document) == []
    assert spec_fields(document) == []


@pytest.mark.parametrize(
    ("mutate", "crd_words", "spec_field"),
    [v[1:] for v in INVALID],
    ids=[v[0] for v in INVALID],
)
def test_invalid_manifests_are_refused_by_both(
    mutate: Any, crd_words: str, spec_field: str
) -> None:
    manifest = base()
    mutate(manifest)
    refusals = crd_refusals(manifest)
    assert any(crd_words in r for r in refusals), refusals
    fields = spec_fields(manifest)
    assert any(f.startswith(spec_field) for f in fields), fields


def test_crd_defaults_mean_what_the_parser_assumes() -> None:
    """A minimal manifest parsed as written and as the API server stores it (defaults
    filled in) is the same AIService: the CRD and the parser agree on every default."""
    for manifest in (minimal(), base()):
        defaulted = apply_defaults(SCHEMA, copy.deepcopy(manifest))
        assert defaulted != manifest
        assert parse(defaulted) == parse(manifest)


def test_the_status_the_operator_writes_survives_the_status_schema() -> None:
    """The API server prunes status fields its schema does not declare: every field the
    operator and the rollout write must be declared, or state is lost on the next read."""
    from datetime import UTC, datetime, timedelta

    from aiservice_operator.core import analysis, rollout
    from aiservice_operator.core.compile import compile_aiservice, revision_name
    from aiservice_operator.core.conditions import summarize_status

    manifest = base()
    manifest["metadata"]["uid"] = "u-1"
    ais = parse(manifest)
    now = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    state, weight, _ = rollout.step(ais.spec, None, None, now)
    observation = analysis.Observation(
        events=100, errors=1, p99_latency_ms=120.0, window_seconds=60
    )
    for minute in range(1, 4):
        state, weight, _ = rollout.step(
            ais.spec, state, observation, now + timedelta(minutes=minute)
        )
    names = [revision_name(ais, m.name) for m in ais.spec.models]
    desired = compile_aiservice(ais, ready_revisions=names)
    knative = {
        "conditions": [{"type": "Ready", "status": "True"}],
        "url": "http://sentiment.default.example.com",
        "traffic": [{"revisionName": names[0], "percent": 100 - weight, "tag": "stable",
                     "url": "http://stable-sentiment.default.example.com"},
                    {"revisionName": names[1], "percent": weight, "tag": "canary"}],
    }  # fmt: skip
    status: dict[str, Any] = {"rollout": state.to_status()}
    status.update(summarize_status(ais, desired, knative, now, status))
    status["deadLetters"] = {"count": 3, "lastAt": "2026-05-01T12:00:00Z"}
    assert state.history, "the rollout recorded no decision"
    status_validator = jsonschema.Draft7Validator(
        to_json_schema(SCHEMA["properties"]["status"], root=False)
    )
    assert schema_errors(status_validator, status) == []
    assert {c["type"] for c in status["conditions"]} >= {"Ready", "RolloutProgressing"}


def _rule_cardinalities(
    schema: dict[str, Any], path: str = "", count: int = 1
) -> list[tuple[str, int, dict[str, Any], dict[str, Any]]]:
    """(path, how many instances of the node an object can hold, node, rule) per rule."""
    found = [(path, count, schema, rule) for rule in schema.get("x-kubernetes-validations") or ()]
    for name, child in (schema.get("properties") or {}).items():
        found += _rule_cardinalities(child, f"{path}.{name}", count)
    if isinstance(schema.get("items"), dict):
        found += _rule_cardinalities(
            schema["items"], f"{path}[]", count * schema.get("maxItems", 10**9)
        )
    if isinstance(schema.get("additionalProperties"), dict):
        extra = schema["additionalProperties"]
        found += _rule_cardinalities(
            extra, f"{path}{{}}", count * schema.get("maxProperties", 10**9)
        )
    return found


def test_rules_stay_well_inside_the_cel_cost_budget() -> None:
    """The API server multiplies a rule's cost by how often it can run (the maxItems above
    it) and refuses the CRD past 10M: keep deep rules cheap and their strings short."""
    for path, count, node, rule in _rule_cardinalities(SCHEMA):
        assert count <= 10_000, (path, count)
        if "matches(" in rule["rule"] and node.get("type") == "string":
            assert node["maxLength"] * count <= 1_000_000, (path, count, node["maxLength"])
        assert "self.all(k" not in rule["rule"], f"{path}: a rule on map keys costs too much"
