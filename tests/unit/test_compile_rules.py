"""The compiler's guarantees: stable names and hashes, revision-before-traffic, traffic
that always sums to 100, the function's environment, delivery and shadow Triggers."""

from __future__ import annotations

import copy
import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from aiservice_functions import contract
from aiservice_operator.core.compile import (
    LABEL_ROLE,
    CompileOptions,
    Desired,
    child_labels,
    compile_aiservice,
    intended_weights,
    ownership_conflict,
    revision_name,
    steady_state,
    trigger_name,
)
from aiservice_operator.core.spec import AIService, parse

UID = "9b2e4c1a-0000-4000-8000-00000000abcd"


def manifest(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "apiVersion": "aiservice.dev/v1alpha1",
        "kind": "AIService",
        "metadata": {"name": "reviews", "namespace": "shop", "uid": UID},
        "spec": {
            "consumes": [{"type": "com.example.review.submitted"}],
            "produces": "com.example.review.scored",
            "function": {"image": "registry.example/fn:1", "entrypoint": "pkg.sentiment"},
            "models": [
                {"name": "v1", "uri": "file:///models/v1.pt"},
                {"name": "v2", "uri": "file:///models/v2.pt"},
            ],
            "traffic": {"stable": "v1"},
            "rollout": {"canary": "v2", "steps": [10, 50, 100]},
        },
    }
    base["spec"].update(spec)
    return base


def ais_of(m: dict[str, Any]) -> AIService:
    return parse(m)


def changed(path: str, value: Any, base: dict[str, Any] | None = None) -> AIService:
    m = copy.deepcopy(base or manifest())
    node: Any = m
    keys = [int(k) if k.isdigit() else k for k in path.split(".")]
    for key in keys[:-1]:
        node = node[key]
    node[keys[-1]] = value
    return parse(m)


def all_ready(ais: AIService) -> list[str]:
    return [revision_name(ais, m.name) for m in ais.spec.models]


def targets(desired: Desired) -> list[dict[str, Any]]:
    return list(desired.service["spec"]["traffic"])


# --- Names and hashes ----------------------------------------------------------------


def test_revision_names_are_service_model_hash_and_fit_a_dns_label() -> None:
    m = manifest()
    m["metadata"]["name"] = "a" * 40
    m["spec"]["models"][0]["name"] = "m" * 12
    m["spec"]["traffic"] = {"stable": "m" * 12}
    ais = parse(m)
    name = revision_name(ais, "m" * 12)
    assert re.fullmatch(r"a{40}-m{12}-[0-9a-f]{8}", name)
    assert len(name) <= 63


def test_changing_a_model_uri_renames_only_that_revision() -> None:
    before = ais_of(manifest())
    after = changed("spec.models.1.uri", "file:///models/v2b.pt")
    assert revision_name(after, "v2") != revision_name(before, "v2")
    assert revision_name(after, "v1") == revision_name(before, "v1")


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("spec.delivery", {"retry": 7}),
        ("spec.consumes", [{"type": "com.example.other"}]),
        ("spec.rollout.steps", [50, 100]),
        ("spec.rollout.analysis", {"maxErrorRate": 0.5}),
        ("spec.broker", "other"),
        ("spec.deadLetter", {"sink": {"uri": "http://dlq.example"}}),
        ("metadata.uid", "another-uid"),
        ("metadata.generation", 9),
    ],
)
def test_changes_outside_the_pod_keep_revision_names(path: str, value: Any) -> None:
    before = ais_of(manifest())
    after = changed(path, value)
    assert all_ready(after) == all_ready(before)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("spec.function.image", "registry.example/fn:2"),
        ("spec.function.env", [{"name": "LOG_LEVEL", "value": "debug"}]),
        ("spec.function.concurrency", 4),
        ("spec.autoscaling", {"maxScale": 3}),
        ("spec.produces", "com.example.review.rated"),
    ],
)
def test_changes_to_the_pod_rename_every_revision(path: str, value: Any) -> None:
    before = ais_of(manifest())
    after = changed(path, value)
    assert set(all_ready(after)).isdisjoint(all_ready(before))


