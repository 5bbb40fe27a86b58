"""`aisvc promote|abort|pause|resume|status NAME` and `aisvc list`: steer and watch canary
rollouts, on a cluster or on the local run (see `cli.targets`).

Exit codes of `status --watch|--timeout` and `promote|abort --wait`, so that a pipeline can
gate on a rollout: 0 healthy (the rollout Succeeded; without a rollout, the AIService is
Ready), 1 degraded (rolled back or rolling back, Degraded) or the request failed, 2 a bad
command line or nothing to talk to, 3 the timeout passed first. Plain `status` exits 0.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

import typer
import yaml
from aiservice_functions.durations import parse_duration
from rich.console import Console
from rich.text import Text

from aiservice_operator.cli.common import (
    DEFAULT_STATE_DIR,
    EXIT_TIMEOUT,
    EXIT_USAGE,
    StateDirOpt,
    fail,
)
from aiservice_operator.cli.rollout_view import (
    EXIT_CODES,
    LIST_COLUMNS,
    answered,
    format_table,
    health,
    list_row,
    poll,
    result_line,
    status_view,
    summary,
)
from aiservice_operator.cli.targets import (
    ContextOpt,
    KubeconfigOpt,
    NamespaceOpt,
    Target,
    TargetOpt,
    api_failure,
    connect,
)
from aiservice_operator.core.rollout import COMMANDS, Command


class Format(StrEnum):
    text = "text"
    json = "json"
    yaml = "yaml"


NameArg = Annotated[str, typer.Argument(help="The AIService.")]
OutputOpt = Annotated[
    Format, typer.Option("--output", "-o", help="text (the rich view), json or yaml.")
]
TimeoutOpt = Annotated[
    str | None,
    typer.Option(
        help="Give up after this long (30s, 5m, 1h30m) and exit 3.",
        show_default=False,
    ),
]
WAIT_TIMEOUT = "5m"
"""--wait's default limit: the operator acts at its next tick, seconds after a command."""
WaitTimeoutOpt = Annotated[
    str | None,
    typer.Option(
        "--timeout",
        help=f"With --wait: give up after this long (default {WAIT_TIMEOUT}) and exit 3.",
        show_default=False,
    ),
]
WAITABLE: tuple[Command, ...] = ("promote", "abort")


def _timeout_seconds(text: str | None) -> float | None:
    """--timeout in seconds (None: no limit); a bad value is a usage error (exit 2)."""
    if text is None:
        return None
    try:
        return parse_duration(text.strip())
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="--timeout") from None


def _fetch(target: Target, namespace: str, name: str) -> Callable[[], dict[str, Any]]:
    def get() -> dict[str, Any]:
        try:
            return target.get(namespace, name)
        except target.errors as err:
            raise api_failure(err, namespace, name) from None

    return get


def _show(obj: Mapping[str, Any], output: Format, *, stream: bool = False) -> None:
    """One state in the chosen format; `stream` (a watch): JSON Lines, YAML documents."""
    if output is Format.json:
        typer.echo(json.dumps(summary(obj), indent=None if stream else 2))
    elif output is Format.yaml:
        text = yaml.safe_dump(summary(obj), sort_keys=False)
        typer.echo(("---\n" if stream else "") + text, nl=False)
    else:
        console = Console()
        console.print(status_view(obj))
        if stream:
            console.print()


def _finish(obj: Mapping[str, Any], finished: bool, timeout: str | None, waiting: str) -> None:
    """Exit with the verdict on `obj`, or 3 when the timeout passed first."""
    if not finished:
        s = summary(obj)
        where = f"{s['namespace']}/{s['name']}"
        now = s["phase"] if s["rollout"] else f"not Ready ({s['health']})"
        raise fail(f"timed out after {timeout} {waiting}: {where} is {now}", EXIT_TIMEOUT)
    raise typer.Exit(code=EXIT_CODES[health(obj)])


# --- Commands --------------------------------------------------------------------------


def _request(
    command: Command,
    name: str,
    namespace: str | None,
    target: Target,
    wait: bool,
    timeout: str | None,
) -> None:
    """Send `command`; with `wait`, poll until the operator answered it and the rollout
    ended (promote: Succeeded; abort: Failed, all traffic on stable)."""
    seconds = _timeout_seconds(timeout or WAIT_TIMEOUT)
    ns = namespace or target.default_namespace
    fetch = _fetch(target, ns, name)
    current = fetch()
    if not (current.get("spec") or {}).get("rollout"):
        raise fail(f"aiservice {ns}/{name} has no spec.rollout")
    before = list(((current.get("status") or {}).get("rollout") or {}).get("history") or ())
    try:
        target.steer(ns, name, command)
    except target.errors as err:
        raise api_failure(err, ns, name) from None
    if not wait:
        typer.echo(f"{command} requested for {ns}/{name}; `aisvc status {name}` shows the result")
        return
    typer.echo(f"{command} requested for {ns}/{name}; waiting for the operator")
    obj, finished = poll(
        fetch,
        lambda o: answered(command, before, o) is not None and health(o) != "progressing",
        timeout=seconds,
        on_change=lambda o: None,
    )
    if finished:
        typer.echo(result_line(obj))
    _finish(obj, finished, timeout or WAIT_TIMEOUT, f"waiting for the operator to {command}")


