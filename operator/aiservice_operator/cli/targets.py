"""Where the rollout commands read and steer AIServices: a cluster, or a local run.

The cluster is the current kube context (or `--context`, `--kubeconfig`), reached with the
`kubernetes` client; steering is an annotation on the AIService
(`aiservice.dev/<command>`, valued with the time it was asked), which the operator acts on
at its next tick, records in `status.rollout.history`, and removes.

While an `aisvc up` runs with the state directory (`--state-dir`, default `.aisvc`), and
neither `--context` nor `--kubeconfig` is given, the commands talk to that local run
instead; `--cluster` / `--local` choose explicitly.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Protocol

import typer
from aiservice_functions.timestamps import rfc3339

from aiservice_operator.cli.common import EXIT_USAGE, fail, one_line
from aiservice_operator.core.rollout import Command, annotation
from aiservice_operator.core.spec import API_GROUP, API_VERSION, PLURAL

NamespaceOpt = Annotated[
    str | None,
    typer.Option("-n", "--namespace", help="Namespace (default: the context's, else default)."),
]
ContextOpt = Annotated[str | None, typer.Option(help="kube context (default: the current one).")]
KubeconfigOpt = Annotated[
    str | None, typer.Option(help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config).")
]
TargetOpt = Annotated[
    bool | None,
    typer.Option(
        "--local/--cluster",
        help="Target the local run (`aisvc up`) or the cluster "
        "(default: the local run when one is running with the state directory).",
        show_default=False,
    ),
]

OPPOSITE: dict[str, Command] = {"pause": "resume", "resume": "pause"}


def command_patch(command: Command, now: datetime) -> dict[str, str | None]:
    """The annotations to set for `command` (pause and resume cancel each other)."""
    patch: dict[str, str | None] = {annotation(command): rfc3339(now)}
    if command in OPPOSITE:
        patch[annotation(OPPOSITE[command])] = None
    return patch


class Target(Protocol):
    """What the rollout commands need from a cluster or a local run."""

    default_namespace: str
    errors: tuple[type[Exception], ...]

    def get(self, namespace: str, name: str) -> dict[str, Any]: ...

    def list(self, namespace: str | None) -> list[dict[str, Any]]: ...

    def steer(self, namespace: str, name: str, command: Command) -> None: ...


# --- Cluster --------------------------------------------------------------------------


class NoCluster(Exception):
    """No kubeconfig to read and not in a pod: there is no cluster to talk to."""


def kubeconfig_files(explicit: str | None) -> tuple[str, list[str]]:
    """(the kubeconfig setting looked at, those of its files that exist). Read at each
    call: the `kubernetes` client reads $KUBECONFIG once, when it is imported."""
    given = explicit or os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")
    paths = [p for p in given.split(os.pathsep) if p]
    return given, [p for p in paths if Path(p).expanduser().is_file()]


class Cluster:
    """The few AIService reads and writes these commands need."""

    def __init__(self, kubeconfig: str | None, context: str | None) -> None:
        from kubernetes import client, config

        given, found = kubeconfig_files(kubeconfig)
        self.default_namespace = "default"
        if found:
            files = os.pathsep.join(found)
            api_client = config.new_client_from_config(config_file=files, context=context)
            contexts, active = config.list_kube_config_contexts(config_file=files)
            chosen = context or active["name"]
            entry = next((c for c in contexts if c["name"] == chosen), active)
            self.default_namespace = str(entry.get("context", {}).get("namespace") or "default")
        elif kubeconfig is not None or context is not None:
            raise NoCluster(f"kubeconfig {given} does not exist")
        else:
            try:
                config.load_incluster_config()
            except config.ConfigException:
                raise NoCluster(f"no kubeconfig at {given}, not in a pod") from None
            api_client = client.ApiClient()
        self.api = client.CustomObjectsApi(api_client)
        self.errors: tuple[type[Exception], ...] = (client.ApiException,)

    def get(self, namespace: str, name: str) -> dict[str, Any]:
        obj: Any = self.api.get_namespaced_custom_object(
            API_GROUP, API_VERSION, namespace, PLURAL, name
        )
        return dict(obj)

    def list(self, namespace: str | None) -> list[dict[str, Any]]:
        """The AIServices of `namespace`, or of every namespace (None)."""
        if namespace is None:
            found: Any = self.api.list_cluster_custom_object(API_GROUP, API_VERSION, PLURAL)
        else:
            found = self.api.list_namespaced_custom_object(
                API_GROUP, API_VERSION, namespace, PLURAL
            )
        return [dict(item) for item in found.get("items") or ()]

    def steer(self, namespace: str, name: str, command: Command) -> None:
        self.annotate(namespace, name, command_patch(command, datetime.now(UTC)))

    def annotate(self, namespace: str, name: str, annotations: Mapping[str, str | None]) -> None:
        self.api.patch_namespaced_custom_object(
            API_GROUP,
            API_VERSION,
            namespace,
            PLURAL,
            name,
            {"metadata": {"annotations": dict(annotations)}},
            _content_type="application/merge-patch+json",
        )


# --- Local run ------------------------------------------------------------------------


class TargetError(Exception):
    """A refusal from the local run, shaped like the API's (`status`, `reason`)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