def test_trigger_name_ignores_filter_order_but_not_filter_content() -> None:
    a = {"exact": {"source": "/shop", "subject": "x"}}
    b = {"any": [{"prefix": {"source": "/a"}}, {"suffix": {"subject": ".b"}}]}
    b_reordered = {"any": [{"suffix": {"subject": ".b"}}, {"prefix": {"source": "/a"}}]}
    a_reordered = {"exact": {"subject": "x", "source": "/shop"}}
    a_split = [{"exact": {"subject": "x"}}, {"exact": {"source": "/shop"}}]

    def name(filters: list[dict[str, Any]]) -> str:
        ais = parse(manifest(consumes=[{"type": "com.example.t", "filters": filters}]))
        return trigger_name(ais, ais.spec.consumes[0])

    assert name([a, b]) == name([b, a]) == name([b_reordered, a_reordered])
    assert name([a, b]) == name([*a_split, b]) == name([{"all": [b, a]}])
    assert name([a]) != name([b])
    assert name([{"not": a}]) != name([a])
    assert re.fullmatch(r"reviews-[0-9a-f]{8}", name([a]))


def test_trigger_name_depends_on_the_type_only_through_the_consumes_entry() -> None:
    ais = ais_of(manifest())
    other = changed("spec.delivery", {"retry": 9})
    assert trigger_name(ais, ais.spec.consumes[0]) == trigger_name(other, other.spec.consumes[0])
    renamed = changed("spec.consumes", [{"type": "com.example.review.edited"}])
    assert trigger_name(renamed, renamed.spec.consumes[0]) != trigger_name(
        ais, ais.spec.consumes[0]
    )


# --- Revision before traffic ---------------------------------------------------------


def test_before_any_revision_is_ready_traffic_follows_the_latest_ready() -> None:
    ais = ais_of(manifest())
    desired = compile_aiservice(ais)
    assert targets(desired) == [{"latestRevision": True, "percent": 100}]
    assert desired.template_model == "v1"
    assert desired.pending_models == ("v1", "v2")
    assert desired.service["spec"]["template"]["metadata"]["name"] == revision_name(ais, "v1")


def test_canary_weight_waits_for_the_canary_revision() -> None:
    ais = ais_of(manifest())
    stable, canary = all_ready(ais)
    desired = compile_aiservice(ais, weights=intended_weights(ais, 10), ready_revisions=[stable])
    assert desired.template_model == "v2"
    assert desired.service["spec"]["template"]["metadata"]["name"] == canary
    assert desired.pending_models == ("v2",)
    assert dict(desired.weights) == {"v1": 100}
    assert all(t["revisionName"] == stable for t in targets(desired))
    assert {t["tag"] for t in targets(desired)} == {"stable", "v1"}


def test_once_both_are_ready_traffic_splits_by_revision_with_tags() -> None:
    ais = ais_of(manifest())
    stable, canary = all_ready(ais)
    desired = compile_aiservice(
        ais, weights=intended_weights(ais, 10), ready_revisions=[stable, canary]
    )
    assert desired.template_model == "v1"
    assert desired.pending_models == ()
    assert dict(desired.weights) == {"v1": 90, "v2": 10}
    assert targets(desired) == [
        {"revisionName": stable, "percent": 90, "tag": "stable", "latestRevision": False},
        {"revisionName": canary, "percent": 10, "tag": "canary", "latestRevision": False},
        {"revisionName": stable, "percent": 0, "tag": "v1", "latestRevision": False},
        {"revisionName": canary, "percent": 0, "tag": "v2", "latestRevision": False},
    ]


def test_a_split_routes_pending_shares_to_stable_until_ready() -> None:
    m = manifest(traffic={"stable": "v1", "split": [{"model": "v1", "percent": 70},
                                                     {"model": "v2", "percent": 30}]})  # fmt: skip
    del m["spec"]["rollout"]
    ais = parse(m)
    v1, v2 = all_ready(ais)
    assert dict(compile_aiservice(ais, ready_revisions=[v1]).weights) == {"v1": 100}
    desired = compile_aiservice(ais, ready_revisions=[v1, v2])
    assert dict(desired.weights) == {"v1": 70, "v2": 30}
    by_tag = {t["tag"]: t["percent"] for t in targets(desired)}
    assert by_tag == {"stable": 70, "v1": 0, "v2": 30}


