"""`aisvc promote|abort|pause|resume|status NAME`: steer and watch a canary rollout.

The commands talk to the cluster of the current kube context (or `--context`,
`--kubeconfig`) with the `kubernetes` client. Steering is an annotation on the AIService
(`aiservice.dev/<command>`, valued with the time it was asked); the operator acts on it at
its next tick, records the decision in `status.rollout.history`, and removes it.

While an `aisvc up` runs in this directory (and neither `--context` nor `--kubeconfig`
is given), they talk to that local run instead; `--cluster` / `--local` choose explicitly.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from aiservice_functions.timestamps import rfc3339
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from aiservice_operator.core.rollout import COMMANDS, Command, annotation
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
        "(default: the local run when one is running here).",
        show_default=False,
    ),
]

BAR_WIDTH = 40
OPPOSITE: dict[str, Command] = {"pause": "resume", "resume": "pause"}


# --- Cluster I/O ---------------------------------------------------------------------


class Cluster:
    """The few AIService reads and writes these commands need."""

    def __init__(self, kubeconfig: str | None, context: str | None) -> None:
        from kubernetes import client, config

        try:
            api_client = config.new_client_from_config(config_file=kubeconfig, context=context)
            _, active = config.list_kube_config_contexts(config_file=kubeconfig)
            chosen = context or active["name"]
            contexts, _ = config.list_kube_config_contexts(config_file=kubeconfig)
            entry = next((c for c in contexts if c["name"] == chosen), active)
            self.default_namespace = str(entry.get("context", {}).get("namespace") or "default")
        except config.ConfigException:
            config.load_incluster_config()
            api_client = client.ApiClient()
            self.default_namespace = "default"
        self.api = client.CustomObjectsApi(api_client)
        self.errors: tuple[type[Exception], ...] = (client.ApiException,)

    def get(self, namespace: str, name: str) -> dict[str, Any]:
        obj: Any = self.api.get_namespaced_custom_object(
            API_GROUP, API_VERSION, namespace, PLURAL, name
        )
        return dict(obj)

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

    def get(self, namespace: str, name: str) -> dict[str, Any]:
        snapshot = self._call("GET", self.status_url)
        for service in snapshot.get("services", []):
            if (service["namespace"], service["name"]) == (namespace, name):
                return dict(service["aiservice"])
        raise TargetError(404, f"no AIService {namespace}/{name} in the local run")

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


def _connect(
    kubeconfig: str | None, context: str | None, local: bool | None = None
) -> Cluster | LocalTarget:
    if local is not False and kubeconfig is None and context is None:
        from aiservice_operator.local.runner import read_state

        state = read_state()
        if state is not None:
            return LocalTarget(state)
        if local:
            typer.echo("no local run (`aisvc up`) is running in this directory", err=True)
            raise typer.Exit(code=2)
    try:
        return Cluster(kubeconfig, context)
    except Exception as err:  # config errors come in many types; say which and stop
        typer.echo(f"cannot reach a cluster: {err}", err=True)
        raise typer.Exit(code=2) from None


def _fail_api(err: Exception, namespace: str, name: str) -> typer.Exit:
    status = getattr(err, "status", None)
    if status == 404:
        typer.echo(f"aiservice {namespace}/{name} not found", err=True)
    else:
        reason = getattr(err, "reason", "") or err
        typer.echo(f"the API refused the request ({status}): {reason}", err=True)
    return typer.Exit(code=1)


# --- Pure views ------------------------------------------------------------------------


def command_patch(command: Command, now: datetime) -> dict[str, str | None]:
    """The annotations to set for `command` (pause and resume cancel each other)."""
    patch: dict[str, str | None] = {annotation(command): rfc3339(now)}
    if command in OPPOSITE:
        patch[annotation(OPPOSITE[command])] = None
    return patch


def traffic_bar(stable: str, canary: str, weight: int, shadow: bool = False) -> Text:
    """`v1 ██████░░ v2` with percentages: the canary's share of real traffic."""
    filled = round(BAR_WIDTH * weight / 100)
    bar = Text()
    bar.append(f"{stable} {100 - weight:>3}% ", style="bold green")
    bar.append("█" * (BAR_WIDTH - filled), style="green")
    bar.append("▒" * filled, style="yellow")  # tells the two apart without colour too
    bar.append(f" {weight:>3}% {canary}", style="bold yellow")
    if shadow and weight == 0:
        bar.append("  (+ mirrored copy of every event)", style="dim")
    return bar