def _steer(command: Command) -> Any:
    if command in WAITABLE:

        def run(
            name: NameArg,
            namespace: NamespaceOpt = None,
            context: ContextOpt = None,
            kubeconfig: KubeconfigOpt = None,
            local: TargetOpt = None,
            state_dir: StateDirOpt = DEFAULT_STATE_DIR,
            wait: Annotated[
                bool,
                typer.Option(
                    "--wait",
                    help="Wait until the operator has acted and the rollout ended; exit "
                    "0 healthy, 1 degraded, 3 timed out.",
                ),
            ] = False,
            timeout: WaitTimeoutOpt = None,
        ) -> None:
            _timeout_seconds(timeout)  # a usage error before anything else
            target = connect(kubeconfig, context, local, state_dir)
            _request(command, name, namespace, target, wait, timeout)

    else:

        def run(  # type: ignore[misc]  # the same command without --wait
            name: NameArg,
            namespace: NamespaceOpt = None,
            context: ContextOpt = None,
            kubeconfig: KubeconfigOpt = None,
            local: TargetOpt = None,
            state_dir: StateDirOpt = DEFAULT_STATE_DIR,
        ) -> None:
            target = connect(kubeconfig, context, local, state_dir)
            _request(command, name, namespace, target, False, None)

    run.__doc__ = {
        "promote": "Promote the canary now: all traffic to it, remaining analysis skipped.",
        "abort": "Abort the rollout: all traffic back to the stable model at once.",
        "pause": "Pause the rollout: hold the current weights, stop analysing.",
        "resume": "Resume a paused rollout (analysis restarts a full interval later).",
    }[command]
    return run


def status(
    name: NameArg,
    namespace: NamespaceOpt = None,
    context: ContextOpt = None,
    kubeconfig: KubeconfigOpt = None,
    local: TargetOpt = None,
    state_dir: StateDirOpt = DEFAULT_STATE_DIR,
    output: OutputOpt = Format.text,
    watch: Annotated[
        bool,
        typer.Option(
            "--watch", "-w", help="Redraw on every change until the rollout is healthy or degraded."
        ),
    ] = False,
    timeout: TimeoutOpt = None,
) -> None:
    """Show a rollout: phase, step, the traffic split and the latest decisions with why.

    With --watch or --timeout it waits until the rollout is healthy or degraded.
    Exit codes then: 0 Succeeded (no rollout: Ready), 1 rolled back or Degraded, 3 timed out.
    """
    seconds = _timeout_seconds(timeout)
    target = connect(kubeconfig, context, local, state_dir)
    fetch = _fetch(target, namespace or target.default_namespace, name)
    if not watch and timeout is None:
        _show(fetch(), output)
        return

    def done(obj: Mapping[str, Any]) -> bool:
        return health(obj) != "progressing"

    if not watch:  # only the verdict, once it is known
        obj, finished = poll(fetch, done, timeout=seconds, on_change=lambda o: None)
        _show(obj, output)
    elif output is Format.text and Console().is_terminal:
        from rich.live import Live

        with Live(Text(""), auto_refresh=False) as live:
            obj, finished = poll(
                fetch,
                done,
                timeout=seconds,
                on_change=lambda o: live.update(status_view(o), refresh=True),
            )
    else:
        obj, finished = poll(
            fetch, done, timeout=seconds, on_change=lambda o: _show(o, output, stream=True)
        )
    _finish(obj, finished, timeout, "waiting for the rollout to end")


def list_(
    namespace: NamespaceOpt = None,
    all_namespaces: Annotated[
        bool, typer.Option("--all-namespaces", "-A", help="Every namespace.")
    ] = False,
    context: ContextOpt = None,
    kubeconfig: KubeconfigOpt = None,
    local: TargetOpt = None,
    state_dir: StateDirOpt = DEFAULT_STATE_DIR,
    output: Annotated[
        Format, typer.Option("--output", "-o", help="text (a table), json or yaml.")
    ] = Format.text,
) -> None:
    """List AIServices with their rollouts: phase, step, stable, canary, weight, Ready, age."""
    if all_namespaces and namespace:
        raise fail("give -n NAMESPACE or -A, not both", EXIT_USAGE)
    target = connect(kubeconfig, context, local, state_dir)
    ns = None if all_namespaces else (namespace or target.default_namespace)
    try:
        objs = target.list(ns)
    except target.errors as err:
        raise api_failure(err, ns or "all namespaces") from None
    objs.sort(key=lambda o: ((o.get("metadata") or {}).get("namespace", ""), o["metadata"]["name"]))
    if output is not Format.text:
        items = {"items": [summary(o) for o in objs]}
        if output is Format.json:
            typer.echo(json.dumps(items, indent=2))
        else:
            typer.echo(yaml.safe_dump(items, sort_keys=False), nl=False)
        return
    if not objs:
        typer.echo(f"no AIServices in {'any namespace' if ns is None else ns}", err=True)
        return
    typer.echo(_table(objs, namespaced=ns is None))


def _table(objs: Sequence[Mapping[str, Any]], *, namespaced: bool) -> str:
    now = datetime.now(UTC)
    header = [c for c in LIST_COLUMNS if namespaced or c != "NAMESPACE"]
    return format_table(header, [list_row(o, now, namespaced=namespaced) for o in objs])


def register(app: typer.Typer) -> None:
    """Mount the rollout commands on `aisvc`."""
    for command in COMMANDS:
        app.command(name=command)(_steer(command))
    app.command(name="status")(status)
    app.command(name="list")(list_)