def test_rolling_out_converges_without_routing_to_a_missing_revision() -> None:
    """Play Knative: each reconcile, the template's revision becomes ready. Traffic must
    never name a revision that is not ready, and every model ends up ready and tagged."""
    m = manifest()
    m["spec"]["models"].append({"name": "v3", "uri": "file:///models/v3.pt"})
    ais = parse(m)
    ready: set[str] = set()
    for _ in range(10):
        desired = compile_aiservice(ais, weights=intended_weights(ais, 50), ready_revisions=ready)
        traffic = targets(desired)
        assert sum(t["percent"] for t in traffic) == 100
        assert all(t.get("revisionName", "") in ready or t.get("latestRevision") for t in traffic)
        if not desired.pending_models:
            break
        ready.add(desired.service["spec"]["template"]["metadata"]["name"])
    assert not desired.pending_models
    assert len(ready) == 3
    assert dict(desired.weights) == {"v1": 50, "v2": 50}
    assert {t["tag"] for t in targets(desired)} == {"stable", "canary", "v1", "v2", "v3"}


@pytest.mark.parametrize("weight", [0, 1, 10, 50, 99, 100])
def test_traffic_always_sums_to_100(weight: int) -> None:
    ais = ais_of(manifest())
    for ready in ([], all_ready(ais)[:1], all_ready(ais)[1:], all_ready(ais)):
        desired = compile_aiservice(
            ais, weights=intended_weights(ais, weight), ready_revisions=ready
        )
        assert sum(t["percent"] for t in targets(desired)) == 100
        assert sum(desired.weights.values()) == 100


def test_bad_weights_are_refused() -> None:
    ais = ais_of(manifest())
    with pytest.raises(ValueError, match="undeclared"):
        compile_aiservice(ais, weights={"v9": 100})
    with pytest.raises(ValueError, match="sum to 100"):
        compile_aiservice(ais, weights={"v1": 50, "v2": 40})
    with pytest.raises(ValueError, match=r"0\.\.100"):
        intended_weights(ais, 101)
    no_rollout = manifest()
    del no_rollout["spec"]["rollout"]
    with pytest.raises(ValueError, match=r"no spec\.rollout"):
        intended_weights(parse(no_rollout), 10)


# --- Revision template ---------------------------------------------------------------


def _container(desired: Desired, model: str) -> dict[str, Any]:
    template = desired.revisions[desired.revision_names[model]]
    (container,) = template["spec"]["containers"]
    return dict(container)


def test_function_environment_uses_the_contract_names() -> None:
    m = manifest()
    m["spec"]["models"][1] = {"name": "v2", "uri": "https://m.example/v2.pt", "sha256": "b" * 64}
    m["spec"]["function"]["env"] = [{"name": "LOG_LEVEL", "value": "debug"}]
    m["spec"]["function"]["batching"] = {"maxBatchSize": 16, "maxWaitMs": 4}
    desired = steady_state(parse(m))
    env = {e["name"]: e["value"] for e in _container(desired, "v2")["env"]}
    assert env[contract.ENV_ENTRYPOINT] == "pkg.sentiment"
    assert env[contract.ENV_MODEL_URI] == "https://m.example/v2.pt"
    assert env[contract.ENV_MODEL_SHA256] == "b" * 64
    assert env[contract.ENV_MODEL_VERSION] == "v2"
    assert env[contract.ENV_REPLY_TYPE] == "com.example.review.scored"
    assert env[contract.ENV_SERVICE_NAME] == "reviews"
    assert env[contract.ENV_NAMESPACE] == "shop"
    assert env[contract.ENV_CONCURRENCY] == "16"
    assert env[contract.ENV_TIMEOUT_SECONDS] == "60"
    assert env[contract.ENV_BATCH_MAX_SIZE] == "16"
    assert env[contract.ENV_BATCH_MAX_WAIT_MS] == "4"
    assert list(env)[-1] == "LOG_LEVEL"
    assert contract.ENV_MODEL_SHA256 not in {e["name"] for e in _container(desired, "v1")["env"]}
    defaults = steady_state(parse(manifest()))
    names = {e["name"] for e in _container(defaults, "v1")["env"]}
    assert not names & {contract.ENV_BATCH_MAX_SIZE, contract.ENV_BATCH_MAX_WAIT_MS}