def broker_line(obj: Mapping[str, Any]) -> list[Text]:
    """How durable the Broker in use is (the BrokerDurable condition), and a class conflict."""
    lines = []
    for cond in (obj.get("status") or {}).get("conditions") or ():
        if cond.get("type") == "BrokerDurable":
            style = {"True": "green", "False": "yellow"}.get(str(cond.get("status")), "dim")
            durable = {"True": "durable", "False": "in memory"}.get(str(cond.get("status")), "?")
            lines.append(Text(f"broker: {durable}: {cond.get('message', '')}", style=style))
        if cond.get("type") == "BrokerManaged" and cond.get("status") == "False":
            lines.append(Text(f"broker: {cond.get('message', '')}", style="red"))
    return lines


def status_view(obj: Mapping[str, Any]) -> Group:
    """Phase, step and traffic of one AIService's rollout, and its latest decisions."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    state = (obj.get("status") or {}).get("rollout") or {}
    title = Text(f"{meta.get('namespace')}/{meta.get('name')}", style="bold")
    broker = broker_line(obj)
    rollout = spec.get("rollout")
    if not rollout:
        stable = (spec.get("traffic") or {}).get("stable", "?")
        return Group(title, *broker, Text(f"no rollout: all traffic on {stable}"))
    steps = rollout.get("steps") or []
    phase = state.get("phase", "Pending")
    style = {"Succeeded": "green", "Failed": "red", "Paused": "yellow"}.get(phase, "cyan")
    head = Text.assemble(
        title,
        "  ",
        (phase, f"bold {style}"),
        f"  step {state.get('step', 0)}/{len(steps)}",
        f"  failed checks {state.get('failures', 0)}/"
        f"{(rollout.get('analysis') or {}).get('failureLimit', 2)}",
    )
    stable = state.get("stable") or (spec.get("traffic") or {}).get("stable", "?")
    canary = state.get("canary") or rollout.get("canary", "?")
    parts: list[Any] = [
        head,
        *broker,
        traffic_bar(stable, canary, int(state.get("weight", 0)), bool(rollout.get("shadow"))),
    ]
    if state.get("message"):
        parts.append(Text(str(state["message"]), style="dim"))
    history = list(state.get("history") or [])[-6:]
    if history:
        table = Table("at", "decision", "weight", "why", box=None, pad_edge=False)
        for entry in history:
            repeats = f" x{entry['repeats']}" if entry.get("repeats", 1) > 1 else ""
            table.add_row(
                str(entry.get("at", ""))[11:19],
                f"{entry.get('action')}{repeats}",
                f"{entry.get('weight')}%",
                str(entry.get("reason", "")),
            )
        parts.append(table)
    return Group(*parts)


# --- Commands --------------------------------------------------------------------------


def _steer(command: Command) -> Any:
    def run(
        name: Annotated[str, typer.Argument(help="The AIService.")],
        namespace: NamespaceOpt = None,
        context: ContextOpt = None,
        kubeconfig: KubeconfigOpt = None,
        local: TargetOpt = None,
    ) -> None:
        cluster = _connect(kubeconfig, context, local)
        ns = namespace or cluster.default_namespace
        try:
            obj = cluster.get(ns, name)
            if not (obj.get("spec") or {}).get("rollout"):
                typer.echo(f"aiservice {ns}/{name} has no spec.rollout", err=True)
                raise typer.Exit(code=1)
            cluster.steer(ns, name, command)
        except cluster.errors as err:
            raise _fail_api(err, ns, name) from None
        typer.echo(f"{command} requested for {ns}/{name}; `aisvc status {name}` shows the result")

    run.__doc__ = {
        "promote": "Promote the canary now: all traffic to it, remaining analysis skipped.",
        "abort": "Abort the rollout: all traffic back to the stable model at once.",
        "pause": "Pause the rollout: hold the current weights, stop analysing.",
        "resume": "Resume a paused rollout (analysis restarts a full interval later).",
    }[command]
    return run


def status(
    name: Annotated[str, typer.Argument(help="The AIService.")],
    namespace: NamespaceOpt = None,
    context: ContextOpt = None,
    kubeconfig: KubeconfigOpt = None,
    local: TargetOpt = None,
) -> None:
    """Show a rollout: phase, step, the traffic split and the latest decisions with why."""
    cluster = _connect(kubeconfig, context, local)
    ns = namespace or cluster.default_namespace
    try:
        obj = cluster.get(ns, name)
    except cluster.errors as err:
        raise _fail_api(err, ns, name) from None
    Console().print(status_view(obj))


def register(app: typer.Typer) -> None:
    """Mount the rollout commands on `aisvc`."""
    for command in COMMANDS:
        app.command(name=command)(_steer(command))
    app.command(name="status")(status)