class LocalTarget:
    """The same reads and writes against a running `aisvc up` (its status and command API)."""

    default_namespace = "default"
    errors: tuple[type[Exception], ...] = (TargetError,)

    def __init__(self, state: Mapping[str, Any]) -> None:
        self.status_url = str(state["statusUrl"])
        self.commands_url = str(state["commandsUrl"])
        started = state.get("startedAt")
        # The run's services exist since it started: their AGE in `aisvc list`.
        self.created = (
            rfc3339(datetime.fromtimestamp(started, UTC), digits=0)
            if isinstance(started, int | float)
            else ""
        )

    def _objects(self) -> Iterator[dict[str, Any]]:
        snapshot = self._call("GET", self.status_url)
        for service in snapshot.get("services", []):
            obj = dict(service["aiservice"])
            meta = dict(obj.get("metadata") or {})
            meta.setdefault("creationTimestamp", self.created)
            yield {**obj, "metadata": meta}

    def get(self, namespace: str, name: str) -> dict[str, Any]:
        for obj in self._objects():
            if (obj["metadata"].get("namespace"), obj["metadata"].get("name")) == (
                namespace,
                name,
            ):
                return obj
        raise TargetError(404, f"no AIService {namespace}/{name} in the local run")

    def list(self, namespace: str | None) -> list[dict[str, Any]]:
        objs = self._objects()
        return [o for o in objs if namespace in (None, o["metadata"].get("namespace"))]

    def steer(self, namespace: str, name: str, command: Command) -> None:
        # The header marks a command as not from a web page (see local.ingress).
        url = f"{self.commands_url}/{namespace}/{name}/{command}"
        self._call("POST", url, {"X-Aisvc-Command": "1"})

    @staticmethod
    def _call(method: str, url: str, headers: Mapping[str, str] | None = None) -> dict[str, Any]:
        import httpx

        try:
            response = httpx.request(method, url, headers=headers, timeout=10)
        except httpx.HTTPError as err:
            raise TargetError(503, f"the local run at {url} does not answer: {err}") from None
        body: dict[str, Any] = response.json() if response.content else {}
        if response.status_code >= 400:
            raise TargetError(response.status_code, str(body.get("error") or response.text))
        return body


# --- Choosing one ---------------------------------------------------------------------


def connect(
    kubeconfig: str | None, context: str | None, local: bool | None, state_dir: Path
) -> Target:
    """The local run with `state_dir` when one runs (and no cluster was named), else the
    cluster; when there is neither, say so in one line and exit 2."""
    from aiservice_operator.local.state_files import read_state

    may_be_local = local is not False and kubeconfig is None and context is None
    if may_be_local:
        state = read_state(state_dir)
        if state is not None:
            return LocalTarget(state)
        if local:
            raise fail(f"no local run (aisvc up) in {state_dir}", EXIT_USAGE)
    try:
        return Cluster(kubeconfig, context)
    except NoCluster as err:
        if may_be_local:
            raise fail(
                f"no cluster configured ({err}) and no local run (aisvc up) in {state_dir}; "
                "start one with `aisvc up -f FILE` (or pass --state-dir), or pass "
                "--kubeconfig or --context",
                EXIT_USAGE,
            ) from None
        raise fail(f"cannot reach a cluster: {err}", EXIT_USAGE) from None
    except Exception as err:  # config errors come in many types; say which and stop
        raise fail(f"cannot reach a cluster: {one_line(err)}", EXIT_USAGE) from None


def api_failure(err: Exception, namespace: str, name: str | None = None) -> typer.Exit:
    """A failed read or write as one line (exit 1); the caller raises the returned Exit."""
    status = getattr(err, "status", None)
    if status == 404 and name is not None:
        return fail(f"aiservice {namespace}/{name} not found")
    reason = getattr(err, "reason", "") or err
    return fail(f"the API refused the request ({status}): {one_line(reason)}")