def test_claim_check_becomes_the_runtime_environment_and_the_secret_its_keys() -> None:
    m = manifest()
    m["spec"]["function"]["claimCheck"] = {
        "bucket": "photos", "endpoint": "http://s3.store.svc:8333", "secretName": "photos-s3",
        "contentTypes": ["image/png", "image/jpeg"], "allowHosts": ["files.internal"],
        "maxBytes": 5000000,
    }  # fmt: skip
    env = _container(steady_state(parse(m)), "v1")["env"]
    plain = {e["name"]: e.get("value") for e in env}
    assert plain[contract.ENV_CLAIMCHECK_BUCKET] == "photos"
    assert plain[contract.ENV_CLAIMCHECK_ENDPOINT] == "http://s3.store.svc:8333"
    assert plain[contract.ENV_CLAIMCHECK_MAX_BYTES] == "5000000"
    assert plain[contract.ENV_CLAIMCHECK_TIMEOUT_SECONDS] == "30"
    assert plain[contract.ENV_CLAIMCHECK_CONTENT_TYPES] == "image/png,image/jpeg"
    assert plain[contract.ENV_CLAIMCHECK_ALLOW_HOSTS] == "files.internal"
    assert contract.ENV_CLAIMCHECK_PREFIX not in plain  # the runtime defaults it
    secret = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in env if "valueFrom" in e}
    assert secret == {
        "AWS_ACCESS_KEY_ID": {"name": "photos-s3", "key": "access-key-id"},
        "AWS_SECRET_ACCESS_KEY": {"name": "photos-s3", "key": "secret-access-key"},
    }
    without = {e["name"] for e in _container(steady_state(parse(manifest())), "v1")["env"]}
    assert not any(name.startswith("AISVC_CLAIMCHECK") for name in without)


def test_claim_check_secret_and_env_credentials_are_refused_together() -> None:
    m = manifest()
    m["spec"]["function"]["claimCheck"] = {"bucket": "photos", "secretName": "photos-s3"}
    m["spec"]["function"]["env"] = [{"name": "AWS_ACCESS_KEY_ID", "value": "x"}]
    with pytest.raises(ValueError, match=r"spec\.function\.claimCheck\.secretName"):
        parse(m)
    m["spec"]["function"]["claimCheck"] = {"bucket": "photos", "region": "eu"}
    m["spec"]["function"]["env"] = []
    with pytest.raises(ValueError, match=r"spec\.function\.claimCheck\.region"):
        parse(m)
    m["spec"]["function"]["claimCheck"] = {"endpoint": "http://s3:9000"}
    with pytest.raises(ValueError, match=r"spec\.function\.claimCheck\.bucket: is required"):
        parse(m)


def test_revision_template_carries_scaling_concurrency_timeout_and_probe() -> None:
    m = manifest(autoscaling={"minScale": 1, "maxScale": 4, "metric": "rps", "target": 150})
    m["spec"]["function"].update(concurrency=8, timeoutSeconds=20)
    desired = steady_state(parse(m))
    template = desired.revisions[desired.revision_names["v1"]]
    assert template["metadata"]["annotations"] == {
        "autoscaling.knative.dev/min-scale": "1",
        "autoscaling.knative.dev/max-scale": "4",
        "autoscaling.knative.dev/metric": "rps",
        "autoscaling.knative.dev/target": "150",
    }
    assert template["metadata"]["labels"]["aiservice.dev/model"] == "v1"
    assert template["spec"]["containerConcurrency"] == 8
    assert template["spec"]["timeoutSeconds"] == 20
    container = _container(desired, "v1")
    assert container["readinessProbe"]["httpGet"]["path"] == contract.PATH_READINESS
    assert container["ports"] == [{"name": "http1", "containerPort": contract.DEFAULT_PORT}]


def test_children_are_owned_and_labelled() -> None:
    ais = ais_of(manifest(rollout={"canary": "v2", "shadow": True}))
    desired = compile_aiservice(
        ais, weights=intended_weights(ais, 10), ready_revisions=all_ready(ais)
    )
    for obj in desired.objects():
        meta = obj["metadata"]
        assert meta["namespace"] == "shop"
        assert child_labels(ais).items() <= meta["labels"].items()
        assert meta["ownerReferences"] == [
            {"apiVersion": "aiservice.dev/v1alpha1", "kind": "AIService", "name": "reviews",
             "uid": UID, "controller": True, "blockOwnerDeletion": True}
        ]  # fmt: skip


def test_without_a_uid_children_have_no_owner() -> None:
    m = manifest()
    del m["metadata"]["uid"]
    assert all("ownerReferences" not in o["metadata"] for o in steady_state(parse(m)).objects())


