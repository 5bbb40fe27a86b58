"""The AIService manifests the CRD tests judge, shared with the cluster tier: a base
manifest, mutations that make it invalid (with the field and the message expected) and
mutations that keep it valid."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import yaml

from tests.support.schemas import REPO_ROOT


def base() -> dict[str, Any]:
    return dict(yaml.safe_load((REPO_ROOT / "examples" / "canary.yaml").read_text()))


def minimal() -> dict[str, Any]:
    return {
        "apiVersion": "aiservice.dev/v1alpha1",
        "kind": "AIService",
        "metadata": {"name": "minimal", "namespace": "default"},
        "spec": {
            "consumes": [{"type": "com.example.a"}],
            "function": {"image": "registry.example/fn:1", "entrypoint": "pkg.fn"},
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
QUALITY_LOG = _all(
    _set("spec.decisionLog", {}),
    _set("spec.rollout.shadow", True),
    _set("spec.rollout.analysis.minAgreement", 0.85),
)
"""The decision log on and one quality check: the other quality fields judged alone."""
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
    # Images Knative's webhook refuses (go-containerregistry's reference grammar).
    ("image-one-character-repository", _set("spec.function.image", "registry.example/f:1"),
     "spec.function.image must be an image", "spec.function.image"),
    ("image-uppercase-repository", _set("spec.function.image", "registry.example/Team/Fn:1"),
     "spec.function.image must be an image", "spec.function.image"),
    ("image-with-space", _set("spec.function.image", "registry.example/fn:1 latest"),
     "spec.function.image must be an image", "spec.function.image"),
    ("image-bad-digest", _set("spec.function.image", "registry.example/fn@sha256:abc"),
     "spec.function.image must be an image", "spec.function.image"),
    ("backoff-delay-neither-form", _set("spec.delivery", {"backoffDelay": "200 ms"}),
     "spec.delivery.backoffDelay must be an ISO-8601", "spec.delivery.backoffDelay"),
    ("timeout-over-10000d", _set("spec.delivery", {"timeout": "10001d"}),
     "spec.delivery.timeout must be an ISO-8601", "spec.delivery.timeout"),
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
     "spec.rollout.interval must be at least 1s", "spec.rollout.interval"),
    ("interval-milliseconds-too-short", _set("spec.rollout.interval", "999ms"),
     "spec.rollout.interval must be at least 1s", "spec.rollout.interval"),
    ("interval-over-10000d", _set("spec.rollout.interval", "10000d1s"),
     "spec.rollout.interval must be at least 1s and at most 10000d", "spec.rollout.interval"),
    ("interval-units-out-of-order", _set("spec.rollout.interval", "30m1h"),
     "spec.rollout.interval must be a duration", "spec.rollout.interval"),
    ("interval-fractional-days", _set("spec.rollout.interval", "1.5d"),
     "spec.rollout.interval must be a duration", "spec.rollout.interval"),
    ("interval-iso8601", _set("spec.rollout.interval", "PT1M"),
     "spec.rollout.interval must be a duration", "spec.rollout.interval"),
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
    ("claim-check-bucket-uppercase", _set("spec.function.claimCheck", {"bucket": "Photos"}),
     "spec.function.claimCheck.bucket", "spec.function.claimCheck.bucket"),
    ("claim-check-endpoint-with-credentials", _set("spec.function.claimCheck", {
        "bucket": "photos", "endpoint": "https://user:pw@s3.example.com"}),
     "spec.function.claimCheck.endpoint", "spec.function.claimCheck.endpoint"),
    ("claim-check-bad-content-type", _set("spec.function.claimCheck", {
        "bucket": "photos", "contentTypes": ["png"]}),
     "spec.function.claimCheck.contentTypes.0", "spec.function.claimCheck.contentTypes[0]"),
    ("claim-check-bad-host", _set("spec.function.claimCheck", {
        "bucket": "photos", "allowHosts": ["https://files.internal"]}),
     "spec.function.claimCheck.allowHosts.0", "spec.function.claimCheck.allowHosts[0]"),
    ("claim-check-too-slow", _set("spec.function.claimCheck", {
        "bucket": "photos", "timeoutSeconds": 601}),
     "spec.function.claimCheck.timeoutSeconds", "spec.function.claimCheck.timeoutSeconds"),
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
    # spec.decisionLog
    ("decision-sample-zero", _set("spec.decisionLog", {"sampleRate": 0}),
     "spec.decisionLog.sampleRate must be greater than 0", "spec.decisionLog.sampleRate"),
    ("decision-sample-over-one", _set("spec.decisionLog", {"sampleRate": 1.5}),
     "spec.decisionLog.sampleRate must be greater than 0", "spec.decisionLog.sampleRate"),
    ("decision-redact-without-data", _set("spec.decisionLog", {"redact": ["$.email"]}),
     "spec.decisionLog.redact applies only with includeData", "spec.decisionLog.redact"),
    ("decision-redact-not-a-path",
     _set("spec.decisionLog", {"includeData": True, "redact": ["email"]}),
     "spec.decisionLog.redact[] must be JSON paths", "spec.decisionLog.redact[0]"),
    ("decision-redact-bad-index",
     _set("spec.decisionLog", {"includeData": True, "redact": ["$.items[x]"]}),
     "spec.decisionLog.redact[] must be JSON paths", "spec.decisionLog.redact[0]"),
    ("decision-retention-under-an-hour", _set("spec.decisionLog", {"retention": "59m"}),
     "spec.decisionLog.retention must be at least 1h", "spec.decisionLog.retention"),
    ("decision-retention-zero", _set("spec.decisionLog", {"retention": "0d"}),
     "spec.decisionLog.retention must be at least 1h", "spec.decisionLog.retention"),
    ("decision-retention-words", _set("spec.decisionLog", {"retention": "30 days"}),
     "spec.decisionLog.retention must be a duration", "spec.decisionLog.retention"),
    ("decision-unknown-field", _set("spec.decisionLog", {"sample": 0.5}),
     "sample", "spec.decisionLog.sample"),
    # spec.rollout.analysis: the model-quality checks
    ("agreement-without-shadow", _all(
        QUALITY_LOG, _set("spec.rollout.shadow", False)),
     "spec.rollout.analysis.minAgreement needs spec.rollout.shadow: true",
     "spec.rollout.analysis.minAgreement"),
    ("quality-without-decision-log", _set("spec.rollout.analysis.maxOutputDrift", 0.2),
     "read the decision log: set spec.decisionLog", "spec.rollout.analysis"),
    ("quality-with-decision-log-off", _all(
        _set("spec.decisionLog", {"enabled": False}),
        _set("spec.rollout.analysis.maxOutputDrift", 0.2)),
     "read the decision log: set spec.decisionLog", "spec.rollout.analysis"),
    ("agreement-over-one", _all(QUALITY_LOG, _set("spec.rollout.analysis.minAgreement", 1.5)),
     "spec.rollout.analysis.minAgreement", "spec.rollout.analysis.minAgreement"),
    ("drift-negative", _all(QUALITY_LOG, _set("spec.rollout.analysis.maxOutputDrift", -0.1)),
     "spec.rollout.analysis.maxOutputDrift", "spec.rollout.analysis.maxOutputDrift"),
    ("accuracy-over-one", _all(QUALITY_LOG, _set("spec.rollout.analysis.minAccuracy", 2)),
     "spec.rollout.analysis.minAccuracy", "spec.rollout.analysis.minAccuracy"),
    ("accuracy-drop-over-one",
     _all(QUALITY_LOG, _set("spec.rollout.analysis.maxAccuracyDrop", 1.01)),
     "spec.rollout.analysis.maxAccuracyDrop", "spec.rollout.analysis.maxAccuracyDrop"),
    ("feedback-zero", _all(QUALITY_LOG, _set("spec.rollout.analysis.minFeedback", 0)),
     "spec.rollout.analysis.minFeedback", "spec.rollout.analysis.minFeedback"),
    ("compare-not-a-path", _all(QUALITY_LOG, _set("spec.rollout.analysis.compare", "label")),
     "spec.rollout.analysis.compare must be a JSON path", "spec.rollout.analysis.compare"),
    ("compare-path-without-data", _all(
        QUALITY_LOG, _set("spec.rollout.analysis.compare", "$.score")),
     "a path other than $.label needs spec.decisionLog.includeData",
     "spec.rollout.analysis.compare"),
    ("tolerance-on-the-label", _all(QUALITY_LOG, _set("spec.rollout.analysis.tolerance", 0.1)),
     "spec.rollout.analysis.tolerance needs compare", "spec.rollout.analysis.tolerance"),
    ("tolerance-negative", _all(
        QUALITY_LOG, _set("spec.decisionLog", {"includeData": True}),
        _set("spec.rollout.analysis.compare", "$.score"),
        _set("spec.rollout.analysis.tolerance", -1)),
     "spec.rollout.analysis.tolerance", "spec.rollout.analysis.tolerance"),
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
        "image": "registry.example/fn:1", "entrypoint": "pkg.fn",
        "env": [{"name": "LOG_LEVEL", "value": "debug"}, {"name": "EMPTY"}],
        "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": 2}}})),
    ("production-pod", _set("spec.function", {
        "image": "registry.example/fn:1", "entrypoint": "pkg.fn",
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
    ("claim-check", _set("spec.function.claimCheck", {
        "bucket": "photos.eu-1", "endpoint": "https://s3.example.com:9000/store",
        "secretName": "photos-s3", "prefix": "payments/fraud", "maxBytes": 10485760,
        "timeoutSeconds": 10, "contentTypes": ["image/png", "image/jpeg"],
        "allowHosts": ["files.internal", "*.svc.cluster.local", "10.0.0.0/8", "fd00::/8"]})),
    ("claim-check-minimal", _set("spec.function.claimCheck", {"bucket": "photos"})),
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
    ("decision-log-defaults", _set("spec.decisionLog", {})),
    ("decision-log-full", _set("spec.decisionLog", {
        "enabled": True, "sampleRate": 0.25, "includeData": True, "retention": "12h",
        "redact": ["$.customer.email", "$.items[*].text", "$.lines[0]"]})),
    ("decision-log-paused", _set("spec.decisionLog", {"enabled": False, "retention": "9999d"})),
    # One duration grammar (Go-style with days) in every field that takes a duration.
    ("durations-with-days", _all(
        _set("spec.rollout.interval", "1d12h"), _set("spec.decisionLog", {"retention": "1d12h"}))),
    ("durations-fractions-and-minutes", _all(
        _set("spec.rollout.interval", "1.5m"), _set("spec.decisionLog", {"retention": "90m"}))),
    ("delivery-go-style-durations", _set("spec.delivery", {
        "backoffDelay": "250ms", "timeout": "1m30s"})),
    ("quality-checks-on-the-label", _all(QUALITY_LOG, _set("spec.rollout.analysis", {
        "minAgreement": 0.85, "maxOutputDrift": 0.2, "minAccuracy": 0.8,
        "maxAccuracyDrop": 0.05, "minFeedback": 30, "compare": "$.label"}))),
    ("quality-numeric-output", _all(
        _set("spec.decisionLog", {"includeData": True, "sampleRate": 0.5}),
        _set("spec.rollout.shadow", True),
        _set("spec.rollout.analysis", {
            "minAgreement": 0.9, "maxOutputDrift": 0.1, "compare": "$.scores.positive",
            "tolerance": 0.05}))),
    ("quality-fields-without-checks", _set("spec.rollout.analysis", {
        "compare": "$.score", "minFeedback": 5})),
]  # fmt: skip