# --- Triggers ------------------------------------------------------------------------


def test_trigger_delivers_to_the_service_with_the_default_dead_letter_sink() -> None:
    ais = parse(manifest(delivery={"retry": 5, "backoffPolicy": "linear", "backoffDelay": "PT1S"}))
    options = CompileOptions(event_store_url="http://store.ops.svc:8080/")
    (trigger,) = steady_state(ais, options).triggers
    assert trigger["spec"]["broker"] == "default"
    assert trigger["spec"]["subscriber"] == {
        "ref": {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": "reviews"}
    }
    assert trigger["spec"]["delivery"] == {
        "retry": 5,
        "backoffPolicy": "linear",
        "backoffDelay": "PT1S",
        "timeout": "PT30S",
        "deadLetterSink": {
            "uri": "http://store.ops.svc:8080" + contract.dead_letter_path("shop", "reviews")
        },
    }
    assert trigger["spec"]["filters"][0] == {"exact": {"type": "com.example.review.submitted"}}


@pytest.mark.parametrize(
    ("sink", "expected"),
    [
        ({"uri": "https://dlq.example/x"}, {"uri": "https://dlq.example/x"}),
        (
            {"ref": {"apiVersion": "v1", "kind": "Service", "name": "dlq", "namespace": "ops"}},
            {"ref": {"apiVersion": "v1", "kind": "Service", "name": "dlq", "namespace": "ops"}},
        ),
    ],
)
def test_a_spec_sink_replaces_the_event_store(sink: dict[str, Any], expected: Any) -> None:
    (trigger,) = steady_state(parse(manifest(deadLetter={"sink": sink}))).triggers
    assert trigger["spec"]["delivery"]["deadLetterSink"] == expected


def test_one_trigger_per_consumes_entry() -> None:
    ais = parse(manifest(consumes=[{"type": "com.example.a"}, {"type": "com.example.b"}]))
    names = [t["metadata"]["name"] for t in steady_state(ais).triggers]
    assert len(set(names)) == 2


def test_shadow_triggers_mirror_to_the_canary_tag_while_it_is_ready_and_not_full() -> None:
    ais = parse(manifest(rollout={"canary": "v2", "shadow": True}))
    ready = all_ready(ais)
    options = CompileOptions(cluster_domain="corp.local")
    during = compile_aiservice(ais, weights=intended_weights(ais, 0), ready_revisions=ready,
                               options=options)  # fmt: skip
    primary, shadow = during.triggers
    assert shadow["metadata"]["labels"]["aiservice.dev/role"] == "shadow"
    assert shadow["metadata"]["name"] != primary["metadata"]["name"]
    assert shadow["spec"]["filters"] == primary["spec"]["filters"]
    assert shadow["spec"]["subscriber"] == {
        "uri": "http://canary-reviews.shop.svc.corp.local" + contract.SHADOW_PATH
    }
    assert "deadLetterSink" not in shadow["spec"]["delivery"]
    pending = compile_aiservice(ais, weights=intended_weights(ais, 0), ready_revisions=ready[:1])
    assert len(pending.triggers) == 1
    full = compile_aiservice(ais, weights=intended_weights(ais, 100), ready_revisions=ready)
    assert len(full.triggers) == 1
    no_shadow = parse(manifest())
    assert len(compile_aiservice(no_shadow, ready_revisions=all_ready(no_shadow)).triggers) == 1
    # A rolled-back shadow canary (the rollout says mirroring ended) gets no more copies.
    ended = compile_aiservice(
        ais, weights=intended_weights(ais, 0), ready_revisions=ready, mirror=False
    )
    assert [t["metadata"]["labels"]["aiservice.dev/role"] for t in ended.triggers] == ["primary"]


def test_shadow_trigger_names_do_not_collide_with_another_services_primary() -> None:
    shadowed = parse(manifest(rollout={"canary": "v2", "shadow": True}))
    other = manifest()
    other["metadata"]["name"] = "reviews-shadow"
    neighbour = parse(other)
    desired = compile_aiservice(
        shadowed, weights=intended_weights(shadowed, 10), ready_revisions=all_ready(shadowed)
    )
    shadow_names = {t["metadata"]["name"] for t in desired.triggers[1:]}
    assert shadow_names and all(n.startswith("reviews-shadow-") for n in shadow_names)
    assert shadow_names.isdisjoint(t["metadata"]["name"] for t in steady_state(neighbour).triggers)


def test_only_its_own_or_orphaned_children_are_the_aiservices_to_manage() -> None:
    ais = ais_of(manifest())
    ours = steady_state(ais).service
    assert ownership_conflict(ais, "Knative Service", None) == ""
    assert ownership_conflict(ais, "Knative Service", ours) == ""
    orphan = {"metadata": {"name": "reviews", "labels": child_labels(ais)}}
    assert ownership_conflict(ais, "Knative Service", orphan) == ""
    other = {"kind": "AIService", "name": "reviews", "uid": "old", "controller": True}
    controlled = {"metadata": {**orphan["metadata"], "ownerReferences": [other]}}
    assert "controlled by AIService reviews (uid old)" in ownership_conflict(
        ais, "Knative Service", controlled
    )
    theirs = {"metadata": {"name": "reviews", "labels": {"app": "reviews"}}}
    assert "not managed by aiservice-operator" in ownership_conflict(ais, "Knative Service", theirs)


def test_an_empty_env_value_is_written_as_the_api_server_stores_it() -> None:
    """The API server drops `value: ""` (found against the real one): the compiler leaves it
    out too, so what it reads back contains what it wrote."""
    body = manifest()
    body["spec"].pop("produces", None)
    body["spec"]["function"]["env"] = [{"name": "EMPTY"}]
    ais = parse(body)
    (container,) = steady_state(ais).service["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env[contract.ENV_REPLY_TYPE] == {"name": contract.ENV_REPLY_TYPE}
    assert env["EMPTY"] == {"name": "EMPTY"}
    assert all(e.get("value", "x") != "" for e in container["env"])


def _workers_env(container: dict[str, Any]) -> list[str]:
    return [e["value"] for e in container["env"] if e["name"] == contract.ENV_WORKERS]


def test_a_function_without_cpu_gets_two_cpus_and_one_worker_per_cpu() -> None:
    container = _container(steady_state(parse(manifest())), "v1")
    assert container["resources"]["requests"]["cpu"] == "2"
    assert container["resources"]["limits"]["cpu"] == "2"
    assert _workers_env(container) == ["2"]


@pytest.mark.parametrize(
    ("resources", "concurrency", "workers"),
    [
        ({"limits": {"cpu": "1500m"}, "requests": {"cpu": "500m"}}, 16, ["2"]),  # the limit
        ({"requests": {"cpu": "4", "memory": "1Gi"}}, 16, ["4"]),  # no limit: the request
        ({"requests": {"cpu": "4"}}, 3, ["3"]),  # never more than the events let in
        ({"requests": {"cpu": "250m"}}, 0, ["1"]),
    ],
)
def test_workers_follow_the_cpu_the_spec_gives(
    resources: dict[str, Any], concurrency: int, workers: list[str]
) -> None:
    m = manifest()
    m["spec"]["function"].update(resources=resources, concurrency=concurrency)
    container = _container(steady_state(parse(m)), "v1")
    assert container["resources"] == resources
    assert _workers_env(container) == workers


# --- decision log ---------------------------------------------------------------------


def _logged(decision_log: dict[str, object] | None) -> AIService:
    data = manifest()
    if decision_log is not None:
        data["spec"]["decisionLog"] = decision_log
    return parse(data)


def test_no_decision_log_no_capture_triggers() -> None:
    for ais in (_logged(None), _logged({"enabled": False})):
        roles = {t["metadata"]["labels"][LABEL_ROLE] for t in steady_state(ais).triggers}
        assert roles == {"primary"}


def test_decision_log_copies_inputs_and_replies_to_the_store_with_its_settings() -> None:
    ais = _logged({"sampleRate": 0.25, "includeData": True, "redact": ["$.a.b"], "retention": "2d"})
    options = CompileOptions(event_store_url="http://es:9000/")
    triggers = {t["metadata"]["labels"][LABEL_ROLE]: t for t in steady_state(ais, options).triggers}
    primary, inputs, replies, feedback = (
        triggers["primary"],
        triggers["decision-inputs"],
        triggers["decision-replies"],
        triggers["decision-feedback"],
    )
    # Inputs: exactly what the service's own Trigger selects.
    assert inputs["spec"]["filters"] == primary["spec"]["filters"]
    # Replies: this service's replies only (the trailing slash keeps `sentiment-x` out).
    assert replies["spec"]["filters"] == [
        {"exact": {"type": ais.spec.produces}},
        {"prefix": {"source": f"/aiservices/{ais.namespace}/{ais.name}/"}},
    ]
    # Feedback: any system's `dev.aiservice.feedback` events naming this AIService
    # (Knative filters on attributes, not on the decision id in the data).
    assert feedback["spec"]["filters"] == [
        {"exact": {"type": "dev.aiservice.feedback"}},
        {"exact": {"aiservice": ais.name}},
    ]
    for trigger, role in ((inputs, "inputs"), (replies, "replies"), (feedback, "feedback")):
        url = urlsplit(trigger["spec"]["subscriber"]["uri"])
        assert url.netloc == "es:9000"
        assert url.path == f"/v1/namespaces/{ais.namespace}/aiservices/{ais.name}/decisions/{role}"
        assert parse_qs(url.query) == {
            "sample": ["0.25"],
            "data": ["true"],
            "retention": ["172800"],
            "redact": ["$.a.b"],
        }
        # A failed log delivery is retried but never becomes a dead letter of the service.
        assert "deadLetterSink" not in trigger["spec"]["delivery"]
        assert trigger["metadata"]["name"].startswith(f"{ais.name}-log-")
    assert len({t["metadata"]["name"] for t in triggers.values()}) == 4


def test_with_a_sink_key_every_decision_sink_carries_the_credential() -> None:
    key = b"0123456789abcdef-compile-test"
    ais = _logged({"includeData": True})
    options = CompileOptions(event_store_url="http://es:9000", sink_key=key)
    credential = contract.sink_credential(key, ais.namespace, ais.name)
    sinks = [
        urlsplit(t["spec"]["subscriber"]["uri"]).path
        for t in steady_state(ais, options).triggers
        if t["metadata"]["labels"][LABEL_ROLE].startswith("decision-")
    ]
    assert len(sinks) == 3
    assert all(path.endswith("/" + credential) for path in sinks)


@pytest.mark.parametrize("gpu", [False, True])
def test_every_function_runs_on_the_device_torch_sees(gpu: bool) -> None:
    """`AISVC_DEVICE=auto` for every revision: a pod given a GPU uses it, one without
    runs on CPU, and only the resource request differs between the two manifests."""
    m = manifest()
    if gpu:
        m["spec"]["function"]["resources"] = {
            "requests": {"nvidia.com/gpu": 1},
            "limits": {"nvidia.com/gpu": 1},
        }
    container = _container(steady_state(parse(m)), "v1")
    device = [e for e in container["env"] if e["name"] == contract.ENV_DEVICE]
    assert device == [{"name": contract.ENV_DEVICE, "value": "auto"}]
    assert not any(e["name"] == contract.ENV_PRECISION for e in container["env"])


def test_a_shadow_canarys_answers_go_to_the_decision_log_only() -> None:
    data = manifest()
    data["spec"]["decisionLog"] = {}
    data["spec"]["rollout"] = {"canary": "v2", "shadow": True}
    ais = parse(data)
    options = CompileOptions(event_store_url="http://es:9000")
    triggers = compile_aiservice(ais, options=options, weights={"v1": 100, "v2": 0}).triggers
    by_role = {t["metadata"]["labels"][LABEL_ROLE]: t for t in triggers}
    shadow = by_role["decision-shadow"]
    assert shadow["spec"]["filters"] == [
        {"exact": {"type": contract.SHADOW_REPLY_TYPE}},
        {"prefix": {"source": f"/aiservices/{ais.namespace}/{ais.name}/"}},
    ]
    path = urlsplit(shadow["spec"]["subscriber"]["uri"]).path
    assert path == f"/v1/namespaces/{ais.namespace}/aiservices/{ais.name}/decisions/shadow"
    # No other Trigger selects the shadow type: no consumer acts on a shadow answer.
    others = [t for t in triggers if t is not shadow]
    assert all(contract.SHADOW_REPLY_TYPE not in str(t["spec"]["filters"]) for t in others)
    # Without shadow mode there is nothing to log.
    data["spec"]["rollout"]["shadow"] = False
    roles = {t["metadata"]["labels"][LABEL_ROLE] for t in steady_state(parse(data)).triggers}
    assert "decision-shadow" not in roles
